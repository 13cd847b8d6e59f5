"""Training objectives: ``loss(denoiser, x0, noise) -> {"loss": ..., components...}``."""

from .cumulative import CumulativeErrorLoss
from .sequence_aware import SequenceAwareLoss
from .simple import SimpleLoss

__all__ = ["CumulativeErrorLoss", "SequenceAwareLoss", "SimpleLoss"]
