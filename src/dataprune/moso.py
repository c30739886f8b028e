"""``dataprune.moso``: the MoSo score (see :mod:`dataprune.methods.moso`)."""

from .methods.moso import FORMS, MoSoCallback, checkpoint_terms, combine, exact_terms, score

__all__ = ["score", "MoSoCallback", "FORMS", "checkpoint_terms", "combine", "exact_terms"]
