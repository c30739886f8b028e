"""The command line, end to end, with tiny settings."""

import csv
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from dataprune import cli, evaluate

TINY = ["--epochs", "1", "--surrogate-epochs", "2", "--checkpoints", "1,2", "--train-limit", "300",
        "--ratios", "0.5,0.9", "--quiet"]


def test_demo_end_to_end_and_resume(tmp_path, capsys, monkeypatch):
    out = tmp_path / "demo"
    assert cli.main(["demo", "--out", str(out)] + TINY) == 0
    printed = capsys.readouterr().out
    assert "| moso |" in printed and "| moso_class+auto |" in printed and "| random |" in printed
    assert "Full data" in printed
    with open(out / "results.csv") as f:
        rows = list(csv.DictReader(f))
    assert {"method", "ratio", "seed", "test_acc"} <= set(rows[0])
    assert sorted((r["method"], r["ratio"]) for r in rows) == [
        ("full", "0"), ("moso", "0.5"), ("moso", "0.9"), ("moso_class+auto", "0.5"), ("moso_class+auto", "0.9"),
        ("random", "0.5"), ("random", "0.9")]
    assert all(0 <= float(r["test_acc"]) <= 1 for r in rows)
    assert (out / "accuracy_vs_ratio.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    scores = np.load(out / "scores" / "moso-seed0.npy")
    meta = json.loads((out / "scores" / "moso-seed0.npy.json").read_text())
    assert scores.shape == (300,) and meta["method"] == "moso" and meta["fingerprint"]["n"] == 300
    keep = np.load(out / "indices" / "moso-r0.9-seed0.npy")
    assert len(keep) == 30 and np.all(np.diff(keep) > 0)

    # Same command again: every cell is done, nothing is retrained.
    monkeypatch.setattr(evaluate, "retrain", lambda *a, **k: pytest.fail("finished cell recomputed"))
    before = (out / "results.csv").read_text()
    assert cli.main(["demo", "--out", str(out)] + TINY) == 0
    assert (out / "results.csv").read_text() == before

    # Other settings in the same folder are refused, with the differing fields named.
    assert cli.main(["demo", "--out", str(out), "--seeds", "2"] + TINY) == 2
    assert "different settings (seeds)" in capsys.readouterr().err


def test_step_by_step_commands(tmp_path, capsys):
    ck, sc, keep, res = (str(tmp_path / n) for n in ("ck.pt", "s.npy", "keep.npy", "res.csv"))
    data = ["--dataset", "digits", "--train-limit", "200"]
    assert cli.main(["train", *data, "--epochs", "2", "--checkpoints", "1,2", "--out", ck, "--quiet"]) == 0
    assert cli.main(["score", *data, "--checkpoints-file", ck, "--out", sc, "--quiet"]) == 0
    meta = json.loads(open(sc + ".json").read())
    assert [c["epoch"] for c in meta["checkpoints"]] == [1, 2] and meta["checkpoints_file"] == ck
    assert cli.main(["select", *data, "--scores", sc, "--ratio", "0.7", "--out", keep, "--quiet"]) == 0
    assert len(np.load(keep)) == 60
    assert cli.main(["evaluate", *data, "--indices", keep, "--epochs", "1", "--out", res, "--quiet"]) == 0
    assert "test accuracy" in capsys.readouterr().out
    with open(res) as f:
        assert next(csv.DictReader(f))["n_kept"] == "60"

    # Nothing is overwritten without --force.
    assert cli.main(["select", *data, "--scores", sc, "--ratio", "0.5", "--out", keep, "--quiet"]) == 2
    assert "already exists; pass --force" in capsys.readouterr().err
    assert len(np.load(keep)) == 60
    assert cli.main(["select", *data, "--scores", sc, "--ratio", "0.5", "--out", keep, "--quiet", "--force"]) == 0
    assert len(np.load(keep)) == 100

    # Scores made on clean labels are refused for the noisy-label dataset.
    assert cli.main(["select", *data, "--label-noise", "0.2", "--scores", sc, "--ratio", "0.5",
                     "--out", str(tmp_path / "k2.npy"), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "made for a different dataset" in err and "labels differ" in err
    assert not os.path.exists(tmp_path / "k2.npy")


def test_score_with_inline_surrogate_and_partitions(tmp_path):
    out = str(tmp_path / "s.npy")
    assert cli.main(["score", "--dataset", "digits", "--train-limit", "240", "--epochs", "2", "--checkpoints",
                     "even:2", "--partitions", "2", "--params", "last_layer", "--out", out, "--quiet"]) == 0
    s = np.load(out)
    meta = json.loads(open(out + ".json").read())
    assert s.shape == (240,) and np.isfinite(s).all()
    assert meta["partitions"] == 2 and len(meta["checkpoints"]) == 4 and meta["options"] == {"params": "last_layer"}


def test_errors_are_one_clear_line(capsys):
    assert cli.main(["score", "--method", "nope", "--out", "x.npy", "--quiet"]) == 2
    assert "unknown method 'nope'; valid methods: moso" in capsys.readouterr().err
    assert cli.main(["demo", "--checkpoints", "every:0", "--quiet"]) == 2
    assert "--checkpoints 'every:0'" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        cli.main(["demo", "--ratios", "0.5,1.2"])


def test_installed_entry_point_help():
    out = subprocess.run([sys.executable, "-m", "dataprune", "score", "--help"], capture_output=True, text=True,
                         check=True).stdout
    assert "examples:" in out and "--checkpoints-file" in out


def test_bench_smoke_with_policy_suffix_and_resume(tmp_path, capsys):
    out = tmp_path / "bench"
    args = ["bench", "--dataset", "digits", "--train-limit", "200", "--methods", "moso,el2n,aum+ccs",
            "--policy-set", "ccs.beta=0.05", "--epochs", "2", "--checkpoints", "1,2", "--seeds", "1",
            "--ratios", "0.5", "--out", str(out), "--quiet"]
    assert cli.main(args) == 0
    with open(out / "results.csv") as f:
        rows = list(csv.DictReader(f))
    assert {"score_seconds", "train_seconds", "policy"} <= set(rows[0])
    by = {r["method"]: r for r in rows}
    assert set(by) == {"full", "moso", "el2n", "aum+ccs"}
    assert by["aum+ccs"]["policy"] == "ccs" and by["el2n"]["policy"] == "class_balanced"
    meta = json.loads((out / "indices" / "aum+ccs-r0.5-seed0.npy.json").read_text())
    assert meta["policy_options"] == {"beta": 0.05}
    assert "± " in (out / "results.md").read_text()
    capsys.readouterr()
    assert cli.main(args) == 0                      # resumes: nothing left to do
    assert cli.main(["bench", "--preset", "nope", "--quiet"]) == 2
    assert "unknown preset 'nope'; valid presets: mnist5k-cpu" in capsys.readouterr().err
    assert cli.main(["bench", "--dataset", "digits", "--methods", "moso+best", "--quiet"]) == 2
    assert "unknown policy 'best'" in capsys.readouterr().err


def test_classwise_scores_carry_evidence_for_the_auto_policy(tmp_path, capsys):
    data = ["--dataset", "digits", "--train-limit", "200"]
    sc, keep = str(tmp_path / "s.npy"), str(tmp_path / "k.npy")
    assert cli.main(["score", *data, "--method", "moso_class", "--epochs", "2", "--checkpoints", "1,2",
                     "--out", sc, "--quiet"]) == 0
    meta = json.loads(open(sc + ".json").read())
    assert meta["aux"]["arrays"] == ["disagreement", "gradnorm", "probs"] and os.path.exists(str(tmp_path / "s.aux.npz"))
    assert cli.main(["select", *data, "--scores", sc, "--ratio", "0.5", "--policy", "auto", "--out", keep,
                     "--quiet"]) == 0
    assert len(np.load(keep)) == 100
    kmeta = json.loads(open(keep + ".json").read())
    assert kmeta["sampling"] == "top" and 0 <= kmeta["cutoff"] == kmeta["estimated_noise"] < 0.45
    assert cli.main(["select", *data, "--scores", sc, "--ratio", "0.9", "--policy", "auto", "--out",
                     str(tmp_path / "k9.npy"), "--quiet"]) == 0
    assert json.loads(open(str(tmp_path / "k9.npy.json")).read())["sampling"] == "stratified"
    # scores without evidence are refused for auto, with the reason
    plain = str(tmp_path / "m.npy")
    assert cli.main(["score", *data, "--method", "moso", "--epochs", "2", "--checkpoints", "1,2",
                     "--out", plain, "--quiet"]) == 0
    capsys.readouterr()
    assert cli.main(["select", *data, "--scores", plain, "--ratio", "0.5", "--policy", "auto",
                     "--out", str(tmp_path / "k2.npy"), "--quiet"]) == 2
    assert "needs the per-sample evidence" in capsys.readouterr().err
