"""The prepared GPU check runs end to end on tiny sizes on the CPU (so it cannot rot before a GPU is lent)."""

import json
import os
import sys

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "benchmarks"))


@pytest.mark.slow
def test_gpu_check_runs_tiny_on_cpu(tmp_path):
    import gpu_check

    out = gpu_check.main(["--tiny", "--device", "cpu", "--out", str(tmp_path / "check.json")])
    saved = json.load(open(tmp_path / "check.json"))
    assert saved["n"] == 64 and saved["device"] == "cpu"
    # The batched scores are the batch-size-1 procedure's, and cheaper than it.
    assert out["agreement_max_rel"] < 1e-4
    assert out["speedup_all_vs_batch1"] > 1
    for key in ("train_peak_mb", "score_peak_mb", "epoch_seconds_fp32", "epoch_seconds_bf16", "full_run_seconds",
                "prune_default_cost_measured", "prune_budget_cost_measured"):
        assert out[key] is not None and out[key] > 0, key
    assert out["prune_budget_seconds"] < out["prune_default_seconds"]
    # the user's loop: the stretched schedule ends at its last step, the resumed run at the same weights
    assert out["stretched_last_step"] == out["stretched_total_steps"] and out["resume_max_abs_diff"] == 0
    assert 0 < out["dynamic_saved_fraction"] < 0.5 and out["available_memory_gib"] > 0


def test_the_digits_like_fitting_family_has_digits_shape_size_and_recipe(monkeypatch):
    """DATAPRUNE_FIT_FAMILY=digits-like: 8x8 counts, 45% of every class (1,440 / 360 after the validation split, as
    digits has 1,438 training images), a long tail as short as digits' own (144 -> 14), digits' 15-epoch recipe."""
    import importlib

    import numpy as np

    from dataprune.data import get_targets

    monkeypatch.setenv("DATAPRUNE_FIT_FAMILY", "digits-like")
    sys.modules.pop("fit_default", None)
    fit_default = importlib.import_module("fit_default")
    try:
        assert fit_default.EPOCHS == 15
        clean, tail = fit_default._split("clean"), fit_default._split("lt10")
        assert clean.input_shape == (1, 8, 8) and (len(clean.train), len(clean.val)) == (1440, 360)
        counts = np.bincount(get_targets(tail.train))
        assert counts[0] == 144 and counts[-1] == 14
        x, _ = clean.train[0]
        assert tuple(x.shape) == (1, 8, 8)
        monkeypatch.setenv("DATAPRUNE_FIT_FAMILY", "cifar")
        sys.modules.pop("fit_default", None)
        with pytest.raises(SystemExit, match="valid mnist5k, digits-like"):
            importlib.import_module("fit_default")
    finally:
        sys.modules.pop("fit_default", None)             # the next importer reads the environment afresh
