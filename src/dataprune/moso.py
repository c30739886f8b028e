"""``dataprune.moso``: the MoSo score (see :mod:`dataprune.methods.moso`)."""

from .grads.terms import CheckpointTerms, checkpoint_terms
from .methods.moso import FORMS, MoSoCallback, combine, exact_terms, score

__all__ = ["score", "MoSoCallback", "FORMS", "checkpoint_terms", "CheckpointTerms", "combine", "exact_terms"]
