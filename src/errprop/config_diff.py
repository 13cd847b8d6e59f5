"""What training configs actually train differently — checked, so a comparison can say whether
"only the objective differs" is true. The one home of which train fields do not change what is
learned (:data:`BOOKKEEPING`): the study report, ``errprop compare`` and the benchmarks read it here.

The resolved configs hold fields a run never reads (an SA section in a baseline's config) and hide
choices a loss makes itself (SA draws its noise levels antithetically by default, the ε-loss
uniformly). :func:`effective` flattens a config into the settings its training uses, so that
:func:`differences` sees exactly those; :func:`objective_only` says whether all of them belong to the
objective.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from .config import Config

#: ``train`` fields that change neither what is learned nor how (bookkeeping, placement,
#: threads, the seed: runs compared with each other are paired by seed or differ in it on purpose).
BOOKKEEPING = frozenset({"seed", "device", "log_every", "ckpt_every", "keep_last", "threads",
                         "skip_nonfinite"})
#: The effective settings that are the objective itself; every other difference is a confound.
OBJECTIVE = ("loss.name", "loss.sa.", "loss.ep.", "loss.input_perturbation")


def _flat(prefix: str, d: dict) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out |= _flat(f"{prefix}{k}.", v)
        else:
            out[f"{prefix}{k}"] = v
    return out


def effective(cfg: Config) -> dict[str, Any]:
    """The settings a training with ``cfg`` uses, flattened (``section.field``) — the loss's own
    choices included under the name they have whatever the loss (``loss.t_sampling``)."""
    d = cfg.to_dict()
    out = _flat("data.", d["data"]) | _flat("process.", d["process"]) | _flat("model.", d["model"])
    out |= {f"train.{k}": v for k, v in d["train"].items() if k not in BOOKKEEPING}
    lc = cfg.loss
    out["loss.name"] = lc.name
    out["loss.weighting"] = lc.weighting or cfg.model.parameterization
    # The noise-level distribution: SA's own t_sampling replaces sigma_sampling (SequenceAwareLoss).
    out["loss.t_sampling"] = lc.sa.t_sampling if lc.name == "sa" else lc.sigma_sampling
    if out["loss.t_sampling"] == "lognormal":
        out |= {"loss.p_mean": lc.p_mean, "loss.p_std": lc.p_std}
    out["loss.input_perturbation"] = lc.input_perturbation
    if lc.name in ("sa", "ep"):
        section = _flat(f"loss.{lc.name}.", d["loss"][lc.name])
        out |= {k: v for k, v in section.items() if k != "loss.sa.t_sampling"}
    return out


def differences(base: Config, other: Config) -> dict[str, tuple[Any, Any]]:
    """``{field: (base value, other value)}`` for every effective setting that differs."""
    a, b = effective(base), effective(other)
    return {k: (a.get(k), b.get(k)) for k in sorted(a.keys() | b.keys()) if a.get(k) != b.get(k)}


def differing(configs: Mapping[str, Config]) -> dict[str, dict[str, Any]]:
    """``{field: {name: value}}`` for every effective setting whose value is not the same in all of
    ``configs`` (by name); a setting a config does not have is None there."""
    eff = {name: effective(c) for name, c in configs.items()}
    keys = sorted({k for e in eff.values() for k in e})
    out = {}
    for k in keys:
        values = {name: e.get(k) for name, e in eff.items()}
        if len({json.dumps(v, sort_keys=True, default=str) for v in values.values()}) > 1:
            out[k] = values
    return out


def changed(old: Config, new: Config) -> dict[str, tuple[Any, Any]]:
    """``{field: (old value, new value)}`` for every field of the resolved configs that differs,
    whether a training reads it or not (what a run folder's config records; compare
    :func:`differences`)."""
    a, b = _flat("", old.to_dict()), _flat("", new.to_dict())
    return {k: (a.get(k), b.get(k)) for k in sorted(a.keys() | b.keys()) if a.get(k) != b.get(k)}


def is_objective(field: str) -> bool:
    """Whether an effective setting is part of the objective (loss name, SA/EP parameters, IP)."""
    return any(field == o or (o.endswith(".") and field.startswith(o)) for o in OBJECTIVE)


def objective_only(diff: dict[str, tuple[Any, Any]]) -> bool:
    """True when every difference is the objective's."""
    return all(is_objective(k) for k in diff)


def describe(diff: dict[str, tuple[Any, Any]]) -> str:
    """``field: a → b`` for each difference (the objective's plainly, the others marked ⚠)."""
    if not diff:
        return "—"
    parts = []
    for k, (a, b) in diff.items():
        text = f"{k}: {'—' if a is None else a} → {'—' if b is None else b}"
        parts.append(text if is_objective(k) else f"⚠ {text}")
    return "; ".join(parts)


def arms_differences(base: Sequence[str], arms: Sequence[Any]) -> dict[str, str]:
    """For each arm (``name``, ``overrides``; the first is the baseline) what it trains differently
    from the baseline, :func:`describe`d, on the configs resolved from ``base`` + its overrides."""
    from .config import load

    cfgs = [load(overrides=[*base, *a.overrides]) for a in arms]
    return {a.name: describe(differences(cfgs[0], c)) for a, c in zip(arms, cfgs)}


def arms_sentence(diffs: Mapping[str, str], labels: Mapping[str, str]) -> str:
    """The reports' sentence on :func:`arms_differences` (the baseline left out), saying "only the
    objective differs" only where no ⚠ setting does."""
    rest = {a: t for a, t in diffs.items() if a != next(iter(diffs))}
    head = ("Only the objective differs between the arms (checked on the resolved configs)"
            if not any("⚠" in t for t in rest.values()) else
            "Not only the objective differs (⚠ below: checked on the resolved configs)")
    return head + ". What each arm trains differently from the baseline: " + "; ".join(
        f"{labels.get(a, a)}: {t}" for a, t in rest.items()) + "."
