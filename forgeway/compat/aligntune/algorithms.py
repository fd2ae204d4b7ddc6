"""AlignTune's RL algorithms as Forgeway training methods, and the algorithm keyword arguments AlignTune's factory
takes, as MethodParams knobs.

| AlignTune algorithm | Forgeway method |
|---|---|
| dpo, grpo, kto, orpo, cpo, rloo, online_dpo, reward | the method of that name |
| gspo, drgrpo, dapo | grpo with loss_type gspo, dr_grpo, dapo (TRL's own options, AlignTune's presets) |
| counterfact_grpo, gbmpo, pace (bolt), nmgrpo, metaes | the methods of those names (AlignTune's algorithms on TRL's GRPOTrainer) |
| gbmpo_l2, gbmpo_l2kl, gbmpo_probl2, gbmpo_probl2kl | gbmpo with that divergence |
| ppo | ValueError: TRL removed PPO (use grpo, rloo or dpo) |
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from forgeway.core.enums import METHOD

ALGORITHMS: dict[str, tuple[str, str]] = {
    **{name: (name, "") for name in ("dpo", "grpo", "kto", "orpo", "cpo", "rloo", "online_dpo", "reward",
                                     "counterfact_grpo", "gbmpo", "pace", "nmgrpo", "metaes")},
    "gspo": ("grpo", "gspo"), "drgrpo": ("grpo", "dr_grpo"), "dr_grpo": ("grpo", "dr_grpo"), "dapo": ("grpo", "dapo"),
    "bolt": ("pace", ""), "meta_es": ("metaes", ""), "neural_mirror_grpo": ("nmgrpo", ""),
    **{f"gbmpo_{d}": ("gbmpo", "") for d in ("l2", "l2kl", "probl2", "probl2kl")},
}
REMOVED = {**METHOD.removed,
           "spin": "SPIN (self-play fine-tuning) is not a Forgeway method; dpo on the model's own generations as "
                   "rejected answers is the nearest"}
# Methods that bound lengths with max_prompt_length / max_completion_length, not max_seq_length.
ONLINE = ("grpo", "rloo", "online_dpo", "counterfact_grpo", "gbmpo", "pace", "nmgrpo", "metaes")
DIVERGENCES = {"l2": "l2", "l2kl": "l2kl", "prob_l2": "probl2", "probl2": "probl2", "prob_l2kl": "probl2kl",
               "probl2kl": "probl2kl"}


def _divergence(value: Any) -> str:
    key = str(value).lower()
    if key not in DIVERGENCES:
        raise ValueError(f"gbmpo_divergence_type must be one of {', '.join(sorted(set(DIVERGENCES)))}, got {value!r}")
    return DIVERGENCES[key]


# AlignTune keyword -> (method that reads it, MethodParams message, knob, conversion).
KNOBS: dict[str, tuple[str, str, str, Callable[[Any], Any]]] = {
    "boost_factor": ("counterfact_grpo", "counterfact", "boost_factor", float),
    "min_weight": ("counterfact_grpo", "counterfact", "min_weight", float),
    "answer_weight": ("counterfact_grpo", "counterfact", "answer_weight", float),
    "gbmpo_divergence_type": ("gbmpo", "gbmpo", "divergence", _divergence),
    "gbmpo_l2_coefficient": ("gbmpo", "gbmpo", "divergence_coefficient", float),
    "curriculum_enabled": ("pace", "pace", "curriculum", bool),
    "mirror_coefficient": ("nmgrpo metaes", "mirror", "coefficient", float),
    "N": ("metaes", "meta_es", "population", int),
    "T": ("metaes", "meta_es", "inner_steps", int),
    "sigma": ("metaes", "meta_es", "sigma", float),
    "alpha": ("metaes", "meta_es", "meta_learning_rate", float),
    "meta_iterations": ("metaes", "meta_es", "generations", int),
}


def method_for(algorithm: str) -> tuple[str, str]:
    """(Forgeway method, loss_type) for an AlignTune algorithm name; AlignTune's ValueErrors otherwise."""
    key = str(getattr(algorithm, "value", algorithm)).lower()
    if key in REMOVED:
        raise ValueError(f"algorithm {algorithm!r} is not available through Forgeway: {REMOVED[key]}")
    if key not in ALGORITHMS:
        raise ValueError(f"{algorithm!r} is not a valid RLAlgorithm; valid: {', '.join(sorted(ALGORITHMS))}")
    return ALGORITHMS[key]


def algorithm_knobs(algorithm: str, method: str, kwargs: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The MethodParams messages for AlignTune's algorithm keywords in kwargs (popped); a keyword for another
    algorithm stays in kwargs, to be warned about as having no counterpart for this one."""
    key = str(getattr(algorithm, "value", algorithm)).lower()
    knobs: dict[str, dict[str, Any]] = {}
    if key.startswith("gbmpo_"):
        knobs["gbmpo"] = {"divergence": key.removeprefix("gbmpo_")}
    elif method == "gbmpo":
        knobs["gbmpo"] = {"divergence": "l2kl"}  # AlignTune's factory picks l2kl when no divergence is named
    for name, (methods, message, knob, convert) in KNOBS.items():
        if name in kwargs and method in methods.split():
            value = kwargs.pop(name)
            if value is not None:
                knobs.setdefault(message, {})[knob] = convert(value)
    return knobs
