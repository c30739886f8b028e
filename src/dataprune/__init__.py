"""dataprune: find the training samples a PyTorch model can do without."""

from . import grads, methods, moso  # noqa: E402
from ._version import __version__
from .dynamic import DynamicPruner  # noqa: E402
from .methods import METHODS, RECOMMENDED, score  # noqa: E402
from .prune import PruneResult, prune  # noqa: E402
from .select import POLICIES, Selection, select, selection  # noqa: E402
from .train import TrainConfig, accuracy, train  # noqa: E402
from .trajectory import Checkpoint, choose_epochs, load_checkpoints, save_checkpoints  # noqa: E402

__all__ = ["__version__", "prune", "PruneResult", "score", "select", "selection", "Selection", "METHODS",
           "POLICIES", "RECOMMENDED", "moso", "grads", "methods", "train", "TrainConfig", "accuracy", "Checkpoint",
           "choose_epochs", "save_checkpoints", "load_checkpoints", "DynamicPruner"]
