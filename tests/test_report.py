"""scripts/report.py, scripts/multiseed.py and scripts/text_sensitivity.py on bundles trained on the tiny demo set:
the report's table, figures and sections, its bad-input handling (a bundle without a checkpoint, a datalist
without sentences), and that it never leaves half a report or replaces one unasked."""

import csv
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from conftest import load_script
from custom_nets.data.phrasing import write_phrasing_datalist
from custom_nets.evaluation.multiseed import budget_arguments, compare, load_summary, record_run, run_directory, run_seeds
from custom_nets.evaluation.perturbations import KINDS
from custom_nets.evaluation.runs import train_and_evaluate

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def runs(trained_bundle, tmp_path_factory):
    """A runs folder as scripts/demo.py leaves it: <runs>/<bundle>/models/model.pt, for himix and unet."""
    folder = tmp_path_factory.mktemp("runs")
    for name in ("himix", "unet"):
        (folder / name).symlink_to(trained_bundle(name)[0])
    return folder


def fake_evaluation(root, cases, dice, seed):
    """What an evaluate run leaves in <root>/eval: metrics.csv and dice_mean_raw.csv."""
    (root / "eval").mkdir(parents=True)
    values = [float(np.clip(d + 0.01 * seed, 0, 1)) for d in dice]
    with open(root / "eval" / "metrics.csv", "w") as f:
        csv.writer(f).writerows([["dice_mean", float(np.mean(values))], ["consistency", 0.5 + 0.1 * seed]])
    with open(root / "eval" / "dice_mean_raw.csv", "w") as f:
        csv.writer(f).writerows([["filename", "class0", "mean"]] + [[c, v, v] for c, v in zip(cases, values)])


@pytest.fixture(scope="module")
def multiseed(tmp_path_factory, tiny_demo):
    """Multi-seed summaries over two budgets and two seeds, from evaluations already on disk (run_seeds resumes
    them instead of training: the training itself is what every bundle test runs)."""
    out = tmp_path_factory.mktemp("multiseed")
    data_root, datalist = tiny_demo
    cases = [f"images/test_{i:04d}.png" for i in range(4)]
    for name, base in (("himix", [0.9, 0.85, 0.95, 0.8]), ("unet", [0.5, 0.6, 0.4, 0.55])):
        for budget in (0.5, 1.0):
            for seed in (0, 1):
                root = run_directory(out, name, budget, seed)
                fake_evaluation(root, cases, [d * (0.7 + 0.3 * budget) for d in base], seed)
                record_run(root, name, ["demo.json"], datalist, budget, seed, [])
        run_seeds(name, ["demo.json"], out, data_root, datalist, seeds=[0, 1], budgets=[0.5, 1.0], progress=lambda m: None)
    # a run of other configs in the same folder: not resumed, not summarised
    other = run_directory(out, "himix", 0.25, 0)
    fake_evaluation(other, cases, [0.1] * 4, 0)
    record_run(other, "himix", ["demo.json", "other.json"], datalist, 0.25, 0, [])
    with pytest.raises(ValueError, match="holds a run made with other configs"):
        run_seeds("himix", ["demo.json"], out, data_root, datalist, seeds=[0], budgets=[0.25], progress=lambda m: None)
    assert load_summary(out / "himix")["skipped"] == []  # the failed call rewrote nothing
    run_seeds("himix", ["demo.json"], out, data_root, datalist, seeds=[0], budgets=[1.0], progress=lambda m: None)
    assert load_summary(out / "himix")["skipped"] == [str(other)] and "0.25" not in load_summary(out / "himix")["budgets"]
    return out


def test_multiseed_summary_and_paired_test(multiseed):
    himix, unet = load_summary(multiseed / "himix"), load_summary(multiseed / "unet")
    mean, std, n = himix["budgets"]["1"]["mean_std"]["dice_mean"]
    assert n == 2 and mean == pytest.approx(0.875 + 0.005, abs=1e-4) and std == pytest.approx(0.0071, abs=1e-4)
    c = compare(himix, unet)
    assert c["n"] == 4 and c["mean_difference"] == pytest.approx(0.875 - 0.5125, abs=1e-4) and c["ci_low"] > 0
    assert 0 < c["wilcoxon_p"] <= 0.125  # 4 cases, all positive: the smallest two-sided p is 2/16
    with pytest.raises(ValueError, match=r"budget .* in \(0, 1\]"):
        run_seeds("himix", [], multiseed, multiseed, multiseed, seeds=[0], budgets=[1.5])
    # a budget is a share of the training split, or of the train_items a config fixes (LCPDN's QaTa recipe: 150)
    assert budget_arguments("himix", ["demo.json"], 0.25) == ["--train_fraction", "0.25"]
    assert budget_arguments("lcpdn", ["demo.json"], 0.5) == ["--train_fraction", "0.5"]
    assert budget_arguments("lcpdn", ["recipes/qata_cov19.json"], 0.5) == ["--train_items", "75"]
    assert budget_arguments("lcpdn", ["recipes/qata_cov19.json"], 1.0) == []


def test_multiseed_held_out_phrasing(multiseed, tiny_demo, monkeypatch):
    """run_seeds(phrasing=...) evaluates each kept run lacking eval_phrasing/ once; the summary carries its Dice."""
    import custom_nets.evaluation.multiseed as ms

    data_root, datalist = tiny_demo
    calls = []

    def fake_evaluate_on(bundle, configs, root, data_root_, phrasing, name):
        calls.append((bundle, Path(root).name, Path(phrasing).name, name))
        (Path(root) / name).mkdir()
        with open(Path(root) / name / "metrics.csv", "w") as f:
            csv.writer(f).writerows([["dice_mean", 0.42], ["consistency", 0.25]])

    monkeypatch.setattr(ms, "evaluate_on", fake_evaluate_on)
    phrasing = Path(datalist).with_name("phrasing.json")
    for _ in range(2):  # the second call finds eval_phrasing/ and evaluates nothing
        summary = run_seeds("unet", ["demo.json"], multiseed, data_root, datalist, seeds=[0, 1], budgets=[1.0],
                            progress=lambda m: None, phrasing=phrasing)
    assert calls == [("unet", "seed_0", "phrasing.json", "eval_phrasing"), ("unet", "seed_1", "phrasing.json", "eval_phrasing")]
    run = summary["budgets"]["1"]["runs"][0]["metrics"]
    assert run["dice_phrasing"] == pytest.approx(0.42) and run["consistency_phrasing"] == pytest.approx(0.25)
    assert summary["budgets"]["1"]["mean_std"]["dice_phrasing"][2] == 2
    assert "dice_phrasing" not in summary["budgets"]["0.5"]["mean_std"]  # runs not evaluated on it say nothing


def test_multiseed_phase1_from_another_run(tiny_demo, tmp_path, monkeypatch):
    """run_seeds(phase1_from=...) copies the lending run's phase-I checkpoint instead of running phase I, and the run
    records its lender; a lender without a record, without a checkpoint, or of another datalist is refused by name."""
    import custom_nets.evaluation.runs as runs_module

    data_root, datalist = tiny_demo
    lender_out, out = tmp_path / "paper", tmp_path / "variant"
    lender = run_directory(lender_out, "lcpdn", 1.0, 0)
    (lender / "models" / "pretrain").mkdir(parents=True)
    (lender / "models" / "pretrain" / "model.pt").write_bytes(b"phase I of seed 0")
    record_run(lender, "lcpdn", ["demo.json"], datalist, 1.0, 0, [])
    logs = []

    def fake_run_logged(cmd, log, cwd=None):
        logs.append(Path(log).name)
        if Path(log).name == "evaluate.log":
            fake_evaluation(Path(log).parent, ["images/test_0000.png"], [0.7], 0)

    monkeypatch.setattr(runs_module, "run_logged", fake_run_logged)
    variant = ["demo.json", "positional_cross_attention.json"]
    run_seeds("lcpdn", variant, out, data_root, datalist, seeds=[0], progress=lambda m: None, phase1_from=lender_out)
    assert logs == ["train.log", "evaluate.log"]  # no pretrain.log: phase I did not run
    root = run_directory(out, "lcpdn", 1.0, 0)
    assert (root / "models" / "pretrain" / "model.pt").read_bytes() == b"phase I of seed 0"
    assert json.loads((root / "run.json").read_text())["phase1_from"] == str(lender.resolve())
    with pytest.raises(FileNotFoundError, match=r"seed_1/run\.json: no run to take phase I from"):
        run_seeds("lcpdn", variant, out, data_root, datalist, seeds=[1], progress=lambda m: None, phase1_from=lender_out)
    record_run(run_directory(lender_out, "lcpdn", 1.0, 1), "lcpdn", ["demo.json"], datalist, 1.0, 1, [])
    with pytest.raises(FileNotFoundError, match=r"seed_1/models/pretrain/model\.pt: no phase-I checkpoint to reuse"):
        run_seeds("lcpdn", variant, out, data_root, datalist, seeds=[1], progress=lambda m: None, phase1_from=lender_out)
    record_run(lender, "lcpdn", ["demo.json"], tmp_path / "other.json", 1.0, 0, [])
    with pytest.raises(ValueError, match="its run differs in .*datalist"):
        run_seeds("lcpdn", variant, out, data_root, datalist, seeds=[0], rerun=True, progress=lambda m: None,
                  phase1_from=lender_out)
    with pytest.raises(ValueError, match="himix has no phase I"):
        train_and_evaluate("himix", ["demo.json"], tmp_path / "himix", data_root, datalist, phase1_from=lender)
    assert logs == ["train.log", "evaluate.log"]  # the refused calls ran nothing
    assert not list((root / "models").glob(".pretrain*"))  # the temporary copy was renamed into place


def test_report_of_trained_bundles(runs, multiseed, tiny_demo, tiny_overrides, tmp_path, tmp_path_factory, capsys,
                                   monkeypatch):
    data_root, datalist = tiny_demo
    report = load_script("report.py")
    out = tmp_path / "report"
    overrides = str(tiny_overrides["himix"]).replace("himix.json", "{bundle}.json")
    phrasing = tmp_path_factory.mktemp("phrasing") / "phrasing.json"  # outside tmp_path, which holds the report only
    write_phrasing_datalist(datalist, phrasing)
    args = ["--bundles", "himix", "unet", "lcpdn", "--runs", str(runs), "--config", "demo.json", overrides,
            "--datalist", str(datalist), "--data-root", str(data_root), "--multiseed", str(multiseed),
            "--phrasing", str(phrasing), "--out", str(out)]
    assert report.main(args) == 0
    printed = capsys.readouterr().out
    assert f"REPORT: {out / 'index.html'}" in printed
    md, page = (out / "README.md").read_text(), (out / "index.html").read_text()
    # the bundle without a checkpoint is named, the others are in the table
    assert "lcpdn: no checkpoint at" in md and "lcpdn: no checkpoint at" in page
    table = [line for line in md.splitlines() if line.startswith("| himix |") or line.startswith("| unet |")]
    assert len(table) >= 2
    assert "The true masks obey their sentence in" in md and "Paired per-case Dice" in md
    for rewrite in ("abbreviations", "laterality", "count"):
        assert f"| {rewrite} |" in md
    # the held-out phrasings: a row for the bundle that reads the text, none for the image-only one
    held_out = md.split("## Held-out phrasings", 1)[1].split("\n## ", 1)[0]
    assert "| bundle | template Dice | held-out Dice | by style (narrative / telegraphic) |" in held_out
    assert [line.split(" | ")[0] for line in held_out.splitlines() if line.startswith("| ") and "---" not in line][1:] == ["| himix"]
    figures = ["dice_boxplot.png", "rewrites.png", "budgets.png", "overlay_himix.png", "overlay_unet.png"]
    for name in figures:
        assert f'src="{name}"' in page and f"]({name})" in md
        with Image.open(out / name) as im:
            assert im.format == "PNG" and im.size[0] > 300
    # refused without --overwrite; a failing rerun leaves the old report whole and no partial folder
    with pytest.raises(SystemExit, match="exists; pass --overwrite"):
        report.main(args)
    monkeypatch.setattr(report.figures, "dice_boxplot", lambda *a, **k: (_ for _ in ()).throw(RuntimeError("figure failed")))
    with pytest.raises(RuntimeError, match="figure failed"):
        report.main(args + ["--overwrite"])
    assert (out / "README.md").read_text() == md
    assert sorted(p.name for p in tmp_path.iterdir()) == ["report"]


def test_report_without_sentences_says_so(runs, tiny_demo, tiny_overrides, tmp_path):
    data_root, datalist = tiny_demo
    plain = json.loads(datalist.read_text())
    for split in ("training", "validation", "test"):
        for item in plain[split]:
            item.pop("text")
    (tmp_path / "plain.json").write_text(json.dumps(plain))
    report = load_script("report.py")
    assert report.main(["--bundles", "unet", "--runs", str(runs), "--config", "demo.json", str(tiny_overrides["unet"]),
                        "--datalist", str(tmp_path / "plain.json"), "--data-root", str(data_root),
                        "--out", str(tmp_path / "r")]) == 0
    md = (tmp_path / "r" / "README.md").read_text()
    assert "has no sentences ('text'): no rewrites, no consistency" in md and "| unet |" in md
    assert "Sentence rewrites" not in md


def test_text_sensitivity_runs_the_image_only_bundle(runs, tiny_demo, tiny_overrides, capsys):
    """Every bundle, image-only included: its masks do not change with the sentence, so no rewrite moves its Dice."""
    data_root, datalist = tiny_demo
    script = load_script("text_sensitivity.py")
    assert script.main(["--bundle", "unet", "--config", "demo.json", str(tiny_overrides["unet"]), "--bundle-root",
                        str(runs / "unet"), "--datalist", str(datalist), "--data-root", str(data_root)]) == 0
    out = capsys.readouterr().out
    assert "image-only bundle" in out
    drops = {k.split()[-1]: float(v) for k, v in (line.split(": ") for line in out.splitlines() if line.startswith("DICE DROP"))}
    assert set(drops) == {"laterality", "zones", "count"} and all(d == 0 for d in drops.values())
    rows = {line.split()[0]: line.split() for line in out.splitlines() if line.split()[:1] and line.split()[0] in KINDS}
    assert set(rows) == set(KINDS) and all(int(r[2]) > 0 for r in rows.values())  # every rewrite ran on some cases


def test_report_names_sentences_that_state_nothing(runs, tiny_demo, tiny_overrides, tmp_path):
    data_root, datalist = tiny_demo
    mixed = json.loads(datalist.read_text())
    mixed["test"][0]["text"] = "Heart size is normal."
    del mixed["test"][1]["text"]
    (tmp_path / "mixed.json").write_text(json.dumps(mixed))
    report = load_script("report.py")
    assert report.main(["--bundles", "unet", "--runs", str(runs), "--config", "demo.json", str(tiny_overrides["unet"]),
                        "--datalist", str(tmp_path / "mixed.json"), "--data-root", str(data_root),
                        "--out", str(tmp_path / "r")]) == 0
    md = (tmp_path / "r" / "README.md").read_text()
    assert "4 images, 3 with a sentence" in md
    assert "1 of 3 sentences state no count, side or zone the metric can check" in md and "'Heart size is normal.'" in md
    assert "in 2 of 2 cases" in md and "2 sentence(s) state nothing checkable" in md  # the ground-truth section


def test_held_out_phrasings_name_a_failing_bundle(tiny_demo, tmp_path_factory):
    """A bundle whose pass over the held-out phrasings fails is named in that section; the report goes on."""
    import argparse

    report = load_script("report.py")
    data_root, datalist = tiny_demo
    phrasing = tmp_path_factory.mktemp("phrasing_fail") / "phrasing.json"
    write_phrasing_datalist(datalist, phrasing)

    class Broken:
        reads_text = True

        def predict(self, *args, **kwargs):
            raise RuntimeError("out of memory on the held-out pass")

    out = report.Report()
    args = argparse.Namespace(phrasing=str(phrasing), data_root=str(data_root), split="test", seed=0)
    report.phrasing_section(out, args, {"himix": Broken()}, {})
    md = "\n".join(out.md)
    assert "himix: out of memory on the held-out pass" in md and "No bundle that reads the sentence was evaluated." in md
