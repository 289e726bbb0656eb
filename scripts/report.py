#!/usr/bin/env python
"""Write one report of trained bundles on a datalist: results table, plots and overlays, as HTML and Markdown.

    python scripts/report.py --bundles himix unet --runs runs/demo --config demo.json --out runs/demo/report
    python scripts/report.py --bundles himix unet --runs runs/demo --multiseed runs/multiseed --out report

For each bundle (trained in ``<runs>/<bundle>/models/model.pt``) on the ``--split`` of the datalist:
- the results table: Dice and IoU per image (mean) and pooled over all pixels, HD95 and ASSD (pixels at the
  network's size), text-mask consistency rates (all / count / side / zone, ``custom_nets/metrics``), parameters
  (trainable, frozen), forward GFLOPs per image and images/s (network and text encoding, this machine);
- the same checks on the ground-truth masks (how far the consistency metric agrees with the sentences), with the
  cases where it does not;
- Dice and consistency under every sentence rewrite (``scripts/text_sensitivity.py``'s table);
- with ``--phrasing``: Dice on the same images with their sentences in held-out phrasings (per style) beside the
  template Dice, and the laterality and zones counterfactuals of those sentences in their own words;
- with ``--multiseed``: mean +/- std over seeds, the paired test of every bundle against ``--baseline`` (unet),
  and Dice against the training budget;
- plots (matplotlib): per-case Dice box plots, Dice under each rewrite, Dice against the budget; overlays of the
  best, median and worst case of each bundle with the sentence printed on them.

Writes ``<out>/index.html``, ``<out>/README.md`` and the PNGs; the folder is built beside ``<out>`` and renamed
into place, so a failed run leaves the old report whole. An existing report is replaced only with ``--overwrite``.
A bundle without a checkpoint, a datalist without sentences, sentences that parse to nothing: each is named in
the report, never a crash of the whole report.
"""

from __future__ import annotations

import argparse
import html
import math
import re
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from torch.utils.flop_counter import FlopCounterMode

from custom_nets.data import load_datalist
from custom_nets.evaluation import figures
from custom_nets.evaluation.casewise import TrainedBundle, nanmean, pooled
from custom_nets.evaluation.multiseed import compare, load_summary
from custom_nets.evaluation.perturbations import KINDS
from custom_nets.evaluation.robustness import RobustnessResult, format_table, text_robustness
from custom_nets.metrics import mask_findings
from custom_nets.text.constraints import parse_constraints

ROOT = Path(__file__).resolve().parent.parent
COLUMNS = [("dice_mean", "Dice"), ("dice_pooled", "Dice pooled"), ("iou_mean", "IoU"), ("iou_pooled", "IoU pooled"),
           ("hd95", "HD95"), ("assd", "ASSD"), ("consistency", "consistent"), ("consistency_count", "count ok"),
           ("consistency_side", "side ok"), ("consistency_zone", "zone ok"), ("trainable_m", "trainable M"),
           ("frozen_m", "frozen M"), ("gflops", "GFLOPs/img"), ("images_per_s", "img/s")]


def costs(model: TrainedBundle) -> dict[str, float]:
    """Parameters (millions, trainable and frozen) and forward GFLOPs of one image at the network's size."""
    net, parser = model.network, model.parser
    trainable = sum(p.numel() for p in net.parameters() if p.requires_grad) / 1e6
    frozen = sum(p.numel() for p in net.parameters() if not p.requires_grad) / 1e6
    size = parser.get_parsed_content("image_size")
    kwargs = {}
    if model.encoder is not None:
        hidden, mask = model.encoder(["Unilateral pulmonary infection, one infected area, upper left lung."])
        kwargs = {"text_hidden": hidden.to(model.device), "text_mask": mask.to(model.device)}
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        net(torch.zeros(1, parser.get_parsed_content("in_channels"), *size, device=model.device), **kwargs)
    return {"trainable_m": trainable, "frozen_m": frozen, "gflops": counter.get_total_flops() / 1e9}


def bundle_rows(result: RobustnessResult) -> dict[str, float]:
    m = result.clean_metrics
    row = {"dice_mean": nanmean([r["dice"] for r in m]), "iou_mean": nanmean([r["iou"] for r in m]),
           "hd95": nanmean([r["hd95"] for r in m]), "assd": nanmean([r["assd"] for r in m]),
           "consistency": nanmean([r["all_ok"] for r in m]), "consistency_count": nanmean([r["count_ok"] for r in m]),
           "consistency_side": nanmean([r["side_ok"] for r in m]), "consistency_zone": nanmean([r["zone_ok"] for r in m])}
    return row | pooled(m)


def fmt(value, digits: int = 4) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


_NUMERIC = re.compile(r"^(?:-|[-+]?\d+(?:\.\d+)?(?:e[-+]?\d+)?(?: ± \d+(?:\.\d+)?)?|\[.*\])$")


def _align(cell: str) -> str:
    """Numbers (a value, "mean ± std", "[low, high]", "-") right-aligned, text left-aligned."""
    return "" if _NUMERIC.match(cell.strip()) else ' class="text"'


class Report:
    """Sections of Markdown and HTML built side by side."""

    def __init__(self) -> None:
        self.md: list[str] = []
        self.html: list[str] = []

    def heading(self, text: str, level: int = 2) -> None:
        self.md.append(f"{'#' * level} {text}\n")
        self.html.append(f"<h{level}>{html.escape(text)}</h{level}>")

    def paragraph(self, text: str) -> None:
        self.md.append(text + "\n")
        self.html.append(f"<p>{html.escape(text)}</p>")

    def bullets(self, items: list[str]) -> None:
        if items:
            self.md.append("\n".join(f"- {i}" for i in items) + "\n")
            self.html.append("<ul>" + "".join(f"<li>{html.escape(i)}</li>" for i in items) + "</ul>")

    def problems(self, items: list[str]) -> None:
        """A bullet list styled as problems (red in the HTML)."""
        self.bullets(items)
        self.html[-1] = self.html[-1].replace("<ul>", '<ul class="problem">', 1)

    def table(self, header: list[str], rows: list[list[str]]) -> None:
        self.md.append("| " + " | ".join(header) + " |\n|" + "---|" * len(header) + "\n"
                       + "\n".join("| " + " | ".join(r) + " |" for r in rows) + "\n")
        self.html.append("<table><tr>" + "".join(f"<th>{html.escape(h)}</th>" for h in header) + "</tr>"
                         + "".join("<tr>" + "".join(f"<td{_align(c)}>{html.escape(c)}</td>" for c in r) + "</tr>" for r in rows)
                         + "</table>")

    def image(self, path: str, alt: str) -> None:
        self.md.append(f"![{alt}]({path})\n")
        self.html.append(f'<figure><img src="{html.escape(path)}" alt="{html.escape(alt)}"><figcaption>'
                         f"{html.escape(alt)}</figcaption></figure>")

    def write(self, folder: Path, title: str) -> None:
        (folder / "README.md").write_text(f"# {title}\n\n" + "\n".join(self.md))
        style = ("body{font-family:sans-serif;max-width:1200px;margin:2em auto;padding:0 1em;color:#222}"
                 "table{border-collapse:collapse;margin:1em 0;font-size:13px}td,th{border:1px solid #bbb;"
                 "padding:3px 7px;text-align:right}th{background:#eee}td.text,th:first-child{text-align:left}"
                 "img{max-width:100%}figure{margin:1em 0}figcaption{font-size:12px;color:#555}"
                 ".problem{color:#a00}")
        (folder / "index.html").write_text(f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{html.escape(title)}"
                                           f"</title><style>{style}</style></head><body><h1>{html.escape(title)}</h1>"
                                           + "\n".join(self.html) + "</body></html>\n")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--bundles", nargs="+", required=True, help="bundle names under bundles/")
    p.add_argument("--runs", default=str(ROOT / "runs" / "demo"),
                   help="folder of the bundle roots, <runs>/<bundle>/models/model.pt, or a path with '{bundle}' in it "
                        "(e.g. runs/multiseed/{bundle}/budget_1/seed_0)")
    p.add_argument("--config", nargs="*", default=["demo.json"],
                   help="override files merged on each train.json: names in the bundle's configs/ or paths; '{bundle}' "
                        "in one stands for the bundle's name (e.g. my_overrides/{bundle}.json)")
    p.add_argument("--datalist", default=str(ROOT / "datalists" / "demo.json"))
    p.add_argument("--data-root", default=str(ROOT / "data" / "demo"))
    p.add_argument("--split", default="test")
    p.add_argument("--phrasing", default=None,
                   help="a datalist of the same test images with their sentences in other phrasings (the demo's "
                        "datalists/demo_phrasing.json): its Dice, per style, and its laterality and zones counterfactuals")
    p.add_argument("--multiseed", default=None, help="folder of scripts/multiseed.py summaries (<folder>/<bundle>/summary.json)")
    p.add_argument("--baseline", default="unet", help="the bundle every other is compared with (paired test)")
    p.add_argument("--seed", type=int, default=0, help="seed of the sentence rewrites")
    p.add_argument("--out", default=str(ROOT / "report"))
    p.add_argument("--overwrite", action="store_true", help="replace an existing report")
    args = p.parse_args(argv)

    out = Path(args.out)
    if out.exists() and not args.overwrite:
        sys.exit(f"error: {out} exists; pass --overwrite to replace it")
    try:
        items = load_datalist(args.datalist, args.data_root, args.split, keys=("image", "label"))  # sentences optional
    except (FileNotFoundError, ValueError, KeyError) as e:
        sys.exit(f"error: cannot read the '{args.split}' split of {args.datalist}: {e}")
    out.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".{out.name}.partial-", dir=out.parent))
    work.chmod(0o755)  # mkdtemp's 0700 would hide the report from a web server or a colleague
    try:
        report = build(args, items, work)
        report.write(work, f"textseg-bundles report: {', '.join(args.bundles)} on {Path(args.datalist).name} ({args.split})")
        old = out.parent / f".{out.name}.old-{work.name}"
        if out.exists():
            out.rename(old)  # the old report leaves its place only when the new one is whole
        work.rename(out)
        shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise
    print(f"REPORT: {out / 'index.html'}")
    return 0


def build(args: argparse.Namespace, items: list[dict], work: Path) -> Report:
    report = Report()
    problems: list[str] = []
    with_text = [i for i in items if i.get("text")]
    unparsed = [i for i in with_text if not parse_constraints(i["text"]).stated]
    if not with_text:
        problems.append(f"the '{args.split}' split of {args.datalist} has no sentences ('text'): no rewrites, no consistency")
    if unparsed:
        problems.append(f"{len(unparsed)} of {len(with_text)} sentences state no count, side or zone the metric can "
                        f"check (counted as unparsed, not as passes), e.g. '{unparsed[0]['text']}'")
    results: dict[str, RobustnessResult] = {}
    models: dict[str, TrainedBundle] = {}
    rows: dict[str, dict[str, float]] = {}
    for name in args.bundles:
        root = Path(args.runs.replace("{bundle}", name)) if "{bundle}" in args.runs else Path(args.runs) / name
        try:
            model = TrainedBundle(name, [c.replace("{bundle}", name) for c in args.config], root)
            print(f"[report] {name}: {len(items)} images x {1 + (len(KINDS) if with_text else 0)} sentence variants ...",
                  flush=True)
            t0 = time.time()
            result = text_robustness(model, items, args.seed, KINDS if with_text else ())
            rows[name] = bundle_rows(result) | costs(model) | {"images_per_s": 1 / result.seconds_per_image}
            results[name] = result
            models[name] = model
        except Exception as e:  # noqa: BLE001 - one bundle's failure is named in the report, the rest goes on
            first = first_line(e)
            problems.append(f"{name}: {first}")
            print(f"[report] {name}: skipped: {first}", flush=True)
            continue
        print(f"\nSentence rewrites, {name} (test Dice against the true masks; consistent = masks that obey the meaning):")
        print("\n".join(format_table(results[name])), flush=True)
        print(f"[report] {name}: {time.time() - t0:.0f} s", flush=True)

    report.paragraph(f"Datalist {args.datalist}, split '{args.split}': {len(items)} images, {len(with_text)} with a "
                     f"sentence. Bundle roots under {args.runs}; configs train.json + {', '.join(args.config)}.")
    if problems:
        report.heading("Problems")
        report.problems(problems)
    if not results:
        report.paragraph("No bundle could be evaluated.")
        return report

    report.heading("Results")
    report.table(["bundle"] + [c for _, c in COLUMNS], [[n] + [fmt(r.get(k), 2 if k in ("trainable_m", "frozen_m", "gflops",
                 "images_per_s", "hd95", "assd") else 4) for k, _ in COLUMNS] for n, r in rows.items()])
    report.paragraph("Dice/IoU: mean over images and pooled over all pixels of the split; HD95/ASSD in pixels at the "
                     "network's input size (for an empty prediction HD95 is left out and ASSD is inf, as in the bundles' "
                     "evaluations); consistent: "
                     "share of masks that obey every constraint their sentence states (count of connected lesions, side, "
                     "lung zone), over the cases that state one; trainable/frozen M and GFLOPs: the network (the frozen "
                     "text encoder outside it not counted); img/s: the clean pass on this machine, network and text "
                     "encoding (each sentence encoded once, then cached), no data loading.")

    first = next(iter(results.values()))  # the ground truth is the same for every bundle
    gt = [mask_findings(c.label, parse_constraints(c.text), c.image) for c in first.clean]
    stated = [(c, f) for c, f in zip(first.clean, gt) if not math.isnan(f.checks["all_ok"])]
    agree = sum(f.checks["all_ok"] == 1.0 for _, f in stated)
    report.heading("The consistency metric on the ground truth")
    report.paragraph(f"The true masks obey their sentence in {agree} of {len(stated)} cases "
                     f"({100 * agree / max(len(stated), 1):.1f} %); {len(first.clean) - len(stated)} sentence(s) state "
                     "nothing checkable. Disagreements (the metric's own error rate):")
    report.bullets([f"{Path(items[i]['image']).name}: '{c.text}' vs {f.describe()}" for i, (c, f) in
                    enumerate(zip(first.clean, gt)) if f.checks["all_ok"] == 0.0] or ["none"])

    report.heading("Per-case Dice")
    report.image(figures.relative(figures.dice_boxplot({n: [m["dice"] for m in r.clean_metrics] for n, r in results.items()},
                                                       work / "dice_boxplot.png"), work), "Per-case test Dice")
    if with_text:
        report.heading("Sentence rewrites")
        report.paragraph("Every image segmented with a rewrite of its sentence, the mask compared with the true mask. "
                         "Meaning kept: a network that reads the text should lose little; meaning changed: it should "
                         "lose much. 'consistent' checks the mask against what the rewrite means.")
        for name, r in results.items():
            report.heading(name, 3)
            report.table(["rewrite", "meaning", "cases", "Dice", "clean Dice", "drop", "consistent", "example"],
                         [[x.kind, x.group, str(x.cases), fmt(x.dice), fmt(x.clean_dice), fmt(x.drop), fmt(x.consistency, 3),
                           x.example] for x in r.rows])
        plot = figures.rewrite_plot({n: {x.kind: x.dice for x in r.rows} for n, r in results.items()}, work / "rewrites.png")
        report.image(figures.relative(plot, work), "Dice under each sentence rewrite")

    if args.phrasing:
        phrasing_section(report, args, models, results)
    if args.multiseed:
        multiseed_section(report, args, work)

    report.heading("Best, median and worst cases")
    for name, r in results.items():
        dice = np.array([m["dice"] for m in r.clean_metrics], dtype=float)
        order = [i for i in np.argsort(np.nan_to_num(dice, nan=-1.0)) if not math.isnan(dice[i])]
        if not order:
            continue
        picks = [("best", order[-1]), ("median", order[len(order) // 2]), ("worst", order[0])]
        path = figures.overlay([(label, r.clean[i], dice[i]) for label, i in picks], work / f"overlay_{name}.png", name)
        report.image(figures.relative(path, work), f"{name}: best, median and worst test case")
    return report


PHRASING_KINDS = ("laterality", "zones")  # the counterfactuals that keep a sentence's own words


def first_line(e: BaseException) -> str:
    """The first line of an error's message, or its type's name when it has none."""
    return str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__


def phrasing_section(report: Report, args: argparse.Namespace, models: dict[str, TrainedBundle],
                     template: dict[str, RobustnessResult]) -> None:
    """Each text-reading bundle on the held-out phrasings: Dice overall and per style against the template's, and
    the laterality and zones counterfactuals of those sentences, in their own words."""
    report.heading("Held-out phrasings")
    try:
        items = load_datalist(args.phrasing, args.data_root, args.split, keys=("image", "label", "text"))
    except (FileNotFoundError, ValueError, KeyError) as e:
        report.problems([f"cannot read the '{args.split}' split of {args.phrasing}: {e}"])
        return
    styles = sorted({i.get("style", "all") for i in items})
    rows, problems = [], []
    for name, model in models.items():
        if not model.reads_text:
            continue
        print(f"[report] {name}: {len(items)} images in held-out phrasings ...", flush=True)
        try:
            r = text_robustness(model, items, args.seed, PHRASING_KINDS)
        except Exception as e:  # noqa: BLE001 - named in the report, the other bundles go on
            problems.append(f"{name}: {first_line(e)}")
            continue
        dice = [m["dice"] for m in r.clean_metrics]
        by_style = [nanmean([d for d, i in zip(dice, items) if i.get("style", "all") == s]) for s in styles]
        held_out, clean = r.row("clean").dice, template[name].row("clean").dice
        rows.append([name, fmt(clean), fmt(held_out), " / ".join(fmt(d) for d in by_style), fmt(clean - held_out)]
                    + [fmt(r.row(k).drop) for k in PHRASING_KINDS]
                    + [fmt(next((x.drop for x in template[name].rows if x.kind == k), math.nan)) for k in PHRASING_KINDS])
    if problems:
        report.problems(problems)
    if not rows:
        report.paragraph("No bundle that reads the sentence was evaluated.")
        return
    report.paragraph(f"The same test images with their sentences in phrasings training never saw ({Path(args.phrasing).name}; "
                     f"styles: {', '.join(styles)}). Gap: template Dice minus held-out Dice. The counterfactuals rewrite "
                     "each held-out sentence in its own words (sides swapped; zones moved to zones it does not name); "
                     "the last two columns are the same drops on the template sentences.")
    report.table(["bundle", "template Dice", "held-out Dice", f"by style ({' / '.join(styles)})", "gap",
                  "laterality drop", "zones drop", "template: laterality drop", "template: zones drop"], rows)


def multiseed_section(report: Report, args: argparse.Namespace, work: Path) -> None:
    summaries, problems = {}, []
    for name in args.bundles:
        try:
            summaries[name] = load_summary(Path(args.multiseed) / name)
            summaries[name]["budgets"]["1"]["mean_std"]["dice_mean"]  # noqa: B018 - the full budget is what is compared
        except (OSError, ValueError, KeyError, TypeError) as e:
            problems.append(f"{name}: no usable multi-seed summary ({type(e).__name__}: {e})")
            summaries.pop(name, None)
    report.heading("Over seeds")
    if problems:
        report.problems(problems)
    if not summaries:
        return
    shown = ["dice_mean", "dice_pooled", "iou_mean", "hd95", "assd", "consistency"]
    if any("dice_phrasing" in e["mean_std"] for s in summaries.values() for e in s["budgets"].values()):
        shown.insert(1, "dice_phrasing")  # the same images, sentences in held-out phrasings (scripts/multiseed.py)
    rows = []
    for name, s in summaries.items():
        entry = s["budgets"].get("1")
        if entry is None:
            continue
        cells = []
        for k in shown:
            mean, std, n = entry["mean_std"].get(k, (math.nan, math.nan, 0))
            cells.append(f"{mean:.4f} ± {std:.4f}" if n > 1 else fmt(mean))
        rows.append([name, ", ".join(str(r["seed"]) for r in entry["runs"])] + cells)
    report.table(["bundle", "seeds"] + shown, rows)
    base = summaries.get(args.baseline)
    if base is not None:
        pairs = []
        for name, s in summaries.items():
            if name == args.baseline:
                continue
            try:
                c = compare(s, base)
            except (KeyError, ValueError) as e:
                pairs.append([name, "-", "-", "-", str(e)])
                continue
            pairs.append([name, str(c["n"]), f"{c['mean_difference']:+.4f}", f"[{c['ci_low']:+.4f}, {c['ci_high']:+.4f}]",
                          f"{c['wilcoxon_p']:.3g}"])
        report.paragraph(f"Paired per-case Dice (mean over seeds) against {args.baseline}: Wilcoxon signed-rank test and "
                         "bootstrap 95 % interval of the mean difference.")
        report.table(["bundle", "cases", f"Dice - {args.baseline}", "95 % CI", "Wilcoxon p"], pairs)
    curves = {}
    for name, s in summaries.items():
        points = {float(b): (e["mean_std"]["dice_mean"][0], e["mean_std"]["dice_mean"][1]) for b, e in s["budgets"].items()
                  if "dice_mean" in e["mean_std"]}
        if len(points) > 1:
            curves[name] = points
    if curves:
        report.heading("Label efficiency", 3)
        report.image(figures.relative(figures.budget_plot(curves, work / "budgets.png"), work), "Dice against the training budget")


if __name__ == "__main__":
    sys.exit(main())
