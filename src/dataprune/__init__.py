"""dataprune: find the training samples a PyTorch model can do without."""

__version__ = "0.1.0"

from . import grads, methods  # noqa: E402
from . import moso  # noqa: E402
from .select import select  # noqa: E402
from .trajectory import Checkpoint, choose_epochs, load_checkpoints, save_checkpoints  # noqa: E402
from .train import TrainConfig, accuracy, train  # noqa: E402

__all__ = ["__version__", "moso", "grads", "methods", "select", "train", "TrainConfig", "accuracy",
           "Checkpoint", "choose_epochs", "save_checkpoints", "load_checkpoints"]
