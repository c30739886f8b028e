"""The full plan's neighbour mix per validation run, and what each gate decides: the flip test
(evidence.judge_flips: dominant_flips of the probabilities >= NEIGHBOURS_FROM_FLIPS), the memorisation test
(evidence.judge_neighbour_memory: ratio >= NEIGHBOURS_UNMEMORISED_FROM), either (what ships, judge_neighbour_mix).
Reads the full plan's saved evidence (fit_budget.py evidence --budget full) and eval rows of candidates
``centre`` or ``nb=0`` (no mix) and ``nbt=0.5`` (the mix with the trusted round). The gates judge credible evidence
only; elsewhere every gate keeps the shipped plan.

    python docs/results/flip-gate-2026-12-06/flip_gate.py runs/fit-full/evidence runs/fit-full/eval.csv [more.csv]
"""

import collections
import csv
import json
import sys

import numpy as np

from dataprune.evidence import NEIGHBOURS_FROM_FLIPS, NEIGHBOURS_UNMEMORISED_FROM, dominant_flips, holdout_indices
from dataprune.select import confident_noise, neighbour_labels

ARMS = {"centre": "no", "nb=0": "no", "nbt=0.5": "mix"}


def accuracies(files):
    acc = collections.defaultdict(dict)
    for path in files:
        with open(path) as f:
            for r in csv.DictReader(f):
                arm = ARMS.get(r["candidate"])
                if arm:
                    key = (r["setting"], r["arch"], int(r["seed"]))
                    acc[key].setdefault(arm, {})[float(r["ratio"])] = 100 * float(r["val_bacc"])
    return acc


def memorisation_ratio(e, seed):
    """judge_neighbour_memory's ratio as the pipeline computes it (0 where the held-out share shows no noise)."""
    y = e["labels"]
    held = holdout_indices(y, 0.1, seed * 1000)
    trained = np.setdiff1d(np.arange(len(y)), held)
    trained = np.sort(np.random.default_rng([seed * 1000, 7]).choice(trained, len(held), replace=False))
    rows = np.concatenate([held, trained])
    shares = neighbour_labels(e["features"].astype(np.float32), y, rows=rows)
    flags = confident_noise(shares, y[rows], "confident")["suspect"]
    on_held, on_trained = flags[:len(held)].mean(), flags[len(held):].mean()
    return on_trained / on_held if on_held >= 0.1 else 0.0


def main(folder, files):
    acc = accuracies(files)
    runs, table = [], collections.defaultdict(lambda: collections.defaultdict(list))
    for (setting, arch, seed), arms in sorted(acc.items()):
        if "mix" not in arms or "no" not in arms or setting in ("clean", "lt10"):
            continue
        e = np.load(f"{folder}/{setting}-{arch}-seed{seed}.npz")
        report = json.loads(str(e["report"])) if "report" in e.files else {}
        # (older evidence files carry no report: a surrogate judged not credible acts on nothing, noise "none")
        credible = report.get("credible", "noise" not in json.loads(str(e["popts"]))) is True
        rate, ratio = dominant_flips(e["probs"], e["labels"]), memorisation_ratio(e, seed)
        gates = {"mix": True, "flips": credible and rate >= NEIGHBOURS_FROM_FLIPS,
                 "memorisation": credible and ratio >= NEIGHBOURS_UNMEMORISED_FROM}
        gates["either"] = gates["flips"] or gates["memorisation"]
        gains = {r: arms["mix"][r] - arms["no"][r] for r in sorted(arms["mix"])}
        runs.append((gains, gates))
        for r in gains:
            table[(setting, arch)]["no", r].append(arms["no"][r])
            for g, on in gates.items():
                table[(setting, arch)][g, r].append(arms["mix" if on else "no"][r])
        print(f"{setting}-{arch} seed {seed}: flip rate {rate:.3f}, memorisation ratio {ratio:.2f}, credible "
              f"{credible}; mix {' / '.join(f'{x:+.1f}' for x in gains.values())}; gates: "
              + ", ".join(g for g, on in gates.items() if on and g != "mix"))
    names = ("mix", "memorisation", "flips", "either")
    print("\n| setting | no mix | " + " | ".join(names) + " |\n" + "|---" * (len(names) + 2) + "|")
    for (setting, arch), cells in table.items():
        ratios = sorted({r for _, r in cells})
        base = [np.mean(cells["no", r]) for r in ratios]
        row = [" / ".join(f"{b:.1f}" for b in base)]
        for g in names:
            row.append(" / ".join(f"{np.mean(cells[g, r]) - b:+.1f}" for r, b in zip(ratios, base, strict=True)))
        print(f"| {setting}-{arch} | " + " | ".join(row) + " |")
    print()
    for g in names:
        per_run = [float(np.mean(list(gains.values()))) if gates[g] else 0.0 for gains, gates in runs]
        print(f"- {g}: {np.mean(per_run):+.2f} per run over {len(per_run)} runs, ahead by more than 0.5 in "
              f"{sum(x > 0.5 for x in per_run)}, behind in {sum(x < -0.5 for x in per_run)}, worst {min(per_run):+.2f}")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2:])
