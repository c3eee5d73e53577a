"""Training: the loop, optimisers, evaluation statistics, the zoo of embedded runs."""

from analysis.training.trainer import Callback, Trainer, train

__all__ = ["Callback", "Trainer", "train"]
