"""The report's figures (matplotlib, headless): per-case Dice box plots, Dice under each sentence rewrite, Dice
against the label budget, and overlays of a case with its sentence printed on it.

Arrays are as MONAI reads a picture (axis 0 = columns); they are transposed for display, so the picture looks
as stored: the patient's left on the image's right. Every figure is written under a temporary name and renamed.
"""

from __future__ import annotations

import math
import os
import textwrap
from collections.abc import Mapping, Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from custom_nets.evaluation.casewise import CasePrediction  # noqa: E402
from custom_nets.evaluation.perturbations import CHANGING, PRESERVING  # noqa: E402
from custom_nets.utils.files import write_atomically  # noqa: E402


def _save(fig, path: Path) -> Path:
    def write(tmp: Path) -> None:
        fig.savefig(tmp, dpi=110, bbox_inches="tight", format="png")

    write_atomically(path, write)
    plt.close(fig)
    return path


def dice_boxplot(per_case: Mapping[str, Sequence[float]], path: Path) -> Path:
    """One box of per-case test Dice per bundle, the cases drawn over it."""
    names = list(per_case)
    values = [[v for v in per_case[n] if not math.isnan(v)] for n in names]
    fig, ax = plt.subplots(figsize=(1.6 + 1.3 * len(names), 4))
    ax.boxplot(values, showmeans=True, showfliers=False,  # every case is drawn as a dot anyway
               meanprops={"marker": "D", "markerfacecolor": "white", "markeredgecolor": "black"})
    ax.set_xticks(range(1, len(names) + 1), names)
    rng = np.random.default_rng(0)
    for i, v in enumerate(values, start=1):
        ax.scatter(i + rng.uniform(-0.12, 0.12, len(v)), v, s=8, alpha=0.45, color="tab:blue", zorder=3)
    ax.set_ylim(-0.02, 1.02)
    ax.set_ylabel("Dice per test image")
    ax.set_title("Per-case test Dice")
    ax.set_xlabel("box: quartiles, line: median, diamond: mean, dots: cases", fontsize=8)
    ax.grid(axis="y", alpha=0.3)
    return _save(fig, path)


def rewrite_plot(dice: Mapping[str, Mapping[str, float]], path: Path) -> Path:
    """Mean test Dice of each bundle under each rewrite: the meaning-preserving ones left of the line, the
    meaning-changing ones right of it."""
    kinds = ["clean", *PRESERVING, *CHANGING]
    fig, ax = plt.subplots(figsize=(10, 4.2))
    width = 0.8 / max(len(dice), 1)
    for j, (name, rows) in enumerate(dice.items()):
        x = np.arange(len(kinds)) + (j - (len(dice) - 1) / 2) * width
        ax.bar(x, [rows.get(k, math.nan) for k in kinds], width, label=name)
    ax.axvline(len(PRESERVING) + 0.5, color="black", lw=1, ls="--")
    ax.text(len(PRESERVING) / 2 + 0.5, 1.04, "meaning kept", ha="center", fontsize=9)
    ax.text(len(PRESERVING) + 0.5 + len(CHANGING) / 2, 1.04, "meaning changed", ha="center", fontsize=9)
    labels = {"abbreviations": "abbrev-\niations", "missing_finding": "missing\nfinding"}
    ax.set_xticks(range(len(kinds)), [labels.get(k, k.replace("_", "\n")) for k in kinds], fontsize=8)
    ax.set_ylim(0, 1.1)
    ax.set_ylabel("mean test Dice (true masks)")
    ax.set_title("Dice under sentence rewrites", pad=18)
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1))
    ax.grid(axis="y", alpha=0.3)
    return _save(fig, path)


def budget_plot(curves: Mapping[str, Mapping[float, tuple[float, float]]], path: Path) -> Path:
    """Mean +/- std test Dice against the share of the training split used, one line per bundle."""
    fig, ax = plt.subplots(figsize=(6, 4))
    for name, points in curves.items():
        xs = sorted(points)
        means = np.array([points[x][0] for x in xs])
        stds = np.nan_to_num(np.array([points[x][1] for x in xs]))
        ax.errorbar([100 * x for x in xs], means, yerr=stds, marker="o", capsize=3, label=name)
    ax.set_xscale("log")
    ticks = sorted({100 * x for p in curves.values() for x in p})
    ax.set_xticks(ticks, [f"{t:g}%" for t in ticks])
    ax.minorticks_off()
    ax.set_ylim(0, 1)
    ax.set_xlabel("training images used (share of the training split)")
    ax.set_ylabel("test Dice (mean +/- std over seeds)")
    ax.set_title("Label efficiency")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return _save(fig, path)


def overlay(cases: Sequence[tuple[str, CasePrediction, float]], path: Path, title: str) -> Path:
    """A row of cases: the image with the true mask's outline (green) and the prediction (red, filled), the
    sentence printed under the picture, the case's label (e.g. "best") and Dice above it."""
    fig, axes = plt.subplots(1, len(cases), figsize=(3.6 * len(cases), 4.2), squeeze=False)
    red = matplotlib.colors.ListedColormap(["red"])
    for ax, (label, case, dice) in zip(axes[0], cases):
        image, truth, pred = case.image.T, case.label.T, case.pred.T  # rows first for display
        ax.imshow(image, cmap="gray")
        ax.imshow(np.ma.masked_where(~pred, pred), cmap=red, alpha=0.45, vmin=0, vmax=1)
        if truth.any():
            ax.contour(truth.astype(float), levels=[0.5], colors="lime", linewidths=1.2)
        ax.set_title(f"{label}: Dice {dice:.3f}", fontsize=10)
        ax.text(0.5, -0.04, "\n".join(textwrap.wrap(case.text or "(no sentence)", 42)), transform=ax.transAxes,
                ha="center", va="top", fontsize=8)
        ax.text(0.98, 0.02, "patient's L", transform=ax.transAxes, ha="right", va="bottom", fontsize=7, color="yellow")
        ax.set_xticks([])
        ax.set_yticks([])
    fig.suptitle(f"{title}  (green outline: truth, red: prediction)", fontsize=11)
    fig.tight_layout()
    return _save(fig, path)


def relative(path: Path, start: Path) -> str:
    return os.path.relpath(path, start)
