"""Bring the sidecars of kept-index files written before the noise estimate was recorded up to date.

Files selected with the first ``auto`` policy (dataprune 0.1) recorded its cutoff and sampling
but not the noise estimate behind the cutoff. That estimate is a function of the evidence
saved beside the scores (``disagreement``): the share of samples whose label the surrogate
contradicted at a majority of checkpoints. This script recomputes it from the saved evidence,
checks that it reproduces the recorded cutoff, and writes it into the sidecar (atomically),
with a note of what was regenerated. Nothing else changes; files already complete are left as
they are.

    python scripts/regenerate_sidecars.py docs/results
"""

from __future__ import annotations

import glob
import os
import sys

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "src"))

from dataprune import io  # noqa: E402


def first_auto_cutoff(rho: float, ratio: float) -> float:
    """The cutoff rule of dataprune 0.1's ``auto`` policy (for checking the regenerated estimate)."""
    s = min(1.0, max(0.0, (ratio - 0.7) / 0.2))
    return float(min(0.9 * ratio, rho + 0.1 * s))


def main(root: str) -> int:
    changed = 0
    for side in sorted(glob.glob(os.path.join(root, "**", "indices", "*.npy.json"), recursive=True)):
        meta = io.read_json(side)
        if meta.get("policy") != "auto" or "estimated_noise" in meta or "decisions" in meta:
            continue
        folder = os.path.dirname(os.path.dirname(side))
        scores = os.path.join(folder, "scores", f"{meta['method']}-seed{meta['seed']}.npy")
        _, smeta = io.load_array(scores)
        if not smeta.get("aux"):
            # dataprune 0.1 took a method without evidence (random+auto) to moso_class's evidence
            scores = os.path.join(folder, "scores", f"moso_class-seed{meta['seed']}.npy")
            _, smeta = io.load_array(scores)
        disagreement = io.load_aux(scores, smeta)["disagreement"]
        rho = float(np.mean(disagreement > 0.5))
        if abs(first_auto_cutoff(rho, meta["ratio"]) - meta["cutoff"]) > 1e-9:
            raise SystemExit(f"{side}: the saved evidence does not reproduce the recorded cutoff; left alone")
        meta["estimated_noise"] = rho
        meta["regenerated"] = {"fields": ["estimated_noise"], "by": "scripts/regenerate_sidecars.py",
                               "from": os.path.relpath(scores, folder), "environment": io.environment()}
        io.write_json(side, meta, overwrite=True)
        changed += 1
    print(f"updated {changed} sidecar(s) under {root}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1] if len(sys.argv) > 1 else "docs/results"))
