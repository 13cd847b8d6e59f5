"""Error-propagation diagnostics (docs/methods.md#diagnostics): each takes sampler trajectories and returns a
plain dict of per-step lists (σ grid, VP timestep t, n, seed) ready for ``json.dumps``.

- :func:`modular_error` (exact KL per step on mixtures), :func:`denoising_excess` (images);
- :func:`cumulative_error` (one recorded chain vs forward-noised data), :func:`amplification`;
- :func:`estimation_gap` (SA Fig. 4);
- :func:`error_budget`, :func:`compare_schedules` (DS's E_I / E_D / E_S);
- :func:`plot_steps`; :func:`diagnose` (the ``errprop diagnose`` entry point).
"""

from ..files import to_jsonable
from .budget import compare_schedules, converged_reference, error_budget
from .cumulative import amplification, cumulative_error, knn_entropy
from .gap import default_start, estimation_gap
from .modular import denoising_excess, modular_error, reverse_transition_log_prob, step_moments
from .plots import choose_yscale, plot_steps
from .run import WHATS, diagnose

__all__ = [
    "WHATS",
    "amplification",
    "choose_yscale",
    "compare_schedules",
    "converged_reference",
    "cumulative_error",
    "default_start",
    "denoising_excess",
    "diagnose",
    "error_budget",
    "estimation_gap",
    "knn_entropy",
    "modular_error",
    "plot_steps",
    "reverse_transition_log_prob",
    "step_moments",
    "to_jsonable",
]
