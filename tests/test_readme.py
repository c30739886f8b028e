"""The README's examples are run as written, on small settings, so the README cannot drift from the code.

Each Python block is executed in order in one namespace (as a user pastes them into one session), twice in
a row in the same folder; each CLI line of the "Command line" block is run once. The only edits are the
listed size substitutions (fewer samples, fewer epochs, the CPU): every one must match the README text, so
changing an example means changing its substitution here too, and the placeholders the README leaves to the
user (``MyNet``, ``hf_train``, ...) are defined below as a user would define them.
"""

import os
import re
import shlex
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

README = (Path(__file__).parents[1] / "README.md").read_text()

# (README text, what the test runs instead): each must occur in the README.
PY_SMALL = [
    ('load_dataset("mnist5k", label_noise=0.2)', 'load_dataset("mnist5k", label_noise=0.2, train_limit=300)'),
    ("epochs=90", "epochs=2"),
    ('device="cuda"', 'device="cpu"'),
    ("num_workers=8", "num_workers=2"),
]
CLI_SMALL = ["--train-limit", "300", "--epochs", "2"]
CLI_SKIPPED = {
    # the whole robustness suite: 28 settings x 3 seeds (about an hour on 2 cores); its settings are checked
    # by `dataprune list` and test_presets.py (suite resolution, one grid per setting).
    "dataprune bench --suite robustness --jobs 2 --out runs/robustness",
}


def _blocks(lang):
    return re.findall(rf"```{lang}\n(.*?)```", README, flags=re.S)


def _python_code():
    code = "\n".join(_blocks("python"))
    for old, new in PY_SMALL:
        assert old in code, f"the README no longer contains {old!r}: update PY_SMALL"
        code = code.replace(old, new)
    return code


class MyNet(torch.nn.Module):
    """The README's stand-in for a user's own model: 28x28 grey images, ten classes."""

    def __init__(self):
        super().__init__()
        self.body = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(784, 32), torch.nn.ReLU())
        self.head = torch.nn.Linear(32, 10, bias=False)        # a bias-free head, as some users have

    def forward(self, x):
        return self.head(self.body(x))


class _DictSet(Dataset):
    def __init__(self, x, y):
        self.x, self.y = x, y

    def __len__(self):
        return len(self.y)

    def __getitem__(self, i):
        return {"pixels": self.x[i], "cls": int(self.y[i])}


class _Augmented(Dataset):
    """Random horizontal shifts in __getitem__, like a torchvision transform."""

    def __init__(self, x, y):
        self.x, self.y = x, y

    def __len__(self):
        return len(self.y)

    def __getitem__(self, i):
        shift = int(torch.randint(-2, 3, ()))
        return torch.roll(self.x[i], shift, dims=-1), int(self.y[i])


def _namespace():
    import datasets

    from dataprune.data import load_dataset

    tiny = load_dataset("mnist5k", label_noise=0.2, train_limit=300)     # the README's split, at the test's size
    x = torch.stack([tiny.train[i][0] for i in range(len(tiny.train))])
    y = np.asarray(tiny.train.targets)
    hf = datasets.Dataset.from_dict({"pixel_values": x.numpy(), "label": y.tolist()}).with_format("torch")
    return {"MyNet": MyNet, "hf_train": hf, "hf_dataset": hf, "my_dict_set": _DictSet(x, y),
            "train_with_aug": _Augmented(x, y), "train_without_aug": tiny.train, "train_set": tiny.train,
            "F": F}


@pytest.mark.slow
def test_the_python_examples_run_as_written_twice_in_a_row(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("DATAPRUNE_QUIET", "1")
    code = _python_code()
    saved = []
    for attempt in range(2):                       # a re-run must not trip over the first run's files
        ns = _namespace()
        exec(compile(code, f"README.md python blocks (run {attempt + 1})", "exec"), ns)
        assert os.path.isfile("runs/report/report.html")
        saved.append(np.load("runs/prune70/keep.npy"))
        assert len(saved[-1]) == 90 and np.all(np.diff(saved[-1]) > 0)          # ratio 0.7 of 300
        assert len(ns["keep"]) == 90 and len(ns["hf_subset"]) == 90
    assert np.array_equal(saved[0], saved[1])       # and the same run gives the same subset


def _cli_lines():
    (block,) = [b for b in _blocks("bash") if "dataprune list" in b]
    lines = []
    for raw in block.splitlines():
        line = raw.split("#", 1)[0].strip()
        if line and line not in CLI_SKIPPED:
            lines.extend(part.strip() for part in line.split("&&"))
    return lines


def _small(argv):
    """The README's command with the test's sizes appended (argparse: the last value of an option wins)."""
    if argv[0] in ("list", "report") or (argv[0] == "bench" and "--merge" in argv):
        return argv
    extra = list(CLI_SMALL)
    if "--budget" in argv or "@" in " ".join(argv) or argv[0] in ("score", "select"):   # budgets need 10 epochs
        extra = extra[:2]
    if argv[0] == "bench":
        extra += ["--ratios", "0.5", "--jobs", "1"]
        extra += [] if "--seeds" in argv else ["--seeds", "1"]             # "more seeds, then merge" keeps its own
        extra += [] if "--methods" in argv else ["--methods", "random,el2n"]
    if argv[0] == "evaluate":
        extra += ["--seeds", "1"]
    return argv + extra


@pytest.mark.slow
def test_every_cli_line_of_the_readme_runs(tmp_path, monkeypatch, capsys):
    from dataprune.cli import main

    monkeypatch.chdir(tmp_path)
    lines = _cli_lines()
    assert len(lines) >= 10, lines
    for line in lines:
        argv = shlex.split(line)
        assert argv[0] == "dataprune", line
        rc = main(_small(argv[1:]))
        out = capsys.readouterr()
        assert rc in (0, None), f"{line}\n{out.err}"
