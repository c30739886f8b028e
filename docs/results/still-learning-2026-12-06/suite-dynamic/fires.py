"""Which of the suite's dynamic runs the still-learning test changes: the judgment of each setting x seed on its
training labels only (phase 1 of benchmarks/fit_dynamic_credibility.py with the suite's seeds 0-2, recipe and 20%
validation split; judged-*.jsonl), read with the test and with the statistics it adds to.

    python fires.py
"""

import json
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "..", "..", "..", "src"))
import dataprune.dynamic as dyn  # noqa: E402


def main():
    for family in ("mnist5k", "digits"):
        rows = [json.loads(line) for line in open(os.path.join(HERE, f"judged-{family}.jsonl"))]
        for r in sorted(rows, key=lambda r: (r["arch"], r["setting"], r["seed"])):
            m = r["moved"]
            credible_without = r["mean_maxprob"] >= dyn.CREDIBLE_CONFIDENCE and r["spread"] >= 0.5
            if credible_without and m is not None and dyn.still_learning(m):
                print(f"{family} {r['arch']} {r['setting']} seed {r['seed']}: fires (rise "
                      f"{m['accuracy_after'] - m['accuracy_before']:+.3f}, flags resolved {m['flags_resolved']} "
                      f"against {m['unsure_resolved']}, flagged {r['flagged']:.3f} of the clean labels)")


if __name__ == "__main__":
    main()
