"""A GRPOTrainer whose loss adds a per-token penalty between the policy and a reference (gbmpo, nmgrpo, metaes)."""

from __future__ import annotations

import copy

import torch
from accelerate.utils import is_peft_model
from trl import GRPOTrainer
from trl.trainer.utils import use_adapter


class ReferencePenaltyTrainer(GRPOTrainer):
    """TRL's GRPO loss plus `penalty(...)`, a term over the policy's and the reference's per-token log-probs.

    The reference log-probs are computed even when beta is 0 (TRL computes them only for its KL term): from the
    adapter switched off under LoRA, else from a frozen copy of the starting model. The policy's log-probs are those
    of the forward pass inside `_compute_loss`, with its graph, so the penalty's gradient flows."""

    def __init__(self, *args, **kwargs):
        self._capturing, self._policy_logps = False, None
        super().__init__(*args, **kwargs)
        self.penalty_reference = None
        if self.ref_model is None and not is_peft_model(self.model):  # beta 0 and full weights: TRL built none
            reference = copy.deepcopy(self.accelerator.unwrap_model(self.model)).eval().requires_grad_(False)
            self.penalty_reference = self.accelerator.prepare_model(reference, evaluation_mode=True)

    def penalty(self, logps: torch.Tensor, ref_logps: torch.Tensor, mask: torch.Tensor, inputs: dict,
                mode: str) -> torch.Tensor:
        """The term added to the loss (scaled for gradient accumulation as the loss is); logs its own metrics."""
        raise NotImplementedError

    def _generate_and_score_completions(self, inputs):
        output = super()._generate_and_score_completions(inputs)
        if "ref_per_token_logps" not in output:
            output["ref_per_token_logps"] = self._reference_logps(output)
        return output

    def _reference_logps(self, output: dict) -> torch.Tensor:
        ids = torch.cat([output["prompt_ids"], output["completion_ids"]], dim=1)
        mask = torch.cat([output["prompt_mask"], output["completion_mask"]], dim=1)
        keep = output["completion_ids"].size(1)
        size = self.args.per_device_train_batch_size if self.model.training else self.args.per_device_eval_batch_size
        with torch.no_grad():
            reference = self.penalty_reference or self.ref_model
            if reference is not None:
                return self._get_per_token_logps_and_entropies(reference, ids, mask, keep, batch_size=size)[0]
            model = self.accelerator.unwrap_model(self.model)  # LoRA: the reference is the adapter switched off
            with use_adapter(model, adapter_name="ref" if "ref" in model.peft_config else None):
                return self._get_per_token_logps_and_entropies(self.model, ids, mask, keep, batch_size=size)[0]

    def _get_per_token_logps_and_entropies(self, *args, **kwargs):
        result = super()._get_per_token_logps_and_entropies(*args, **kwargs)
        if self._capturing and self._policy_logps is None:  # the policy's own pass inside _compute_loss
            self._policy_logps = result[0]
        return result

    def _compute_loss(self, model, inputs):
        self._capturing, self._policy_logps = True, None
        try:
            loss = super()._compute_loss(model, inputs)
        finally:
            self._capturing = False
        logps, self._policy_logps = self._policy_logps, None
        mask = inputs["completion_mask"] * inputs["tool_mask"] if "tool_mask" in inputs else inputs["completion_mask"]
        mode = "train" if self.model.training else "eval"
        return loss + self.penalty(logps, inputs["ref_per_token_logps"], mask, inputs, mode)
