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
