"""A user's image folder through the CLI: PNG files written here, flip+crop training augmentation,
worker processes, a 30-epoch recipe, killed while scoring and resumed to the same kept indices."""

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
from PIL import Image


def _write_folder(root, per_class=24, val_per_class=6, size=16, classes=4, seed=0):
    """Four classes of noisy blobs in different corners, as RGB PNG files."""
    rng = np.random.default_rng(seed)
    for split, count in (("train", per_class), ("val", val_per_class)):
        for c in range(classes):
            folder = os.path.join(root, split, f"class_{c}")
            os.makedirs(folder, exist_ok=True)
            for i in range(count):
                img = rng.integers(0, 60, (size, size, 3)).astype(np.uint8)
                r0, c0 = (c // 2) * (size // 2), (c % 2) * (size // 2)
                img[r0:r0 + size // 2, c0:c0 + size // 2] += 150
                Image.fromarray(img).save(os.path.join(folder, f"{i:03d}.png"))


def _env():
    env = dict(os.environ)
    env.pop("DATAPRUNE_QUIET", None)          # as a user runs it: progress on, here as log lines
    return env


def _args(root, out):
    return [sys.executable, "-m", "dataprune", "prune", "--dataset", "imagefolder", "--data-root", str(root),
            "--image-size", "16", "--epochs", "30", "--batch-size", "16", "--lr", "0.05", "--augment", "flip_crop",
            "--num-workers", "2", "--ratio", "0.5", "--out", str(out), "--no-report"]


@pytest.mark.slow
def test_image_folder_prune_killed_while_scoring_resumes_to_identical_kept_indices(tmp_path):
    root = tmp_path / "pets"
    _write_folder(root)
    ref = subprocess.run(_args(root, tmp_path / "ref"), capture_output=True, text=True, env=_env())
    assert ref.returncode == 0, ref.stderr
    # Off a terminal it still says what it is doing: a line per surrogate epoch.
    assert ref.stderr.count("[dataprune] surrogate: epoch ") == 27          # stops after its last checkpoint (27)
    reference = np.load(tmp_path / "ref" / "keep.npy")
    assert not (tmp_path / "ref" / "parts").exists()                      # removed once the result is saved
    result = json.load(open(tmp_path / "ref" / "result.json"))
    assert [c["epoch"] for c in result["checkpoints"]] == [3, 9, 15, 21, 27]

    out = tmp_path / "run"
    marker = out / "parts" / "recommended-part0" / "ckpt-0001.npz.json"   # two checkpoints scored
    proc = subprocess.Popen(_args(root, out), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=_env())
    t0 = time.time()
    while not marker.exists():
        if proc.poll() is not None or time.time() - t0 > 300:
            proc.kill()
            pytest.fail("the run ended before it was killed while scoring")
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (out / "keep.npy").exists()
    again = subprocess.run(_args(root, out), capture_output=True, text=True, env=_env())
    assert again.returncode == 0, again.stderr
    assert "resumed: reused 1 trained surrogate(s) and 2 scored checkpoint(s)" in again.stderr
    assert "[dataprune] surrogate: epoch" not in again.stderr                # not trained again
    assert np.array_equal(np.load(out / "keep.npy"), reference)
