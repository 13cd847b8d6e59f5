"""Training objectives: ``loss(denoiser, x0, noise) -> {"loss": ..., components...}``."""

from .cumulative import CumulativeErrorLoss
from .sequence_aware import SequenceAwareLoss
from .simple import SimpleLoss

#: The objectives, by config name (``loss.name``): :class:`SimpleLoss`, :class:`SequenceAwareLoss`
#: (``sa``), :class:`CumulativeErrorLoss` (``ep``) on top of the simple loss.
NAMES = ("simple", "sa", "ep")

__all__ = ["NAMES", "CumulativeErrorLoss", "SequenceAwareLoss", "SimpleLoss"]
