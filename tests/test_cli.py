"""The command line, end to end, with tiny settings."""

import csv
import json
import os
import stat
import subprocess
import sys

import numpy as np
import pytest
import torch

from dataprune import bench, cli, pipeline

TINY = ["--epochs", "1", "--surrogate-epochs", "2", "--checkpoints", "1,2", "--train-limit", "300",
        "--ratios", "0.5,0.9", "--quiet"]
DIGITS = ["--dataset", "digits", "--train-limit", "200"]


def _rows(path):
    with open(path) as f:
        return list(csv.DictReader(f))


def test_demo_end_to_end_and_resume(tmp_path, capsys, monkeypatch):
    out = tmp_path / "demo"
    assert cli.main(["demo", "--out", str(out), "--jobs", "1"] + TINY) == 0
    printed = capsys.readouterr().out
    assert "| moso |" in printed and "| recommended |" in printed and "| random |" in printed
    assert "Full data" in printed and "pruning cost" in printed
    rows = _rows(out / "results.csv")
    assert {"method", "ratio", "seed", "test_acc", "cost_fraction", "prune_seconds", "plan"} <= set(rows[0])
    assert [(r["method"], r["ratio"]) for r in rows] == [
        ("full", "0"), ("moso", "0.5"), ("moso", "0.9"), ("recommended", "0.5"), ("recommended", "0.9"),
        ("random", "0.5"), ("random", "0.9")]
    assert all(0 <= float(r["test_acc"]) <= 1 for r in rows)
    assert all(r["policy"] == {"moso": "class_balanced", "recommended": "auto", "random": "class_balanced"}[r["method"]]
               for r in rows if r["method"] != "full")
    # every pruned cell carries a measured cost: surrogate + scoring over the measured full-data run, in CPU time
    full = float(rows[0]["train_cpu_seconds"])
    assert {r["cost_clock"] for r in rows} == {"cpu"}
    for r in rows[1:]:
        assert float(r["cost_fraction"]) == pytest.approx(float(r["prune_seconds"]) / full, rel=1e-4)
    for png in ("accuracy_vs_ratio.png", "accuracy_vs_cost.png"):
        assert (out / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "| pruning cost |" in (out / "results.md").read_text()
    scores = np.load(out / "scores" / "moso-seed0.npy")
    meta = json.loads((out / "scores" / "moso-seed0.npy.json").read_text())
    assert scores.shape == (300,) and meta["method"] == "moso" and meta["fingerprint"]["n"] == 300
    keep = np.load(out / "indices" / "recommended-r0.9-seed0.npy")
    kmeta = json.loads((out / "indices" / "recommended-r0.9-seed0.npy.json").read_text())
    assert len(keep) == 30 and np.all(np.diff(keep) > 0)
    assert kmeta["decisions"]["sampling"] == "random" and "estimated_noise_per_class" in kmeta["decisions"]

    # Same command again: every cell is done, nothing is retrained.
    monkeypatch.setattr(bench, "_retrain_unit", lambda *a, **k: pytest.fail("finished cell recomputed"))
    before = (out / "results.csv").read_text()
    assert cli.main(["demo", "--out", str(out), "--jobs", "1"] + TINY) == 0
    assert (out / "results.csv").read_text() == before

    # Other settings in the same folder are refused, with the differing fields named.
    assert cli.main(["demo", "--out", str(out), "--lr", "0.1", "--jobs", "1"] + TINY) == 2
    assert "different settings (retrain, surrogate)" in capsys.readouterr().err


def test_tables_do_not_depend_on_threads_or_jobs(tmp_path, monkeypatch):
    """Each unit runs with --threads compute threads whatever the process has and however many units run
    at once: the same table from one job in a 2-thread process and from two 1-thread workers."""
    args = ["demo", "--methods", "recommended,random", "--dataset", "digits", "--epochs", "2", "--checkpoints",
            "1,2", "--train-limit", "240", "--ratios", "0.5,0.9", "--quiet"]
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        assert cli.main(args + ["--out", str(tmp_path / "a"), "--jobs", "1"]) == 0
        torch.set_num_threads(1)
        assert cli.main(args + ["--out", str(tmp_path / "b"), "--jobs", "2"]) == 0
    finally:
        torch.set_num_threads(before)
    a, b = _rows(tmp_path / "a" / "results.csv"), _rows(tmp_path / "b" / "results.csv")
    cells = lambda rows: [(r["method"], r["ratio"], r["test_acc"]) for r in rows]
    assert cells(a) == cells(b)
    def accuracy_cells(folder):      # the table without its timing column
        text = (folder / "results.md").read_text().split("Full data")[0]
        return [line.rsplit("|", 2)[0] for line in text.splitlines() if line.startswith("| ")]

    assert accuracy_cells(tmp_path / "a") == accuracy_cells(tmp_path / "b")


def test_step_by_step_commands(tmp_path, capsys, monkeypatch):
    ck, sc, keep, res = (str(tmp_path / n) for n in ("ck.pt", "s.npy", "keep.npy", "res.csv"))
    # --threads sets the compute threads of the command (here a train on a busy machine), for it only;
    # --quiet too: neither leaks into the next call in the same process.
    before, seen = torch.get_num_threads(), []
    monkeypatch.delenv("DATAPRUNE_QUIET", raising=False)          # conftest sets it for the whole session
    real = cli.COMMANDS["train"]
    monkeypatch.setitem(cli.COMMANDS, "train", lambda args, log: (seen.append(torch.get_num_threads()),
                                                                  real(args, log)))
    assert cli.main(["train", *DIGITS, "--epochs", "2", "--checkpoints", "1,2", "--out", ck, "--quiet",
                     "--threads", "1"]) == 0
    assert seen == [1] and torch.get_num_threads() == before and "DATAPRUNE_QUIET" not in os.environ
    assert cli.main(["score", *DIGITS, "--checkpoints-file", ck, "--out", sc, "--quiet"]) == 0
    meta = json.loads(open(sc + ".json").read())
    assert [c["epoch"] for c in meta["checkpoints"]] == [1, 2] and meta["checkpoints_file"] == ck
    assert meta["environment"]["git_commit"]            # run from a checkout: the commit is recorded
    assert cli.main(["select", *DIGITS, "--scores", sc, "--ratio", "0.7", "--out", keep, "--quiet"]) == 0
    assert len(np.load(keep)) == 60
    lines = open(keep[:-4] + ".csv").read().splitlines()
    assert lines[0] == "index,label,score,source_index" and len(lines) == 61
    assert cli.main(["evaluate", *DIGITS, "--indices", keep, "--epochs", "1", "--out", res, "--quiet"]) == 0
    assert "test accuracy" in capsys.readouterr().out
    row = _rows(res)[0]
    assert row["n_kept"] == "60" and row["policy"] == "auto" and len(row["test_acc"]) <= 8   # the default method's

    # Nothing is overwritten without --force, and select says so before doing any work.
    assert cli.main(["select", *DIGITS, "--scores", sc, "--ratio", "0.5", "--out", keep, "--quiet"]) == 2
    assert f"{keep} already exists; pass --force" in capsys.readouterr().err
    assert len(np.load(keep)) == 60
    assert cli.main(["select", *DIGITS, "--scores", sc, "--ratio", "0.5", "--out", keep, "--quiet", "--force"]) == 0
    assert len(np.load(keep)) == 100

    # Scores made on clean labels are refused for the noisy-label dataset, naming the setting.
    assert cli.main(["select", *DIGITS, "--label-noise", "0.2", "--scores", sc, "--ratio", "0.5",
                     "--out", str(tmp_path / "k2.npy"), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "made for a different dataset" in err and "labels differ" in err and "label_noise 0.0 there vs 0.2" in err
    assert not os.path.exists(tmp_path / "k2.npy")

    # Files get the mode a plain open() would give them (umask), not mkstemp's private 0600.
    mask = os.umask(0)
    os.umask(mask)
    assert stat.S_IMODE(os.stat(keep).st_mode) == 0o666 & ~mask


def test_score_with_inline_surrogate_partitions_and_default_checkpoints(tmp_path):
    out = str(tmp_path / "s.npy")
    assert cli.main(["score", "--dataset", "digits", "--train-limit", "240", "--epochs", "2", "--checkpoints",
                     "even:2", "--partitions", "2", "--params", "last_layer", "--out", out, "--quiet"]) == 0
    s = np.load(out)
    meta = json.loads(open(out + ".json").read())
    assert s.shape == (240,) and np.isfinite(s).all()
    assert meta["partitions"] == 2 and len(meta["checkpoints"]) == 4 and meta["options"] == {"params": "last_layer"}
    assert meta["cost"]["cost_fraction"] > 0
    # fewer than 9 epochs: the default checkpoints are spread over the epochs there are
    out3 = str(tmp_path / "s3.npy")
    assert cli.main(["score", *DIGITS, "--epochs", "3", "--params", "last_layer", "--out", out3, "--quiet"]) == 0
    assert [c["epoch"] for c in json.loads(open(out3 + ".json").read())["checkpoints"]] == [1, 2, 3]


def test_budget_picks_a_cheaper_plan_and_records_its_cost(tmp_path, capsys):
    out = str(tmp_path / "b.npy")
    assert cli.main(["score", *DIGITS, "--method", "recommended", "--epochs", "10", "--budget", "0.25",
                     "--out", out]) == 0
    err = capsys.readouterr().err
    meta = json.loads(open(out + ".json").read())
    cost = meta["cost"]
    assert cost["budget"] == 0.25 and cost["expected_cost_fraction"] <= 0.25
    assert cost["plan"] == pipeline.resolve_plan("recommended", budget=0.25, recipe_epochs=10,
                                                 checkpoint_epochs=[1, 3, 5, 7, 9])[0].name
    assert max(c["epoch"] for c in meta["checkpoints"]) <= 3        # an early segment of the trajectory
    # What it cost (CPU time, measured) is of the size the plan expected (0.10 against 0.16 here): the
    # expected cost is an upper estimate, not a different unit. The band is wide: CPU time of a run this short
    # moves with the machine's load (0.45 against 0.25 with another job on the two cores).
    assert 0.2 * cost["expected_cost_fraction"] <= cost["cost_fraction"] <= 3.0 * cost["expected_cost_fraction"]
    assert "budget 0.25" in err and "of one full training run" in err
    assert cli.main(["score", *DIGITS, "--budget", "0.001", "--out", str(tmp_path / "x.npy"), "--quiet"]) == 2
    assert "no plan fits a budget of 0.001" in capsys.readouterr().err


def test_errors_are_one_clear_line(tmp_path, capsys):
    def err(*argv):
        assert cli.main(list(argv)) == 2
        text = capsys.readouterr().err
        assert text.count("\n") == 1 and "Traceback" not in text, text
        return text

    assert "unknown method 'nope'; valid methods: moso" in err("score", "--method", "nope", "--out", "x.npy", "--quiet")
    assert "--checkpoints 'every:0'" in err("demo", "--checkpoints", "every:0", "--quiet")
    if not torch.cuda.is_available():
        assert "sees no CUDA GPU; use --device cpu" in err("score", *DIGITS, "--device", "cuda", "--out",
                                                           str(tmp_path / "c.npy"), "--quiet")
    assert "unknown device 'gpu0'" in err("score", *DIGITS, "--device", "gpu0", "--out", str(tmp_path / "g.npy"))
    assert "train_limit must be in [1, 1438]" in err("score", "--dataset", "digits", "--train-limit", "0",
                                                     "--out", str(tmp_path / "z.npy"), "--quiet")
    os.makedirs(tmp_path / "d")
    assert "is a folder; name the CSV file" in err("evaluate", *DIGITS, "--out", str(tmp_path / "d"), "--force")
    out = tmp_path / "diverged"
    assert cli.main(["prune", *DIGITS, "--model", "mlp", "--epochs", "2", "--lr", "1e6", "--ratio", "0.5",
                     "--out", str(out), "--quiet"]) == 1              # a recipe that diverges: a run failure
    text = capsys.readouterr().err
    assert "error: training diverged at epoch" in text and "lower the learning rate" in text
    assert text.count("\n") == 1 and "Traceback" not in text and not out.exists()   # the folder it made is gone
    with pytest.raises(SystemExit):
        cli.main(["demo", "--ratios", "0.5,1.2"])
    with pytest.raises(SystemExit):          # bench has no --seed: seeds are --seeds
        cli.main(["bench", "--seed", "3"])
    capsys.readouterr()


def test_installed_entry_point_help():
    out = subprocess.run([sys.executable, "-m", "dataprune", "score", "--help"], capture_output=True, text=True,
                         check=True).stdout
    assert "examples:" in out and "--checkpoints-file" in out and "--budget" in out
    listing = subprocess.run([sys.executable, "-m", "dataprune", "list"], capture_output=True, text=True,
                             check=True).stdout
    from dataprune.dynamic import METHODS as DYNAMIC
    from dataprune.methods import METHODS
    from dataprune.select import POLICIES

    assert all(f"  {m} " in listing for m in METHODS) and all(f"  {p} " in listing for p in POLICIES)
    assert all(f"  {m} " in listing for m in DYNAMIC)
    assert "robustness" in listing and "early2-head" in listing


def test_bench_validates_everything_before_training(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(pipeline, "train", lambda *a, **k: pytest.fail("trained before validating"))
    base = ["bench", *DIGITS, "--epochs", "2", "--checkpoints", "1,2", "--seeds", "1", "--ratios", "0.5",
            "--jobs", "1", "--quiet"]
    assert cli.main(base + ["--methods", "moso,el2n", "--set", "el2m.keep=easy"]) == 2
    assert "--set names method 'el2m', which is not in the grid" in capsys.readouterr().err
    assert cli.main(base + ["--methods", "random", "--set", "random.keep=easy"]) == 2
    assert "method 'random' has no option(s) ['keep']" in capsys.readouterr().err
    assert cli.main(base + ["--methods", "aum+ccs", "--policy-set", "ccs.bta=0.1"]) == 2
    assert "policy 'ccs' has no option(s) ['bta']" in capsys.readouterr().err
    assert cli.main(base + ["--methods", "moso+best"]) == 2
    assert "unknown policy 'best'" in capsys.readouterr().err
    assert cli.main(["bench", "--preset", "nope", "--quiet"]) == 2
    assert "unknown preset 'nope'; valid presets: mnist5k-cpu" in capsys.readouterr().err


def test_bench_extends_splits_by_seed_and_merges(tmp_path, capsys, monkeypatch):
    a, b, merged = tmp_path / "a", tmp_path / "b", tmp_path / "m"
    base = ["bench", *DIGITS, "--epochs", "2", "--checkpoints", "1,2", "--ratios", "0.5", "--jobs", "1"]
    assert cli.main(base + ["--methods", "moso,aum+ccs", "--policy-set", "ccs.beta=0.05", "--seeds", "0-0",
                            "--out", str(a)]) == 0
    err = capsys.readouterr().err
    assert "[1/3]" in err and "aum+ccs r=0.5 seed 0" in err          # one line per finished cell
    rows = _rows(a / "results.csv")
    by = {r["method"]: r for r in rows}
    assert set(by) == {"full", "moso", "aum+ccs"} and by["aum+ccs"]["policy"] == "ccs"
    assert json.loads((a / "indices" / "aum+ccs-r0.5-seed0.npy.json").read_text())["policy_options"] == {"beta": 0.05}

    # Adding a method to the folder reuses the saved surrogate and the full-data run.
    calls = []
    real = pipeline.train
    monkeypatch.setattr(pipeline, "train", lambda *a_, **k: calls.append(1) or real(*a_, **k))
    assert cli.main(base + ["--methods", "kcenter", "--seeds", "0-0", "--out", str(a), "--quiet"]) == 0
    assert calls == [] and capsys.readouterr().err == ""               # --quiet: not even the cell lines
    assert {r["method"] for r in _rows(a / "results.csv")} == {"full", "moso", "aum+ccs", "kcenter"}
    assert json.loads((a / "run.json").read_text())["methods"] == ["moso", "aum+ccs", "kcenter"]

    # Another seed in another folder (another machine), without the full-data run, then one merged folder.
    assert cli.main(base + ["--methods", "moso,aum+ccs,kcenter", "--policy-set", "ccs.beta=0.05", "--seeds", "3-3",
                            "--no-full", "--out", str(b), "--quiet"]) == 0
    rows_b = _rows(b / "results.csv")
    assert {r["seed"] for r in rows_b} == {"3"} and "full" not in {r["method"] for r in rows_b}
    assert all(float(r["cost_fraction"]) > 0 for r in rows_b)          # estimated from the surrogate's speed
    assert cli.main(["bench", "--merge", str(a), str(b), "--out", str(merged), "--quiet"]) == 0
    m = _rows(merged / "results.csv")
    assert sorted({r["seed"] for r in m}) == ["0", "3"] and len(m) == len(_rows(a / "results.csv")) + len(rows_b)
    # b had no full-data run to divide by: its rows get their total cost from the full-data row merged in
    assert all(r["total_cost"] in ("", "nan") for r in rows_b)
    full_cpu = float(next(r["train_cpu_seconds"] for r in m if r["method"] == "full"))
    for r in (r for r in m if r["seed"] == "3"):
        expect = (float(r["prune_seconds"]) + float(r["train_cpu_seconds"])) / full_cpu
        assert float(r["total_cost"]) == pytest.approx(expect, rel=1e-3)
    assert json.loads((merged / "run.json").read_text())["seeds"] == [0, 3]
    # What ran it is recorded once per distinct environment (a machine with other CPU kernels would add one:
    # the same seed can then give other floats); extending the folder on the same machine adds none.
    envs = json.loads((merged / "run.json").read_text())["environments"]
    assert envs == json.loads((a / "run.json").read_text())["environments"] and len(envs) == 1
    assert envs[0]["cpu_capability"] and envs[0]["torch"] == torch.__version__
    assert (merged / "accuracy_vs_ratio.png").exists() and (merged / "scores" / "moso-seed3.npy").exists()

    # The default beside a method that needs no surrogate: its cost is still estimated (it once came out NaN
    # when the second group, random alone, trained nothing).
    c = tmp_path / "c"
    assert cli.main(base + ["--methods", "recommended,random", "--seeds", "0-0", "--no-full", "--out", str(c),
                            "--quiet"]) == 0
    by = {r["method"]: r for r in _rows(c / "results.csv")}
    assert float(by["recommended"]["cost_fraction"]) > 0.5 and float(by["random"]["cost_fraction"]) < 0.05


def test_recommended_scores_carry_evidence_for_the_auto_policy(tmp_path, capsys):
    sc, keep = str(tmp_path / "s.npy"), str(tmp_path / "k.npy")
    assert cli.main(["score", *DIGITS, "--method", "recommended", "--epochs", "2", "--checkpoints", "1,2",
                     "--out", sc, "--quiet"]) == 0
    meta = json.loads(open(sc + ".json").read())
    assert meta["aux"]["arrays"] == ["disagreement", "features", "gradnorm", "probs"]
    assert os.path.exists(str(tmp_path / "s.aux.npz"))
    # no --policy: the method's own (auto)
    assert cli.main(["select", *DIGITS, "--scores", sc, "--ratio", "0.5", "--out", keep]) == 0
    assert "labels that look wrong" in capsys.readouterr().err
    assert len(np.load(keep)) == 100
    kmeta = json.loads(open(keep + ".json").read())
    assert kmeta["policy"] == "auto" and kmeta["decisions"]["sampling"] == "top"
    assert 0 <= kmeta["decisions"]["estimated_noise"] < 0.45
    assert "off_centre" in kmeta["decisions"]          # the saved features reached the policy
    assert cli.main(["select", *DIGITS, "--scores", sc, "--ratio", "0.9", "--out", str(tmp_path / "k9.npy"),
                     "--quiet"]) == 0
    assert json.loads(open(str(tmp_path / "k9.npy.json")).read())["decisions"]["sampling"] == "random"
    # scores without evidence are refused for auto, with the way to get it; --evidence records it
    plain = str(tmp_path / "m.npy")
    assert cli.main(["score", *DIGITS, "--method", "moso", "--epochs", "2", "--checkpoints", "1,2",
                     "--out", plain, "--quiet"]) == 0
    capsys.readouterr()
    assert cli.main(["select", *DIGITS, "--scores", plain, "--ratio", "0.5", "--policy", "auto",
                     "--out", str(tmp_path / "k2.npy"), "--quiet"]) == 2
    assert "needs the per-sample evidence (probs)" in capsys.readouterr().err
    assert cli.main(["score", *DIGITS, "--method", "moso", "--evidence", "--epochs", "2", "--checkpoints", "1,2",
                     "--out", plain, "--force", "--quiet"]) == 0
    assert cli.main(["select", *DIGITS, "--scores", plain, "--ratio", "0.5", "--policy", "auto",
                     "--out", str(tmp_path / "k2.npy"), "--quiet"]) == 0


def test_prune_in_one_step_and_its_report(tmp_path, capsys):
    out = tmp_path / "p"
    assert cli.main(["prune", *DIGITS, "--epochs", "2", "--checkpoints", "1,2", "--ratio", "0.7",
                     "--out", str(out), "--quiet"]) == 0
    printed = capsys.readouterr().out
    assert "kept 60 of 200 samples" in printed and "labels that look wrong" in printed and "pruning cost" in printed
    for f in ("keep.npy", "keep.csv", "scores.npy", "result.json", "report.html"):
        assert (out / f).exists(), f
    assert cli.main(["prune", *DIGITS, "--epochs", "2", "--ratio", "0.7", "--out", str(out), "--quiet"]) == 2
    assert "already exists; pass --force" in capsys.readouterr().err
    os.remove(out / "report.html")
    assert cli.main(["report", str(out), "--quiet"]) == 0
    assert "class0-kept.png" in (out / "report.html").read_text()      # the dataset was loaded again: images
    # A result whose dataset no longer matches (here: its recorded labels) gets tables, not wrong images.
    meta = json.loads((out / "keep.npy.json").read_text())
    meta["fingerprint"]["labels_sha256"] = "0" * 16
    (out / "keep.npy.json").write_text(json.dumps(meta))
    capsys.readouterr()
    # report.html exists now: not overwritten without --force; a --bench folder that is not one is an error.
    before = (out / "report.html").read_text()
    assert cli.main(["report", str(out), "--quiet"]) == 2
    assert "report.html already exists; pass --force" in capsys.readouterr().err
    assert cli.main(["report", str(out), "--bench", str(tmp_path / "missing"), "--force", "--quiet"]) == 2
    assert "is not a bench folder (no results.csv there)" in capsys.readouterr().err
    assert (out / "report.html").read_text() == before
    assert cli.main(["report", str(out), "--force"]) == 0
    said = "".join(capsys.readouterr())
    assert "made for a different dataset" in said and "tables instead of images" in said
    assert "class0-kept.png" not in (out / "report.html").read_text()


def test_prune_says_every_stage_off_a_terminal(tmp_path, capsys, monkeypatch):
    """No silent stretch: a line when each stage starts, a line per surrogate epoch and per scored checkpoint."""
    monkeypatch.delenv("DATAPRUNE_QUIET", raising=False)
    assert cli.main(["prune", *DIGITS, "--epochs", "3", "--checkpoints", "1,3", "--ratio", "0.5",
                     "--out", str(tmp_path / "p")]) == 0
    lines = [ln.split(" (")[0] for ln in capsys.readouterr().err.splitlines()]
    want = ["[dataprune] digits: 200 training samples", "[dataprune] surrogate 3 of 3 epochs",
            "[dataprune] surrogate: epoch 1/3", "[dataprune] surrogate: epoch 3/3", "[dataprune] ckpt 1/2",
            "[dataprune] ckpt 2/2", "[dataprune] selecting: pruning ratio 0.5 of 200 samples",
            "[dataprune] writing the report", "wrote keep.npy"]
    at = [next((i for i, ln in enumerate(lines) if ln.startswith(w)), None) for w in want]
    assert None not in at, "\n".join(lines)
    assert at == sorted(at), "\n".join(lines)


def test_a_second_run_on_the_same_output_is_refused(tmp_path, capsys):
    from dataprune.io import output_lock

    out = str(tmp_path / "s.npy")
    with output_lock(out):
        assert cli.main(["score", *DIGITS, "--epochs", "1", "--checkpoints", "1", "--params", "last_layer",
                         "--out", out, "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "is being written by another run (pid " in err and str(os.getpid()) in err
    assert not os.path.exists(out + ".lock")                              # released on exit
    assert cli.main(["score", *DIGITS, "--epochs", "1", "--checkpoints", "1", "--params", "last_layer",
                     "--out", out, "--quiet"]) == 0


def test_score_then_select_on_a_budget_too_short_to_judge_labels_gives_the_advice(tmp_path, capsys):
    data = ["--dataset", "digits", "--label-noise", "0.2"]
    scores = str(tmp_path / "s.npy")
    assert cli.main(["score", *data, "--epochs", "10", "--batch-size", "32", "--lr", "0.05", "--budget", "0.1",
                     "--out", scores]) == 0
    err = capsys.readouterr().err
    meta = json.loads(open(scores + ".json").read())
    advice = meta["evidence_advice"]                       # the same advice dp.prune gives, kept with the scores
    assert advice["plan"] == meta["cost"]["plan"] and advice["next_steps"] >= 2 * advice["steps"] - 1
    assert f"a budget of {advice['next_budget']:g}" in err
    # its probabilities were not, its features' neighbourhoods were: they judged the labels (and select reads them)
    assert "probabilities not credible" in err and "nearest neighbours in its feature space judged them" in err
    assert meta["evidence_report"][0]["neighbours_judged"]["credible"]           # one report per part
    assert cli.main(["select", *data, "--scores", scores, "--ratio", "0.5", "--out", str(tmp_path / "k.npy")]) == 0
    assert f"buys {advice['next_plan']}" in capsys.readouterr().err
