"""GBMPO (AlignTune): TRL's GRPO loss plus lambda x a Bregman divergence between the policy and the reference."""

from __future__ import annotations

import torch

from .knobs import Violations, one_of, read, require, within
from .reference import ReferencePenaltyTrainer

MESSAGE = "gbmpo"
DIVERGENCES = ("l2", "l2kl", "probl2", "probl2kl")
DEFAULTS = {"divergence": "l2", "divergence_coefficient": 1e-4}
# The *kl variants' KL coefficient when method_params.beta is unset or 0 (the beta of AlignTune's L2KL example).
KL_BETA = 0.01
METRIC = "gbmpo/divergence"


def check(params: dict[str, dict]) -> Violations:
    """The gbmpo knobs' violations: a known divergence, a coefficient in [0, 1] (AlignTune's bound)."""
    knobs = read(params, MESSAGE, DEFAULTS)
    return (one_of(MESSAGE, "divergence", knobs["divergence"], DIVERGENCES)
            + within(MESSAGE, "divergence_coefficient", knobs["divergence_coefficient"], at_least=0.0, at_most=1.0))


def divergence(kind: str, logps: torch.Tensor, ref_logps: torch.Tensor) -> torch.Tensor:
    """Per-token divergence: (log pi - log pi_ref)^2 for l2/l2kl, (pi - pi_ref)^2 for probl2/probl2kl. The *kl
    variants' KL term is TRL's own (k3, times beta), added by GRPOTrainer itself."""
    if kind.startswith("prob"):
        return (logps.exp() - ref_logps.exp()) ** 2
    return (logps - ref_logps) ** 2


def aggregate(per_token: torch.Tensor, mask: torch.Tensor, loss_type: str, *, accumulation: float,
              max_completion_length: int, items: torch.Tensor | float) -> torch.Tensor:
    """A per-token term reduced the way GRPOTrainer reduces its loss for `loss_type` (TRL 1.16 `_compute_loss`):
    `accumulation` divides all but the token-sum losses, whose divisor is `items` (tokens per accumulation window)."""
    masked = per_token * mask
    if loss_type in ("grpo", "sapo"):
        return (masked.sum(-1) / mask.sum(-1).clamp(min=1.0)).mean() / accumulation
    if loss_type == "bnpo":
        return masked.sum() / mask.sum().clamp(min=1.0) / accumulation
    if loss_type == "dr_grpo":
        return masked.sum() / (per_token.size(0) * max_completion_length) / accumulation
    if loss_type == "luspo":
        return masked.sum(-1).mean() / accumulation
    if loss_type in ("cispo", "dapo", "vespo"):
        return masked.sum() / items
    raise ValueError(f"unknown loss type {loss_type!r}")


class GBMPOTrainer(ReferencePenaltyTrainer):
    """GRPOTrainer whose loss adds `divergence_coefficient` x the chosen divergence to the reference, reduced like
    the loss. The *kl variants keep TRL's beta x KL term (beta = method_params.beta, else KL_BETA; the passed
    GRPOConfig's beta is set before TRL reads it); l2 and probl2 add no KL of their own."""

    def __init__(self, *args, algorithm: dict[str, dict] | None = None, **kwargs):
        algorithm = algorithm or {}
        require(check(algorithm))
        knobs = read(algorithm, MESSAGE, DEFAULTS)
        self.divergence = str(knobs["divergence"])
        self.divergence_coefficient = float(knobs["divergence_coefficient"])
        config = kwargs.get("args")
        if self.divergence.endswith("kl") and config is not None and config.beta == 0.0:
            config.beta = KL_BETA
        super().__init__(*args, **kwargs)

    def penalty(self, logps: torch.Tensor, ref_logps: torch.Tensor, mask: torch.Tensor, inputs: dict,
                mode: str) -> torch.Tensor:
        per_token = divergence(self.divergence, logps, ref_logps)
        training = mode == "train"
        accumulation = self.current_gradient_accumulation_steps if training else 1.0
        items = inputs["num_items_in_batch"].clamp(min=1.0) / self.accelerator.num_processes
        if training:
            items = items * accumulation / self.args.steps_per_generation
        term = aggregate(per_token, mask, self.loss_type, accumulation=accumulation,
                         max_completion_length=self.max_completion_length, items=items)
        totals = self.accelerator.reduce(torch.stack([(per_token.detach() * mask).sum(), mask.sum().float()]),
                                         reduction="sum")
        self._metrics[mode][METRIC].append((totals[0] / totals[1].clamp(min=1.0)).item())
        return self.divergence_coefficient * term
