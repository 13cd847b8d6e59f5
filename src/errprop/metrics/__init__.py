"""Sample-quality metrics: Fréchet distance on features, MMD², sliced Wasserstein.

Feature extractors live apart (``errprop.metrics.features`` for the data set's own classifier,
``errprop.metrics.inception`` for Inception FID/IS/KID) so these stay pure functions.
"""

from .frechet import FeatureStats, frechet_distance
from .mmd import mmd2, mmd2_unbiased
from .swd import sliced_wasserstein

__all__ = ["FeatureStats", "frechet_distance", "mmd2", "mmd2_unbiased", "sliced_wasserstein"]
