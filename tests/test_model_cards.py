"""Model cards (``bundles/*/docs/README.md``): one template for every bundle, in Project-MONAI model-zoo's order;
the figures of ``metadata.json``'s ``eval_metrics`` quoted in the Performance section (one source: a changed
figure must be changed in both); references with links; no wording about anything outside the project.
Also ``scripts/plot_training.py``, which draws the cards' training curves from TensorBoard event files.

Bundles are discovered (every folder under ``bundles/`` with ``configs/metadata.json``): a new bundle is checked
by being added.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from PIL import Image

from conftest import ROOT, load_script

BUNDLES = sorted(p for p in (ROOT / "bundles").iterdir() if (p / "configs" / "metadata.json").is_file())

#: the headings every card has, in this order (model-zoo's: Input and Output under Training configuration)
TEMPLATE = ["# Model Overview", "## Data", "## Training configuration", "### Input", "### Output", "## Performance",
            "## MONAI Bundle Commands", "# References", "# License"]

#: wording about the project's process or people outside it, not about the model
OUTSIDE = [r"\breview(s|ed|er|ers)?\b", r"\bthe issue\b", r"\bissues? #?\d+", r"\bask(s|ed)?\b", r"\brequest(s|ed)?\b",
           r"\breviewer", r"\bticket\b", r"\bpull request\b", r"\bPR\b", r"\bas discussed\b", r"\bfeedback\b",
           r"\bthe brief\b", r"\bTODO\b", r"\bFIXME\b"]

FIGURE = "training_curves.png"


def headings(text: str) -> list[tuple[int, str]]:
    """(line index, heading line) of every Markdown heading outside fenced code blocks."""
    found, fenced = [], False
    for i, line in enumerate(text.splitlines()):
        if line.lstrip().startswith("```"):
            fenced = not fenced
        elif not fenced and re.match(r"#{1,6} \S", line):
            found.append((i, line.rstrip()))
    return found


def section(text: str, heading: str) -> str:
    """The body under ``heading`` up to the next heading of the same or a higher level ('' when absent)."""
    lines, level = text.splitlines(), heading.index(" ")
    marks = headings(text)
    for n, (i, line) in enumerate(marks):
        if line == heading:
            end = next((j for j, h in marks[n + 1:] if h.index(" ") <= level), len(lines))
            return "\n".join(lines[i + 1:end])
    return ""


def template_problems(text: str) -> list[str]:
    found = [h for _, h in headings(text)]
    problems = []
    in_template = [h for h in found if h in TEMPLATE]
    if in_template != TEMPLATE:
        problems.append(f"template headings {in_template} are not {TEMPLATE} (each once, in this order)")
    extra = [h for h in found if h not in TEMPLATE and h.index(" ") <= 2]
    if extra:
        problems.append(f"top-level sections outside the template (make them ### subsections): {extra}")
    return problems


def figure_problems(text: str, eval_metrics: dict) -> list[str]:
    performance = section(text, "## Performance")
    problems = [] if eval_metrics else ["metadata.json's eval_metrics is empty"]
    for key, value in eval_metrics.items():
        if not isinstance(value, (int, float)):
            problems.append(f"eval_metrics {key!r} is {value!r}, not a number")
        elif not re.search(rf"(?<![\d.]){re.escape(str(value))}(?!\d)", performance):
            problems.append(f"eval_metrics {key!r} = {value} is not quoted in the card's Performance section")
    return problems


def reference_problems(text: str) -> list[str]:
    items = [line for line in section(text, "# References").splitlines() if re.match(r"\s*(- |\* |\[\d+\])", line)]
    if not items:
        return ["no references listed"]
    return [f"reference without a link: {line.strip()}" for line in items if not re.search(r"https?://", line)]


def outside_problems(text: str) -> list[str]:
    own = text.replace(section(text, "# References"), "")  # reference titles are not the card's wording
    return [f"line {n}: {line.strip()!r} matches {pattern!r}" for n, line in enumerate(own.splitlines(), 1)
            for pattern in OUTSIDE if re.search(pattern, line, flags=re.IGNORECASE)]


def _card(bundle: Path) -> str:
    return (bundle / "docs" / "README.md").read_text()


def _eval_metrics(bundle: Path) -> dict:
    return json.loads((bundle / "configs" / "metadata.json").read_text())["eval_metrics"]


def test_bundles_are_found():
    assert {"himix", "tamiseg", "unet"} <= {b.name for b in BUNDLES}
    assert all((b / "docs" / "README.md").is_file() for b in BUNDLES), "every bundle needs docs/README.md"


@pytest.mark.parametrize("bundle", BUNDLES, ids=lambda b: b.name)
def test_card_follows_the_template(bundle):
    assert not template_problems(_card(bundle))


@pytest.mark.parametrize("bundle", BUNDLES, ids=lambda b: b.name)
def test_eval_metrics_are_quoted_in_performance(bundle):
    assert not figure_problems(_card(bundle), _eval_metrics(bundle))


@pytest.mark.parametrize("bundle", BUNDLES, ids=lambda b: b.name)
def test_performance_shows_the_training_curves_and_how_they_are_made(bundle):
    performance = section(_card(bundle), "## Performance")
    assert f"]({FIGURE})" in performance
    assert f"scripts/plot_training.py --bundle {bundle.name}" in performance


@pytest.mark.parametrize("bundle", BUNDLES, ids=lambda b: b.name)
def test_references_have_links(bundle):
    assert not reference_problems(_card(bundle))


@pytest.mark.parametrize("bundle", BUNDLES, ids=lambda b: b.name)
def test_no_wording_about_outside_the_project(bundle):
    assert not outside_problems(_card(bundle))


BAD_CARD = """# A title
# Model Overview
## Data
```bash
# not a heading
```
## Performance
dice_mean 0.8990 and 0.89975
## Training configuration
### Output
### Input
## Switches for the ablations the review asks for
## MONAI Bundle Commands
# References
- Someone. A paper. 2020.
# License
"""


def test_the_checks_catch_a_bad_card():
    assert len(template_problems(BAD_CARD)) == 2  # order (and Input/Output swapped), extra top-level sections
    assert "# not a heading" not in [h for _, h in headings(BAD_CARD)]
    assert figure_problems(BAD_CARD, {"demo_test_mean_dice": 0.8997})  # neither 0.8990 nor 0.89975 is 0.8997
    assert not figure_problems(BAD_CARD.replace("0.8990", "0.8997"), {"demo_test_mean_dice": 0.8997})
    assert figure_problems(BAD_CARD, {})
    assert reference_problems(BAD_CARD) == ["reference without a link: - Someone. A paper. 2020."]
    assert len(outside_problems(BAD_CARD)) >= 2  # "review" and "asks"


# --- scripts/plot_training.py -------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def plot():
    return load_script("plot_training.py")


def write_run(log_dir: Path, epochs: int = 3, per_epoch: int = 4, start: float = 1000.0, offset: float = 0.0,
              unfinished: int = 0) -> None:
    """Event files as train.json's handlers write them: one writer for the trainer (``train_loss`` per iteration,
    ``train_mean_dice`` per epoch), one for the evaluator (``val_mean_dice`` per epoch)."""
    from torch.utils.tensorboard import SummaryWriter

    train, val = SummaryWriter(str(log_dir)), SummaryWriter(str(log_dir))
    t, iteration = start, 0
    for epoch in range(1, epochs + 1):
        for k in range(per_epoch):
            iteration, t = iteration + 1, t + 1
            train.add_scalar("train_loss", offset + epoch + k / 10, iteration, walltime=t)  # epoch mean: offset + epoch + 0.15
        t += 1
        val.add_scalar("val_mean_dice", offset + epoch / 10, epoch, walltime=t)
        t += 1
        train.add_scalar("train_mean_dice", 0.5, epoch, walltime=t)
    for _ in range(unfinished):  # iterations of an epoch that never ended
        iteration, t = iteration + 1, t + 1
        train.add_scalar("train_loss", 99.0, iteration, walltime=t)
    train.close()
    val.close()


def test_plot_reads_the_tags_per_epoch(plot, tmp_path):
    write_run(tmp_path, unfinished=2)
    loss, dice = plot.per_epoch(plot.read_scalars(tmp_path))
    assert loss == pytest.approx({1: 1.15, 2: 2.15, 3: 3.15})  # the unfinished epoch's iterations are left out
    assert dice == pytest.approx({1: 0.1, 2: 0.2, 3: 0.3})


def test_plot_reads_the_newest_run_in_a_folder(plot, tmp_path):
    write_run(tmp_path, epochs=5, start=1000.0)
    write_run(tmp_path, epochs=2, start=5000.0, offset=10.0)  # a rerun into the same log_dir
    loss, dice = plot.per_epoch(plot.read_scalars(tmp_path))
    assert loss == pytest.approx({1: 11.15, 2: 12.15}) and dice == pytest.approx({1: 10.1, 2: 10.2})


def test_plot_writes_the_png(plot, tmp_path, capsys):
    write_run(tmp_path / "logs")
    out = tmp_path / "curves.png"
    assert plot.main(["--bundle", "unet", "--log-dir", str(tmp_path / "logs"), "--output", str(out)]) == 0
    with Image.open(out) as image:
        assert image.format == "PNG" and image.size == (1200, 470)
        assert len(set(image.convert("RGB").getdata())) > 2  # something was drawn
    assert "3 epochs" in capsys.readouterr().out
    with pytest.raises(SystemExit, match="exists; pass --overwrite"):
        plot.main(["--bundle", "unet", "--log-dir", str(tmp_path / "logs"), "--output", str(out)])
    assert plot.main(["--bundle", "unet", "--log-dir", str(tmp_path / "logs"), "--output", str(out), "--overwrite"]) == 0


def test_plot_finds_the_log_dir_from_the_config(plot, tmp_path):
    """log_dir is train.json's (``<bundle_root>/logs``), or pretrain.json's for TAMISeg's phase I."""
    write_run(tmp_path / "logs" / "pretrain", epochs=2)
    out = tmp_path / "phase1.png"
    args = ["--bundle", "tamiseg", "--bundle-root", str(tmp_path), "--output", str(out)]
    with pytest.raises(SystemExit, match=re.escape(str(tmp_path / "logs"))):  # phase II wrote nothing there
        plot.main(args)
    assert plot.main([*args, "--config", "pretrain.json"]) == 0 and out.is_file()


def test_plot_says_which_folder_has_no_events(plot, tmp_path):
    with pytest.raises(SystemExit, match=f"no TensorBoard event files .* in {re.escape(str(tmp_path))}"):
        plot.main(["--bundle", "unet", "--log-dir", str(tmp_path), "--output", str(tmp_path / "x.png")])
    assert not (tmp_path / "x.png").exists()


def test_plot_names_missing_tags(plot, tmp_path):
    from torch.utils.tensorboard import SummaryWriter

    with SummaryWriter(str(tmp_path)) as writer:
        writer.add_scalar("loss", 1.0, 1)
    with pytest.raises(ValueError, match=r"\['train_loss', 'train_mean_dice', 'val_mean_dice'\].*found: \['loss'\]"):
        plot.per_epoch(plot.read_scalars(tmp_path))


@pytest.mark.parametrize("bundle", BUNDLES, ids=lambda b: b.name)
def test_no_unfilled_placeholder(bundle):
    """A line that is only an upper-case token (``RESULTS_TABLE``) is a placeholder left for figures never filled in."""
    lines = [line.strip() for line in _card(bundle).splitlines()]
    assert not [line for line in lines if re.fullmatch(r"[A-Z][A-Z0-9_]{5,}", line)]
