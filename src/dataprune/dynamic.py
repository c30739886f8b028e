"""Pruning while training: each epoch reads only part of the data, chosen from what the run has seen so far.

A user who trains once pays for static pruning before saving anything; dynamic pruning saves inside that one
run. :class:`DynamicPruner` fits any PyTorch loop: it hands out a dataset whose items carry their index, a
sampler that yields the epoch's kept indices, and :meth:`DynamicPruner.update` that records the batch's
per-sample losses (and, for ``"dynamic"``, the classifier head's MoSo terms) and returns the weighted loss
to back-propagate::

    pruner = dp.DynamicPruner(train_set, model=model, epochs=E, ratio=0.5, method="dynamic", optimizer=opt)
    loader = DataLoader(pruner.dataset, batch_sampler=pruner.batch_sampler(B), num_workers=4)
    for epoch in range(E):
        pruner.set_epoch(epoch)
        for idx, x, y in loader:
            logits = model(x)
            loss = pruner.update(idx, F.cross_entropy(logits, y, reduction="none"), logits=logits, targets=y)
            opt.zero_grad(); loss.backward(); opt.step()
    pruner.end_epoch()                               # the last epoch's records into the scores

(``sampler=pruner.sampler, batch_size=B`` works too; ``batch_sampler`` folds a final batch too small for
BatchNorm into the previous one: a pruned epoch's size changes every epoch.) A learning-rate scheduler stepped per
batch and built for the full data's steps goes through :meth:`DynamicPruner.stretch`; a long run saves and resumes
the pruner with :meth:`DynamicPruner.state_dict` / :meth:`DynamicPruner.load_state_dict`. ``targets`` may be target
distributions (mixup, cutmix): see :meth:`DynamicPruner.update`. The kept set of an epoch is drawn
once, in :meth:`set_epoch`, from a generator seeded by ``(seed, epoch)``; iterating the sampler again gives the
same list (the official InfoBatch re-prunes in ``__iter__``, which
with current PyTorch's ``BatchSampler`` never ends an epoch). Under ``torch.distributed`` every rank draws
the same set from the same records (summed over ranks at :meth:`set_epoch`) and reads its own shard.

Methods
-------
``infobatch``
    InfoBatch (Qin et al., ICLR 2024) as published: a sample's score is its latest loss; each pruned epoch
    keeps a random share ``1 - ratio`` of the samples below the mean score and weights them
    ``1 / (1 - ratio)``; the last ``1 - delta`` of the epochs (delta 0.875) read the full data. Note that
    ``ratio`` is InfoBatch's ``r``: a share of the *below-mean* samples, not of the data set, so the share
    of passes saved is lower than ``ratio`` (about ``ratio x`` the below-mean share ``x delta``). Two
    defects of the official code are not carried over: weights are set afresh every epoch (the official
    code never resets them when ``epochs x delta`` is not an integer), and the sampler does not re-prune
    when iterated twice.
``dynamic``
    The project's own. A sample's score is a running average of its class-wise MoSo term over the
    classifier head, computed from the training step itself (the head's inputs and softmax - onehot, the
    terms of :mod:`dataprune.methods.fused`): how much its gradient agrees with its class's mean gradient.
    Each pruned epoch skips a share ``ratio`` of the data: every class keeps its water-filled share (equal
    counts where class sizes allow, so small classes are read whole) and skips the rest at random from its
    own lowest-scored ``2 x`` that many, weight 1 (:data:`CLASS_QUOTAS`, :data:`WEIGHTS`), from the end of the
    evidence window on. Noise-aware: after the evidence window (:data:`EVIDENCE_WINDOW` of the
    schedule, read on the full data), samples whose label the run's own
    predictions contradict (:func:`dataprune.select.confident_noise` on the window's mean probabilities)
    are set aside for the rest of the run, unless the run has collapsed onto a few classes
    (:func:`dataprune.evidence.spread`), is unsure of its predictions (:data:`CREDIBLE_CONFIDENCE`), or is still
    learning in the window (its accuracy rising fast and its flags learnt as fast as its other mistakes,
    :data:`STILL_LEARNING_RATE`): then nothing is set aside and ``evidence_decision["why"]`` says so. How many
    labels it contradicts is no test: under 40% symmetric noise a good run contradicts nearly half. It prunes to
    the last epoch (``delta`` :data:`DYNAMIC_DELTA` = 1, fitted on validation splits; InfoBatch's annealing,
    0.875, gave no better accuracy for 5-7 points less of the passes skipped).
``random_dynamic``
    The floor: each pruned epoch keeps a uniformly random share ``1 - ratio``, weight 1; InfoBatch's annealing.

``saved_fraction`` is the share of per-sample passes skipped so far (epochs begun); ``scores`` (N,) float64,
higher = keep, gives a static subset for the next runs via ``dp.select(pruner.scores, ratio, ...)``.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch.utils.data import Dataset, Sampler

from . import distributed as dist
from .data import get_targets
from .data.views import as_pairs
from .quotas import waterfill_quotas
from .train import _batches
from .utils import logits_of, row_blocks

METHODS = ("infobatch", "dynamic", "random_dynamic")

# One line each for `dataprune list`.
SUMMARIES = {
    "infobatch": "InfoBatch: skip a random share r of the below-mean-loss samples, up-weight the rest of them "
                 "(Qin et al. 2024)",
    "dynamic": "ours: running class-wise MoSo head terms from the training step; contradicted labels set aside; "
               "class quotas",
    "random_dynamic": "a uniformly random share r skipped each pruned epoch (the floor)",
}
# InfoBatch's annealing: the last 1 - DELTA of the epochs read the full data (the paper's value); also
# random_dynamic's.
DELTA = 0.875
# dynamic's: it prunes to the last epoch. Fitted with benchmarks/fit_dynamic_schedule.py on validation splits of
# mnist5k (clean, 20% symmetric, long tail 10:1 and 50:1 x CNN and MLP, tuning seeds 10-12, ratios 0.5 and 0.7,
# balanced validation accuracy; docs/results/fit-dynamic-schedule-2026-12-02): against InfoBatch's 0.875, delta
# 1.0 scored +0.35 on the mean of the 16 cells (behind by more than 0.5 in 1, mnist5k CNN 50:1 at 0.5: -0.71;
# clean -0.21..+0.04) and skipped 5-7 points more of the passes (at 0.5: 0.35-0.41 instead of 0.30-0.36).
DYNAMIC_DELTA = 1.0
# dynamic: the label evidence is the mean of the training pass's probabilities over the epochs from
# EVIDENCE_WINDOW[0] to EVIDENCE_WINDOW[1] of the schedule, judged by EVIDENCE_RULE; nothing is set aside
# when the run has collapsed onto few classes (its predictions over the window spread over fewer than
# evidence.COLLAPSED_SPREAD of the classes its labels spread over: the guard of evidence.judge). Chosen on
# training labels only (mnist5k, 2,000 samples, 10 epochs, noise seed 1): with 20% symmetric noise, windows
# 0-30% / 10-40% / 30-50% and the rules adaptive / confident / argmax gave precision 0.67-0.96 at recall
# 0.68-0.98; "confident" over 10-30% gave 0.87 precision, 0.69 recall, and flagged 0.6% of clean labels
# (10-40%: 0.94 / 0.69 / 0.3%, but the epochs of the window read the full data: it would save less).
# Read while pruning, the same window flagged 10% of clean labels and 34% at 20% noise (precision 0.47):
# "dynamic" prunes only after the window.
EVIDENCE_WINDOW = (0.1, 0.3)
EVIDENCE_RULE = "confident"
# dynamic: the evidence is credible only when the run is sure of its predictions by the end of the window: the
# mean over the samples of the window's largest class probability must reach CREDIBLE_CONFIDENCE (and the
# predictions must not have collapsed, evidence.COLLAPSED_SPREAD). A run that has learnt the task only partly
# flags clean labels: its confident-learning thresholds are its own (low) per-class confidences, so "confidently
# another class" then means little. Fitted with benchmarks/fit_dynamic_credibility.py on validation splits of
# mnist5k (clean, 20%/40% symmetric, 20% pair, long tail 10:1 with and without 20% noise x CNN and MLP x lr 0.05
# (the suite's recipe), 0.005 and 0.002 (models that learn less by the window's end) x tuning seeds 10-11, 72
# cells; balanced accuracy on the validation samples with clean labels; docs/results/fit-dynamic-credibility-
# 2026-12-04): setting nothing aside below 0.36 gains +0.48 points on the mean of the 72 cells, loses 0.25 in
# the worst, and turns no suite-recipe noisy cell off on the tuning seeds (the lowest, CNN 40% symmetric, reads
# 0.38-0.39; on the suite's seeds 0.31-0.38, where setting aside was neutral on validation: -0.9/+1.1). The
# other statistics tried (share explained as in evidence.judge, share decided, mean top-two margin, median
# log ratio) gave +0.48 to +0.50 at best: none separates a weak model from a good one under heavy noise
# better. Checked on the user's path (digits PNGs, benchmarks/dynamic_user_path.py --weak): a weak model reads
# 0.34-0.35 and loses 1.6 points by setting aside (precision 0.59); the same recipe on good images 0.47-0.49.
CREDIBLE_CONFIDENCE = 0.36
# dynamic: the running score is an exponential average over the epochs a sample was seen in.
SCORE_DECAY = 0.5
# dynamic: which samples an epoch skips, and how the kept ones are weighted. CLASS_QUOTAS "equal": each class
# keeps its water-filled share of the epoch (equal counts where class sizes allow, small classes whole) and
# skips from its own lowest-scored (2 x its skip count); "none": from the lowest-scored of the whole data.
# WEIGHTS for a kept candidate (kept with probability p): "unbiased" 1 / p (the epoch's summed gradient
# unchanged in expectation, so each of its fewer steps is larger: x10 at ratio 0.9, where every sample is a
# candidate); "normalized" the same relative weights scaled to mean 1 over the kept set; "none" 1.
# Chosen on validation splits (mnist5k MLP, 3,200 training / 800 validation samples, 10 epochs, 3 seeds,
# ratios 0.3-0.9, balanced validation accuracy; no test set read):
# - "unbiased" diverged to NaN at ratio 0.7 (clean); at 0.3 and 0.5, where both ran, "normalized" was +0.15
#   (clean / sym20 / pair20 / long tail 10:1; 5 of 8 cells ahead). The defect showed in the suite first:
#   "unbiased" at ratio 0.9 ended at chance in 2 of 3 digits-CNN seeds.
# - Against "none" + "normalized" over clean / sym20 / pair20 / lt10 / lt50 (20 cells): "equal" + "none"
#   +0.60 on average (clean -0.04, sym20 -0.00, pair20 +0.02, lt10 +0.32, lt50 +2.68; lowest cell -1.08),
#   "equal" + "normalized" +0.21 (lowest -3.57), "none" + "none" +0.08.
CLASS_QUOTAS = "equal"
WEIGHTS = "none"
# dynamic: a class skips its share at random from its lowest-scored CANDIDATE_FACTOR x that many (all of the class
# once that reaches its size: at ratio 0.5 and above, a uniformly random share of the class). Measured on validation
# splits of mnist5k (benchmarks/fit_dynamic_schedule.py, clean / sym20 / lt10 / lt50 x CNN and MLP, tuning seeds
# 10-12, ratios 0.5 and 0.7; docs/results/fit-dynamic-candidates-2026-12-06): 1.25 +0.09, 1.5 +0.02, 3 +0.18 over 16
# cells, each behind by more than 0.5 in 2-4 of them: within the seed noise; 2 stays.
CANDIDATE_FACTOR = 2.0
# dynamic: which head term ranks the samples: "alignment" (class-wise MoSo) or "gradnorm".
RANK_BY = "alignment"
# dynamic: a class whose share of flagged labels exceeds CLASS_FLAG_FACTOR x the share flagged over all classes
# keeps its labels (None: no such guard). Label noise flags the classes evenly (mnist5k CNN, 10 epochs, r 0.3:
# the largest class share / the median 1.1-1.4 under 20-40% symmetric and pair-flip noise); a class the run
# has not learnt yet by the evidence window, the rare classes of a long tail, is flagged unevenly (3.7 at
# 10:1, 5.7 at 50:1, where up to 83% of the rarest class's clean labels were set aside).
# Fitted with benchmarks/fit_dynamic.py on validation splits of mnist5k (clean, sym20, pair20, pair40, lt10,
# lt50 x CNN and MLP, tuning seeds 10-12, ratios 0.3/0.5/0.7, balanced validation accuracy, no test read;
# docs/results/fit-dynamic-2026-12-02): mean over the 12 settings without the guard 77.84, k = 1.5 78.62,
# 2 78.44, 3 78.32, 5 78.40 (CNN lt50 73.2 -> 79.8 at k = 2, lt10 93.6 -> 94.7; MLP lt10/lt50 -0.25/-0.49;
# under noise no k in 1.5-5 fired; the same ranking after the tail-folding fix). 2 rather than 1.5: under
# noise the largest class share reached 1.3x the overall share in these cells, a margin of 15% at 1.5 against
# trusting a noisy class, 50% at 2.
CLASS_FLAG_FACTOR = 2.0
# dynamic: a class whose mean probability over the samples labelled with it (confident learning's threshold for
# it) is below CLASS_UNLEARNT_FACTOR x the largest class's keeps its labels too (None: no such guard): the run
# has not learnt to recognise it, so its clean and wrong labels look alike. The rate guard above misses it under
# imbalance plus noise: with 10:1 and 20% symmetric noise the run flags ~35% overall, the rarest classes' labels
# are half wrong, and half of their clean samples were flagged with them (mnist5k CNN: 14 of 28 and 14 of 27
# kept; the set-aside cost 2.9 and 9.0 points against setting nothing aside). Fitted with
# benchmarks/fit_dynamic_credibility.py --unlearnt on validation splits of mnist5k (clean, sym20, sym40, pair20,
# pair40, lt10, lt50, lt10 + sym20 x CNN and MLP x tuning seeds 10-11, ratio 0.5, balanced accuracy on the
# validation samples with clean labels; docs/results/fit-dynamic-credibility-2026-12-04): against no guard, 0.2
# gave +0.33 on the mean of the 32 suite-recipe cells (lr 0.05; lowest -0.59, changes in the long-tail cells
# only: lt10 + sym20 CNN +1.9 / +3.9, lt50 CNN +5.5 / -0.6) and +0.13 on the 24 cells of a slower recipe
# (lr 0.005; none lower); 0.35 +0.21 (lowest -1.61). Confident learning's flags that are also argmax
# disagreements (select rule "confident_argmax") instead: +0.13 (lowest -1.27); with 0.35, +0.36 over 24 cells
# (lowest -0.71; lt50 / pair40 and the slower recipe not run).
CLASS_UNLEARNT_FACTOR = 0.2
# dynamic: a run still learning in the window is not credible either (nothing set aside): over the samples both of
# the window's last two epochs read, its training-pass accuracy rose by at least STILL_LEARNING_RISE, and of the
# samples it got wrong in the earlier epoch, those confident learning flagged came to be predicted as labelled at
# STILL_LEARNING_RATE or more times the rate of the others (its unsure mistakes), on at least evidence.FLAGS_MIN
# flags: its flags behave like samples it has not learnt yet, not like wrong labels (which a run comes to predict
# as labelled only by memorising them, slowly this early). The static judge's test (evidence.flags_resolved), read
# here on the training pass instead of held-out samples: there a run memorises wrong labels as it goes, so the rate
# is higher than the static judge's (FLAGS_LEARNT_RATE 0.5) and the rise must be large. Checked with
# benchmarks/fit_dynamic_credibility.py on validation splits of mnist5k, balanced accuracy on the clean-label
# validation samples, no test set read (docs/results/still-learning-2026-12-06): over the 72 cells of the
# credibility grid (the rule fires in 9: clean and long-tail cells, and lt10 + sym20 CNN, whose flags were half
# clean) +0.10 per cell against setting aside, lowest -1.04; out of sample, a recipe with 4x fewer steps per epoch
# (batch 128, 24 cells, fires in 5, none noisy) +0.03, lowest -0.78; a 40-epoch recipe (24 cells) fires in none:
# there the MLP under 40% noise memorises its flags at 0.76-0.89 of the unsure rate, but its accuracy rises by
# 0.02-0.035 an epoch, and under 20% noise a 10-epoch CNN's rise reached 0.12 with flags at 0.49-0.65 of the
# unsure rate: each condition alone would have kept wrong labels. In accuracy the test is neutral; what it fixes is
# a still-learning run setting aside clean labels as wrong (the user's path: a folder of clean digit PNGs, an MLP
# at lr 0.05 for 8 epochs, 17-30% of the data set aside).
STILL_LEARNING_RISE = 0.1
STILL_LEARNING_RATE = 0.8


def still_learning(moved: dict) -> bool:
    """Whether a run's window reads as still learning (:data:`STILL_LEARNING_RISE`, :data:`STILL_LEARNING_RATE`)
    from :meth:`DynamicPruner._still_learning`'s figures."""
    from .evidence import FLAGS_MIN

    if moved["flagged"] < FLAGS_MIN or not moved["unsure_resolved"]:
        return False
    return moved["accuracy_after"] - moved["accuracy_before"] >= STILL_LEARNING_RISE and \
        moved["flags_resolved"] >= STILL_LEARNING_RATE * moved["unsure_resolved"]


class IndexedDataset(Dataset):
    """Items ``(index, input, label)`` of ``dataset`` (dict items: keys detected or given, as everywhere in
    dataprune); a dataset with ``__getitems__`` (Hugging Face) is read a batch at a time."""

    def __init__(self, dataset, *, input_key=None, label_key=None):
        self.base = as_pairs(dataset, input_key=input_key, label_key=label_key)
        if getattr(self.base, "targets", None) is not None:
            self.targets = self.base.targets

    def __len__(self):
        return len(self.base)

    def __getitem__(self, i):
        x, y = self.base[i]
        return int(i), x, y

    def __getitems__(self, indices):
        if hasattr(self.base, "__getitems__"):
            items = self.base.__getitems__(list(indices))
        else:
            items = [self.base[i] for i in indices]
        return [(int(i), x, y) for i, (x, y) in zip(indices, items, strict=True)]


class EpochBatchSampler(Sampler):
    """:meth:`DynamicPruner.batch_sampler`: the epoch's kept indices (this rank's shard) in batches, the
    same batches however often it is iterated."""

    def __init__(self, pruner: DynamicPruner, batch_size: int):
        if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
            raise ValueError(f"batch_size must be an integer >= 1, got {batch_size!r}")
        self.pruner, self.batch_size = pruner, int(batch_size)

    def __iter__(self):
        return iter([b.tolist() for b in _batches(self.pruner.shard(), self.batch_size)])

    def __len__(self):
        return len(_batches(self.pruner.shard(), self.batch_size))


class EpochSampler(Sampler):
    """The epoch's kept indices (this rank's shard), as drawn by :meth:`DynamicPruner.set_epoch`: the
    same list however often it is iterated."""

    def __init__(self, pruner: DynamicPruner):
        self.pruner = pruner

    def __iter__(self):
        return iter(self.pruner.shard().tolist())

    def __len__(self):
        return len(self.pruner.shard())


class StretchedScheduler:
    """:meth:`DynamicPruner.stretch`: a learning-rate scheduler built for the full data's steps, stepped along a
    pruned run's progress through its epochs.

    A pruned epoch has fewer batches than a full one, so a scheduler stepped once per batch (``OneCycleLR``,
    a per-step cosine, warm-up) and built with ``total_steps = epochs x full-data batches`` would stop part way:
    the run ends at the high learning rates of its middle. Each :meth:`step` here advances the wrapped scheduler
    to ``round(total_steps x (epoch + j / n) / epochs)`` after the ``j``-th of the epoch's ``n`` batches (``n``
    is ``len(loader)``, read when the epoch begins), so every epoch covers the same part of the schedule as it
    would on the full data and the run ends at its last step, whatever was skipped. A pruned epoch therefore
    advances the schedule by more than one step per batch (the wrapped scheduler is stepped several times); an
    epoch stepped fewer times than it has batches (gradient accumulation) catches up when the next one begins.
    """

    def __init__(self, pruner: DynamicPruner, scheduler, loader, total_steps: int):
        if isinstance(total_steps, bool) or not isinstance(total_steps, (int, np.integer)) or total_steps < 1:
            raise ValueError(f"total_steps must be the integer number of steps the scheduler was built for "
                             f"(epochs x full-data batches per epoch), got {total_steps!r}")
        if not hasattr(scheduler, "step") or not hasattr(scheduler, "last_epoch"):
            raise TypeError(f"expected a torch.optim.lr_scheduler scheduler stepped per batch, got "
                            f"{type(scheduler).__name__}")
        try:
            len(loader)
        except TypeError:
            raise TypeError(f"loader must have a length (the DataLoader over pruner.dataset, or "
                            f"pruner.batch_sampler(B)); got {type(loader).__name__}") from None
        self.pruner, self.scheduler, self.loader, self.total_steps = pruner, scheduler, loader, int(total_steps)
        self._start = int(scheduler.last_epoch)            # the wrapped scheduler's steps before the run
        self._epoch, self._batch, self._batches = None, 0, 1

    def _target(self, epoch: float) -> int:
        return self._start + int(round(self.total_steps * min(epoch / self.pruner.epochs, 1.0)))

    def _advance(self, to: int) -> None:
        while self.scheduler.last_epoch < to:
            self.scheduler.step()

    def step(self) -> None:
        """Call once per optimizer step, as you would call the wrapped scheduler's ``step()``."""
        epoch = self.pruner.epoch
        if epoch != self._epoch:
            self._advance(self._target(epoch))              # catch up where the last epoch stepped fewer times
            self._epoch, self._batch, self._batches = epoch, 0, max(len(self.loader), 1)
        self._batch += 1
        if self._batch > self._batches:
            raise ValueError(f"the scheduler was stepped {self._batch} times in epoch {epoch}, which has "
                             f"{self._batches} batches (len(loader)): step it once per optimizer step, with the "
                             "loader that reads pruner.dataset")
        self._advance(self._target(epoch + self._batch / self._batches))

    def get_last_lr(self) -> list:
        return self.scheduler.get_last_lr()

    def state_dict(self) -> dict:
        return {"scheduler": self.scheduler.state_dict(), "start": self._start, "epoch": self._epoch,
                "batch": self._batch, "batches": self._batches, "total_steps": self.total_steps}

    def load_state_dict(self, state: dict) -> None:
        if state["total_steps"] != self.total_steps:
            raise ValueError(f"the saved scheduler stretched {state['total_steps']} steps, this one "
                             f"{self.total_steps}")
        self.scheduler.load_state_dict(state["scheduler"])
        self._start, self._epoch, self._batch, self._batches = \
            state["start"], state["epoch"], state["batch"], state["batches"]


class DynamicPruner:
    """Prune while training; see the module docstring for the loop and the methods.

    Parameters
    ----------
    train_set : map-style dataset of ``(input, label)`` (or dict) items.
    model : the model being trained; ``"dynamic"`` reads its classifier head's inputs (a forward hook).
    epochs : the run's number of epochs.
    ratio : ``infobatch``: the share of below-mean samples pruned (InfoBatch's r); ``dynamic`` and
        ``random_dynamic``: the share of the data skipped in each pruned epoch.
    optimizer : read for the learning rate that weights ``dynamic``'s terms (1 without one).
    delta : the share of the epochs that prune (the rest read all the trusted data); default
        :data:`DYNAMIC_DELTA` (1.0) for ``dynamic``, :data:`DELTA` (0.875, InfoBatch's) for the others.
    num_replicas, rank : for distributed training; default from ``torch.distributed``.
    cache_mb : ``dynamic`` keeps each sample's head input, softmax - onehot and probabilities (float32);
        above this many MiB they live in temporary files instead of memory.
    """

    def __init__(self, train_set, *, model=None, epochs: int, ratio: float = 0.5, method: str = "dynamic",
                 seed: int = 0, optimizer=None, delta: float | None = None, input_key=None, label_key=None,
                 num_replicas: int | None = None, rank: int | None = None, cache_mb: float | None = 4096):
        if method not in METHODS:
            raise ValueError(f"unknown dynamic pruning method {method!r}; valid: {', '.join(METHODS)}")
        if isinstance(epochs, bool) or not isinstance(epochs, (int, np.integer)) or epochs < 1:
            raise ValueError(f"epochs must be an integer >= 1, got {epochs!r}")
        if isinstance(ratio, bool) or not isinstance(ratio, (int, float)) or not 0.0 <= ratio < 1.0:
            raise ValueError(f"ratio must be in [0, 1), got {ratio!r}")
        if delta is None:
            delta = DYNAMIC_DELTA if method == "dynamic" else DELTA
        if isinstance(delta, bool) or not isinstance(delta, (int, float)) or not 0.0 <= delta <= 1.0:
            raise ValueError(f"delta must be a share of the epochs in [0, 1], got {delta!r}")
        if method == "dynamic" and model is None:
            raise ValueError("method 'dynamic' reads the classifier head's inputs: pass model=")
        self.dataset = IndexedDataset(train_set, input_key=input_key, label_key=label_key)
        self.sampler = EpochSampler(self)
        self.method, self.epochs, self.ratio, self.seed, self.delta = method, int(epochs), float(ratio), seed, delta
        self.optimizer = optimizer
        self.num_replicas = dist.world_size() if num_replicas is None else int(num_replicas)
        self.rank = dist.rank() if rank is None else int(rank)
        self.labels = np.asarray(get_targets(self.dataset.base), dtype=np.int64)
        n = len(self.labels)
        self.classes, self.groups = np.unique(self.labels, return_inverse=True)
        # Records of the epoch in progress (summed over ranks at set_epoch).
        self._step_losses: list = []                        # (indices, detached losses) of each step
        # What the scores are made of.
        self.latest_loss = np.full(n, np.nan)
        self._score = np.zeros(n)
        self._scored = np.zeros(n, bool)
        self._probs_sum = None
        self._probs_count = np.zeros(n)
        self.suspect = np.zeros(n, bool)
        self.evidence_decision: dict = {}
        self.epoch = None
        self.kept_counts: list[int] = []
        self.passes = 0
        self._order = np.arange(n)
        self._weights = np.ones(n, dtype=np.float32)
        self._unit_weights = True
        self._epoch_lr = 1.0
        self._open = False                                  # records of a drawn epoch not yet folded in
        self._before = None                                 # the window's last epoch but one: its mistakes
        self._mixed = None                                  # whether update() got mixed target distributions
        self.candidate_factor = CANDIDATE_FACTOR
        self.records = None
        if method == "dynamic":
            from .methods.fused import HeadRecords

            self.records = HeadRecords(n, cache_mb=cache_mb, what="method 'dynamic'")
            self.records.attach(model, self.dataset.base)
        self.set_epoch(0, _initial=True)

    # ------------------------------------------------------------------ the loop's side --
    def set_epoch(self, epoch: int, _initial: bool = False) -> None:
        """Close the records of the previous epoch and draw epoch ``epoch``'s kept set (0-based)."""
        if isinstance(epoch, bool) or not isinstance(epoch, (int, np.integer)) or not 0 <= epoch < self.epochs:
            raise ValueError(f"epoch must be in [0, {self.epochs}), got {epoch!r}")
        if not _initial:
            self.end_epoch()
        self._open = True
        self._epoch_passes = 0
        if self.epoch == epoch and not _initial:
            return                                           # the same epoch again: its draw stands
        self.epoch = int(epoch)
        rng = np.random.default_rng([self.seed, self.epoch])
        keep, weights = self._draw(rng)
        self._weights = np.zeros(len(self.labels), dtype=np.float32)
        self._weights[keep] = weights
        self._unit_weights = bool((weights == 1).all())
        self._order = keep[rng.permutation(len(keep))]
        if len(self.kept_counts) <= self.epoch:
            self.kept_counts.extend([0] * (self.epoch + 1 - len(self.kept_counts)))
        self.kept_counts[self.epoch] = len(keep)

    def end_epoch(self) -> None:
        """Fold the epoch's records into the scores (``set_epoch`` does it for the previous epoch; call it
        after the last epoch so that ``scores`` include it). Under ``torch.distributed`` every rank calls it."""
        if self._open:
            self._open = False
            self._close_epoch()

    @property
    def order(self) -> np.ndarray:
        """The epoch's kept indices, all ranks' (:meth:`shard` gives this rank's part)."""
        return self._order

    def shard(self) -> np.ndarray:
        """This rank's part of the epoch's kept indices (all of them in one process)."""
        if self.num_replicas == 1:
            return self._order
        per = math.ceil(len(self._order) / self.num_replicas)
        padded = np.concatenate([self._order, self._order[:per * self.num_replicas - len(self._order)]])
        return padded[self.rank::self.num_replicas]

    def update(self, idx, losses: torch.Tensor, *, logits: torch.Tensor | None = None,
               targets: torch.Tensor | None = None) -> torch.Tensor:
        """Record the batch and return the loss to back-propagate: the mean of ``losses`` (B,), each
        weighted by its sample's weight this epoch. ``logits`` may be the model's output itself (a Hugging Face
        ``ModelOutput``: its ``logits`` field is read). ``targets`` (``dynamic``): the batch's class indices (B,),
        or the target distributions it was trained on (B, C); the head terms use their gradient (softmax -
        target). Distributions that mix samples (mixup, cutmix: a row's largest weight not on its own label, or
        its weight differing between rows) mean no label is set aside: the predictions of mixed inputs are no
        evidence about one label. One-hot or smoothed distributions (the same weight on every row's label) are
        read as the labels. With mixup pass the mixed distributions, not one partner's class indices."""
        logits = None if logits is None else logits_of(logits)
        idx_np = idx.detach().cpu().numpy() if isinstance(idx, torch.Tensor) else np.asarray(idx)
        idx_np = idx_np.astype(np.int64, copy=False)
        if losses.dim() != 1 or len(losses) != len(idx_np):
            raise ValueError(f"losses must be one per sample, shape ({len(idx_np)},); got {tuple(losses.shape)} "
                             "(use reduction='none')")
        if not self._step_losses:
            self._epoch_lr = self._lr()                     # the learning rate this epoch's steps use
        # Kept as tensors and written to the arrays when the epoch closes: no copy to the host per step.
        self._step_losses.append((idx_np, losses.detach()))
        self.passes += len(idx_np)
        self._epoch_passes += len(idx_np)
        if self._epoch_passes > len(self._order):
            raise RuntimeError(f"update() got {self._epoch_passes} samples in epoch {self.epoch}, which keeps "
                               f"{len(self._order)}: call pruner.set_epoch(epoch) at the start of every epoch, and "
                               "read the epoch through pruner.sampler or pruner.batch_sampler(B)")
        if self.method == "dynamic":
            if logits is None or targets is None:
                raise ValueError("method 'dynamic' needs logits= and targets= in update()")
            if torch.is_tensor(targets) and targets.dim() == 2 and targets.shape == logits.shape:
                # Target distributions: mixed (mixup, cutmix) unless every row puts its largest weight on the
                # sample's own label, the same weight in every row (one-hot, or smoothed labels). Kept as a
                # device tensor: no synchronisation per step.
                own_label = torch.as_tensor(self.labels[idx_np], device=targets.device)
                own = targets.gather(1, own_label[:, None])
                mixed = (targets.argmax(1) != own_label).any() | (own.max() - own.min() > 1e-6)
                self._mixed = mixed if self._mixed is None else self._mixed | mixed
            if not self.records.record(idx_np, logits, targets):
                raise ValueError("method 'dynamic' reads the classifier head's (B, D) input from the forward pass "
                                 "of the logits passed to update(); call update() right after model(x)")
        if self._unit_weights:                              # (losses * 1).mean(), one autograd node fewer
            return losses.mean()
        w = torch.as_tensor(self._weights[idx_np], device=losses.device, dtype=losses.dtype)
        return (losses * w).mean()

    # ------------------------------------------------------------------ results --
    @property
    def saved_fraction(self) -> float:
        """Share of per-sample passes skipped over the epochs begun so far."""
        begun = len(self.kept_counts)
        return 1.0 - sum(self.kept_counts) / (len(self.labels) * begun) if begun else 0.0

    @property
    def scores(self) -> np.ndarray:
        """(N,) float64, higher = keep. ``dynamic``: the running MoSo head score, set-aside suspects at -inf;
        the others: the latest loss (InfoBatch's score; high loss = still informative). Samples never seen
        score lowest among the finite."""
        if self.method == "dynamic":
            s = np.where(self._scored, self._score, np.nan)
        else:
            s = self.latest_loss.copy()
        fill = np.nanmin(s) - 1.0 if np.isfinite(s).any() else 0.0
        s = np.where(np.isnan(s), fill, s)
        if self.method == "dynamic":
            s[self.suspect] = -np.inf
        return s.astype(np.float64)

    @property
    def evidence(self) -> dict:
        """``{"probs": (N, C)}``: the mean class probabilities of the evidence window (``dynamic``), for
        ``dp.select(pruner.scores, ratio, labels=..., policy="auto", **pruner.evidence)``."""
        if self._probs_sum is None:
            return {}
        count = np.maximum(self._probs_count, 1)[:, None]
        out = np.empty(self._probs_sum.shape, dtype=np.float32)
        for a, b in row_blocks(len(out)):
            out[a:b] = self._probs_sum[a:b] / count[a:b]
        return {"probs": out}

    def steps_in_epoch(self, batch_size: int, drop_last: bool = False) -> int:
        """Optimizer steps this epoch on this rank (for a scheduler stepped per batch), reading it with
        ``sampler`` and ``drop_last`` as given to the DataLoader; with :meth:`batch_sampler` it is
        ``len(pruner.batch_sampler(batch_size))`` (one fewer where a small tail is folded)."""
        n = len(self.shard())
        return n // batch_size if drop_last else math.ceil(n / batch_size)

    def batch_sampler(self, batch_size: int) -> EpochBatchSampler:
        """The epoch's kept samples (this rank's shard) in batches of ``batch_size``, a final batch too small
        for BatchNorm folded into the previous one (as :func:`dataprune.train` does): a pruned epoch's size
        changes every epoch, and a tail of 2-3 samples at batch 32 can wreck a trained model. For
        ``DataLoader(pruner.dataset, batch_sampler=pruner.batch_sampler(32))``."""
        return EpochBatchSampler(self, batch_size)

    def stretch(self, scheduler, loader, total_steps: int) -> StretchedScheduler:
        """A scheduler stepped per batch, built for the full data (``total_steps`` = epochs x full-data batches
        per epoch, as for an unpruned run), stepped along this run's progress instead: every epoch covers the
        part of the schedule it would on the full data, so the run ends at the schedule's end. Call the
        returned object's ``step()`` once per optimizer step::

            steps = E * math.ceil(len(train_set) / B)           # as for the unpruned run
            sched = pruner.stretch(OneCycleLR(opt, 0.1, total_steps=steps), loader, steps)

        ``loader``: anything whose ``len()`` is the current epoch's number of batches (the DataLoader over
        ``pruner.dataset``, or ``pruner.batch_sampler(B)``), read when each epoch begins. (``len(loader)`` before
        the loop is the full data's only for ``dynamic`` and ``infobatch``, which read all of epoch 0;
        ``random_dynamic`` prunes from epoch 0.) A scheduler stepped per epoch needs none of this."""
        return StretchedScheduler(self, scheduler, loader, total_steps)

    # What state_dict() holds: numpy arrays as tensors (torch.load(weights_only=True) reads them back).
    _STATE_ARRAYS = ("latest_loss", "_score", "_scored", "_probs_sum", "_probs_count", "suspect")

    def state_dict(self) -> dict:
        """The pruner's state at an epoch boundary, for resuming a long run: ``torch.save({"model": ...,
        "pruner": pruner.state_dict()}, path)`` after the epoch's last step, then build the pruner as before
        and ``load_state_dict`` before the next ``set_epoch``. The epoch in progress is closed first (its
        records folded into the scores), as :meth:`set_epoch` would."""
        self.end_epoch()
        state = {"version": 1, "method": self.method, "n": len(self.labels), "epochs": self.epochs,
                 "ratio": self.ratio, "seed": self.seed, "delta": self.delta, "epoch": self.epoch,
                 "kept_counts": list(self.kept_counts), "passes": int(self.passes),
                 "evidence_decision": self.evidence_decision, "candidate_factor": self.candidate_factor,
                 "mixed": None if self._mixed is None else bool(self._mixed),
                 "labels": torch.from_numpy(self.labels)}
        for name in self._STATE_ARRAYS:
            value = getattr(self, name)
            state[name] = None if value is None else torch.from_numpy(np.ascontiguousarray(value))
        state["before"] = None if self._before is None else \
            {k: torch.from_numpy(v) for k, v in self._before.items()}
        return state

    def load_state_dict(self, state: dict) -> None:
        """Resume from :meth:`state_dict`: the pruner must be built for the same data, method, epochs, ratio,
        seed and delta; the next ``set_epoch(e)`` draws epoch ``e`` as the uninterrupted run would."""
        mine = {"method": self.method, "n": len(self.labels), "epochs": self.epochs, "ratio": self.ratio,
                "seed": self.seed, "delta": self.delta}
        differ = {k: (state.get(k), v) for k, v in mine.items() if state.get(k) != v}
        if differ:
            raise ValueError("the saved pruner state was made for another run: " + "; ".join(
                f"{k} {saved!r} saved, {now!r} here" for k, (saved, now) in differ.items()))
        if not np.array_equal(state["labels"].numpy(), self.labels):
            raise ValueError("the saved pruner state was made for a dataset with other labels (same length)")
        for name in self._STATE_ARRAYS:
            value = state[name]
            setattr(self, name, None if value is None else value.numpy().copy())
        self._before = None if state["before"] is None else {k: v.numpy().copy() for k, v in state["before"].items()}
        self.evidence_decision = dict(state["evidence_decision"])
        self.kept_counts, self.passes = list(state["kept_counts"]), int(state["passes"])
        self.candidate_factor = state["candidate_factor"]
        self._mixed = None if state["mixed"] is None else torch.tensor(state["mixed"])
        # The next set_epoch draws afresh from the loaded state (None: no epoch of this process drawn yet).
        self.epoch, self._open, self._step_losses = None, False, []
        if self.records is not None:
            self.records.discard()                     # nothing recorded before the resume counts

    def close(self) -> None:
        """Remove the forward hook (``dynamic``)."""
        if self.records is not None:
            self.records.detach()

    # ------------------------------------------------------------------ internals --
    def _pruning(self) -> bool:
        return self.epoch < self.delta * self.epochs

    def _draw(self, rng) -> tuple[np.ndarray, np.ndarray]:
        n = len(self.labels)
        everyone = np.flatnonzero(~self.suspect)
        if not self._pruning() or self.ratio == 0:
            return everyone, np.ones(len(everyone), np.float32)
        if self.method == "random_dynamic":
            k = n - int(round(self.ratio * n))
            keep = np.sort(rng.choice(everyone, size=min(k, len(everyone)), replace=False))
            return keep, np.ones(len(keep), np.float32)
        if self.method == "infobatch":
            score = self.latest_loss
            if np.isnan(score).all():                          # nothing seen yet: the full data
                return everyone, np.ones(len(everyone), np.float32)
            score = np.where(np.isnan(score), np.inf, score)      # unseen samples are never "well learned"
            finite = np.isfinite(score)
            below = finite & (score < score[finite].mean())
            drop = below & (rng.random(n) < self.ratio)
            keep = np.flatnonzero(~drop)
            w = np.where(below[keep], 1.0 / (1.0 - self.ratio), 1.0).astype(np.float32)
            return keep, w
        # dynamic: the full data until the label evidence is judged (pruning during the window enriches the
        # epochs with the high-scored wrong labels, and the evidence read then flagged 10% of clean labels)
        if not self._scored.any() or self.epoch < self.evidence_epochs()[1]:
            return everyone, np.ones(len(everyone), np.float32)
        score = np.where(self._scored, self._score, np.inf)      # unseen samples are kept (no evidence yet)
        if CLASS_QUOTAS == "equal":
            # Each class keeps its water-filled share of the epoch (equal counts where sizes allow: small
            # classes whole) and skips the rest from its own lowest-scored 2 x skip.
            labels = self.labels[everyone]
            sizes = {int(c): int(k) for c, k in zip(*np.unique(labels, return_counts=True), strict=True)}
            quota = waterfill_quotas(sizes, len(everyone) - int(round(self.ratio * len(everyone))), alpha=0.0)
            groups = [(everyone[labels == c], sizes[c] - quota[c]) for c in sizes]
        else:
            groups = [(everyone, self.ratio * len(everyone))]
        mask = np.zeros(n, bool)
        mask[everyone] = True
        weight = np.ones(n)
        for members, skip in groups:
            if skip <= 0:
                continue
            order = members[np.argsort(score[members], kind="stable")]
            n_cand = int(round(min(len(members), self.candidate_factor * skip)))
            candidates = order[:n_cand]
            n_skip = min(int(round(skip)), n_cand)
            mask[rng.choice(candidates, size=n_skip, replace=False)] = False      # exactly the quota
            weight[candidates] = n_cand / max(n_cand - n_skip, 1)                 # 1 / keep probability
        keep = np.flatnonzero(mask)
        w = weight[keep] if WEIGHTS != "none" else np.ones(len(keep))
        if WEIGHTS == "normalized":
            w = w / w.mean()
        return keep, w.astype(np.float32)

    def _lr(self) -> float:
        if self.optimizer is None:
            return 1.0
        return float(self.optimizer.param_groups[0]["lr"])

    def _close_epoch(self):
        """Fold the finished epoch's records into the scores (summed over ranks first)."""
        shared = dist.is_distributed() and self.num_replicas > 1
        if not self._step_losses and not shared:
            return
        n = len(self.labels)
        local, loss = np.zeros(n, bool), np.zeros(n)
        if self._step_losses:
            rows = np.concatenate([b[0] for b in self._step_losses])
            loss[rows] = torch.cat([b[1].reshape(-1) for b in self._step_losses]).float().cpu().numpy()
            local[rows] = True
        self._step_losses = []
        if shared:
            total, count = dist.sum_arrays([np.where(local, loss, 0.0), local.astype(np.float64)])
            seen, loss = count > 0, total / np.maximum(count, 1)
        else:
            seen = local
        self.latest_loss[seen] = loss[seen]
        rec = self.records
        if rec is not None:
            rec.flush()
        if rec is not None and (rec.a is not None or shared):
            from .methods.fused import classwise_head_terms

            if rec.a is None:                            # this rank saw nothing this epoch
                rec.allocate(int(rec.head.weight.shape[1]), len(self.classes))
            contrib, sq = classwise_head_terms(rec.a, rec.delta, self.groups, len(self.classes), local,
                                               bias=rec.bias, reduce=dist.sum_arrays if shared else None)
            contrib = (contrib if RANK_BY == "alignment" else np.sqrt(sq)) * self._epoch_lr
            if shared:                                   # a sample two ranks read (a padded shard): their mean
                contrib, = dist.sum_arrays([contrib])
                contrib = contrib / np.maximum(count, 1)
            first = seen & ~self._scored
            again = seen & self._scored
            self._score[first] = contrib[first]
            self._score[again] = SCORE_DECAY * self._score[again] + (1 - SCORE_DECAY) * contrib[again]
            self._scored |= seen
            start, stop = self.evidence_epochs()
            if start <= self.epoch < stop:
                probs = self._epoch_probs(local, count if shared else None)
                if self._probs_sum is None:
                    self._probs_sum = np.zeros(probs.shape, dtype=np.float64)
                for a, b in row_blocks(n):
                    rows = a + np.flatnonzero(seen[a:b])
                    self._probs_sum[rows] += probs[rows]
                self._probs_count[seen] += 1
                if self.epoch == stop - 2:                # the window's last epoch but one: what it got wrong
                    self._before = self._mistakes(probs, seen)
                if self.epoch == stop - 1:
                    self._judge_labels(probs, seen)

    def _epoch_probs(self, local, count=None) -> np.ndarray:
        """(N, C) float32: the epoch's training-pass probabilities of the samples it read (0 elsewhere), every
        rank's rows where ``count`` (how many ranks read each sample) is given. In one process, where the epoch
        read every sample (the evidence window reads the full data), the records themselves: no copy."""
        p = self.records.p
        if count is None and local.all():
            return p
        out = np.zeros(p.shape, dtype=np.float32)
        for a, b in row_blocks(len(local)):
            block = np.where(local[a:b, None], p[a:b], 0.0)
            if count is not None:                        # blocks of rows: no (N, C) float64 all at once
                block, = dist.sum_arrays([block])
                block = block / np.maximum(count[a:b, None], 1)
            out[a:b] = block
        return out

    def evidence_epochs(self) -> tuple[int, int]:
        """``dynamic``: the 0-based epochs ``[start, stop)`` whose probabilities are the label evidence."""
        start = math.ceil(EVIDENCE_WINDOW[0] * self.epochs)
        stop = max(start + 1, math.ceil(EVIDENCE_WINDOW[1] * self.epochs))
        return min(start, self.epochs - 1), min(stop, self.epochs)

    def _mistakes(self, probs, seen) -> dict:
        """An epoch's training-pass mistakes over the samples it read (for the still-learning test):
        :func:`dataprune.evidence.mistakes` as masks over the whole set."""
        from .evidence import mistakes

        rows = np.flatnonzero(seen)
        flagged, unsure = np.zeros(len(self.labels), bool), np.zeros(len(self.labels), bool)
        flagged[rows], unsure[rows] = mistakes(probs if seen.all() else probs[seen], self.labels[seen])
        return {"seen": seen.copy(), "flagged": flagged, "unsure": unsure}

    def _still_learning(self, last, last_seen) -> dict | None:
        """How the window's last epoch fares on the mistakes of the epoch before it (``evidence.flags_resolved``
        read on the training pass): the accuracy rise over the samples both read, and the share of the flagged /
        of the other mistakes now predicted as labelled. None for a window of one epoch."""
        from .evidence import resolved

        before = self._before
        if before is None or last is None:
            return None
        both = before["seen"] & last_seen
        right = np.zeros(len(self.labels), bool)
        right[np.flatnonzero(last_seen)] = (last if last_seen.all() else last[last_seen]).argmax(1) == \
            self.labels[last_seen]
        flagged, unsure = before["flagged"] & both, before["unsure"] & both
        moved = {k: v if v is None or isinstance(v, int) else round(v, 4)
                 for k, v in resolved(flagged, unsure, right).items()}
        return {"accuracy_before": round(float(1.0 - (flagged | unsure)[both].mean()), 4),
                "accuracy_after": round(float(right[both].mean()), 4), "samples": int(both.sum()), **moved}

    def _judge_labels(self, last=None, last_seen=None):
        from .evidence import COLLAPSED_SPREAD, spread
        from .select import confident_noise

        seen = self._probs_count > 0
        if not seen.any():
            return
        probs = self.evidence["probs"]
        if not seen.all():
            probs = probs[seen]
        labels = self.labels[seen]
        info = confident_noise(probs, labels, EVIDENCE_RULE)
        suspect = info["suspect"].copy()
        share = float(suspect.mean())
        rates = info["rate"]                             # each label's share flagged
        trusted = [c for c, r in rates.items() if CLASS_FLAG_FACTOR is not None and r > CLASS_FLAG_FACTOR * share]
        if CLASS_UNLEARNT_FACTOR is not None:
            # each label's mean probability of itself (one pass over the rows, the classes' members in order)
            own_p = probs[np.arange(len(labels)), labels]
            order = np.argsort(labels, kind="stable")
            classes, starts = np.unique(labels[order], return_index=True)
            own = {int(c): float(part.mean()) for c, part in zip(classes, np.split(own_p[order], starts[1:]),
                                                                  strict=True)}
            top = max(own.values())
            trusted = sorted(set(trusted) | {c for c, t in own.items() if t < CLASS_UNLEARNT_FACTOR * top})
        suspect[np.isin(labels, trusted)] = False
        predicted = probs.argmax(1)
        spread_ = spread(predicted, labels)
        explained = float(((predicted == labels) | info["suspect"]).mean())
        confidence = float(probs.max(1).mean())
        moved = self._still_learning(last, last_seen)
        learning = moved is not None and still_learning(moved)
        soft = self._mixed is not None and bool(self._mixed)        # mixup / cutmix: inputs were mixed
        credible = bool(spread_ >= COLLAPSED_SPREAD and confidence >= CREDIBLE_CONFIDENCE and not learning
                        and not soft)
        start, stop = self.evidence_epochs()
        epochs = list(range(start + 1, stop + 1))
        self.evidence_decision = {"flagged_share": share, "spread": round(spread_, 4), "credible": credible,
                                  "confidence": round(confidence, 4), "explained": round(explained, 4),
                                  "rule": EVIDENCE_RULE, "class_flagged_share": rates,
                                  "classes_kept_whole": trusted,
                                  "set_aside_share": float(suspect.mean()) if credible else 0.0,
                                  "evidence_epochs": epochs}
        if moved is not None:
            self.evidence_decision["window_moved"] = moved
        if soft:
            self.evidence_decision["why"] = (
                f"the run trained on target distributions over epochs {epochs} (update() got (B, C) targets: mixup, "
                "cutmix or labels given as distributions): its predictions of mixed inputs say nothing about one "
                "sample's own label, so no label was set aside. The scores still rank the samples (their class-wise "
                "MoSo terms use the gradient of the targets given)")
        elif spread_ < COLLAPSED_SPREAD:
            self.evidence_decision["why"] = (
                f"the run's predictions over epochs {epochs} had collapsed onto few classes: they spread over "
                f"{spread_:.0%} of the classes the labels spread over, needs {COLLAPSED_SPREAD:.0%}; no label was "
                "set aside")
        elif confidence < CREDIBLE_CONFIDENCE:
            self.evidence_decision["why"] = (
                f"the run was not sure of its predictions over epochs {epochs}: mean top class probability "
                f"{confidence:.2f}, needs {CREDIBLE_CONFIDENCE:.2f}. It had not learnt the task well enough to tell "
                f"wrong labels from hard samples, so the {share:.1%} of labels it contradicted were kept; a model "
                "or recipe that learns faster (more steps per epoch), or a longer schedule, would judge them")
        elif learning:
            self.evidence_decision["why"] = (
                f"the run was still learning over epochs {epochs}: its training-pass accuracy rose from "
                f"{moved['accuracy_before']:.0%} at epoch {epochs[-2]} to {moved['accuracy_after']:.0%} at epoch "
                f"{epochs[-1]}, and of the {moved['flagged']} samples it flagged at epoch {epochs[-2]} it came to "
                f"predict {moved['flags_resolved']:.0%} as labelled, against {moved['unsure_resolved']:.0%} of the "
                f"ones it was unsure of: flags learnt that fast were samples it had not learnt yet, so the {share:.1%} "
                "of labels it contradicted were kept; a longer schedule, or a recipe that learns faster, would "
                "judge them")
        if credible:
            self.suspect[np.flatnonzero(seen)[suspect]] = True
