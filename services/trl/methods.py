"""The TRL methods: for each, the dataset formats it reads, the knobs it honours, and its TRL config and trainer."""

from __future__ import annotations

import importlib
from dataclasses import dataclass

from forgeway.core.errors import InvalidArgument
from forgeway.services.training.spec import TrainSpec

DPO_LOSSES = ("sigmoid", "hinge", "ipo", "exo_pair", "nca_pair", "robust", "bco_pair", "sppo_hard", "aot",
              "aot_unpaired", "apo_zero", "apo_down", "discopop", "sft", "sigmoid_norm")
# "gspo" is GRPO with sequence-level importance sampling (TRL's recipe for the GSPO paper).
GRPO_LOSSES = ("grpo", "dr_grpo", "dapo", "bnpo", "cispo", "sapo", "luspo", "vespo", "gspo")
# GRPOConfig fields a loss type brings, AlignTune's presets (backends/trl/rl/{gspo,dr_grpo,dapo}) completed with
# their papers' recipes as TRL documents them: AlignTune's drgrpo.py and dapo.py set loss_type alone (drgrpo.py
# also beta, 0.1 by default; here TRL's 0.0 unless the request gives one); Dr. GRPO also leaves rewards unscaled,
# DAPO clips higher (0.28), masks truncated completions and drops the KL term. A request's beta wins.
LOSS_PRESETS: dict[str, dict] = {
    "gspo": dict(loss_type="grpo", importance_sampling_level="sequence", epsilon=3e-4, epsilon_high=4e-4),
    "dr_grpo": dict(loss_type="dr_grpo", scale_rewards="none"),
    "dapo": dict(loss_type="dapo", epsilon=0.2, epsilon_high=0.28, mask_truncated_completions=True, beta=0.0),
}


@dataclass(frozen=True)
class Method:
    """One training method as this service runs it."""

    name: str
    formats: tuple[str, ...]  # dataset formats it trains on, in detection order
    config: str  # "module:Class" of the TRL config
    trainer: str  # "module:Class" of the TRL trainer
    knobs: frozenset[str] = frozenset()  # method_params it honours
    loss_types: tuple[str, ...] = ()
    model_class: str = "AutoModelForCausalLM"
    pipeline_task: str = "text-generation"
    max_length: bool = True  # its config has max_length (max_seq_length maps onto it)
    algorithm: tuple[str, ...] = ()  # MethodParams messages it reads (AlignTune's algorithms: services/trl/algorithms)

    @property
    def rewards(self) -> bool:
        return "rewards" in self.knobs

    @property
    def default_rewards(self) -> bool:
        """GRPO and AlignTune's GRPO-based methods: given no reward, AlignTune's default set
        (rewards.ALIGNTUNE_DEFAULTS), as its TRL GRPO backends do; RLOO (AlignTune has no RLOO backend) and online DPO
        (AlignTune requires a reward there) don't."""
        return self.rewards and self.config == "trl:GRPOConfig"

    def config_class(self):
        return _import(self.config)

    def trainer_class(self):
        return _import(self.trainer)

    def check_algorithm(self, given: dict[str, dict]) -> list[tuple[str, str]]:
        """Violations in the algorithm knobs: messages this method does not read, and the module's own checks of the
        values (`check(params) -> [(field, why)]` beside the trainer class, params keyed by message name)."""
        errors = [(f"method_params.{name}", f"{self.name} does not take {name} settings") for name in given
                  if name not in self.algorithm]
        if self.algorithm:
            module = importlib.import_module(self.trainer.partition(":")[0])
            errors += module.check({name: given.get(name, {}) for name in self.algorithm})
        return errors


def _import(target: str):
    module, _, attr = target.partition(":")
    return getattr(importlib.import_module(module), attr)


_PREFERENCE = ("preference",)
_PROMPTS = ("prompt_only",)
_GRPO_KNOBS = frozenset({"beta", "loss_type", "num_generations", "max_completion_length", "rewards"})
METHODS: dict[str, Method] = {m.name: m for m in [
    Method("sft", ("conversational", "prompt_completion", "language_modeling"), "trl:SFTConfig", "trl:SFTTrainer",
           frozenset({"loss_type"}), ("nll", "dft", "chunked_nll")),
    Method("dpo", _PREFERENCE, "trl:DPOConfig", "trl:DPOTrainer", frozenset({"beta", "loss_type"}), DPO_LOSSES),
    Method("kto", ("unpaired_preference", "preference"), "trl:KTOConfig", "trl:KTOTrainer",
           frozenset({"beta", "loss_type"}), ("kto", "apo_zero_unpaired")),
    Method("grpo", _PROMPTS, "trl:GRPOConfig", "trl:GRPOTrainer", _GRPO_KNOBS, GRPO_LOSSES, max_length=False),
    Method("rloo", _PROMPTS, "trl:RLOOConfig", "trl:RLOOTrainer",
           frozenset({"beta", "num_generations", "max_completion_length", "rewards"}), max_length=False),
    Method("reward", _PREFERENCE, "trl:RewardConfig", "trl:RewardTrainer",
           model_class="AutoModelForSequenceClassification", pipeline_task="text-classification"),
    Method("orpo", _PREFERENCE, "trl.experimental.orpo:ORPOConfig", "trl.experimental.orpo:ORPOTrainer",
           frozenset({"beta", "max_completion_length"})),
    Method("cpo", _PREFERENCE, "trl.experimental.cpo:CPOConfig", "trl.experimental.cpo:CPOTrainer",
           frozenset({"beta", "loss_type", "max_completion_length"}), ("sigmoid", "hinge", "ipo", "simpo", "alphapo")),
    Method("online_dpo", _PROMPTS, "trl.experimental.online_dpo:OnlineDPOConfig",
           "trl.experimental.online_dpo:OnlineDPOTrainer",
           frozenset({"beta", "loss_type", "max_completion_length", "rewards"}), ("sigmoid", "ipo")),
    # AlignTune's own algorithms: TRL's GRPOTrainer extended (services/trl/algorithms), GRPO's knobs and loss types.
    *(Method(name, _PROMPTS, "trl:GRPOConfig", f"forgeway.services.trl.algorithms.{module}", _GRPO_KNOBS, GRPO_LOSSES,
             max_length=False, algorithm=algorithm)
      for name, module, algorithm in (
          ("counterfact_grpo", "counterfact:CounterfactGRPOTrainer", ("counterfact",)),
          ("gbmpo", "gbmpo:GBMPOTrainer", ("gbmpo",)),
          ("pace", "pace:PACETrainer", ("pace",)),
          ("nmgrpo", "mirror:NeuralMirrorGRPOTrainer", ("mirror",)),
          ("metaes", "metaes:MetaESTrainer", ("mirror", "meta_es")))),
]}


def check_knobs(spec: TrainSpec, method: Method) -> list[tuple[str, str]]:
    """Violations for method knobs the method does not honour (rejected, never ignored) or loss types it lacks."""
    given = {
        "beta": spec.beta is not None,
        "loss_type": bool(spec.loss_type),
        "num_generations": spec.num_generations is not None,
        "max_completion_length": spec.max_completion_length is not None,
        "rewards": bool(spec.reward_functions or spec.reward_model),
    }
    errors = [(f"method_params.{'reward_functions' if knob == 'rewards' else knob}",
               f"{method.name} does not take {knob.replace('_', ' ')}")
              for knob, present in given.items() if present and knob not in method.knobs]
    if spec.loss_type and "loss_type" in method.knobs:
        unknown = [t for t in spec.loss_type.split(",") if t.strip() not in method.loss_types]
        if unknown or ("," in spec.loss_type and method.name != "dpo"):
            errors.append(("method_params.loss_type", f"unknown loss type {spec.loss_type!r} for {method.name}; "
                           f"allowed: {', '.join(method.loss_types)}"))
    if method.rewards and not method.default_rewards and not (spec.reward_functions or spec.reward_model):
        errors.append(("method_params.reward_functions", f"{method.name} needs at least one reward function or a "
                       "reward model"))
    if spec.max_seq_length is not None and not method.max_length:
        errors.append(("hyperparameters.max_seq_length", f"{method.name} bounds lengths with "
                       "method_params.max_prompt_length and max_completion_length"))
    return errors


def method_fields(spec: TrainSpec, method: Method, batch: int, accumulation: int) -> dict:
    """The method's own config fields from the request's method_params."""
    fields: dict = {}
    if method.config == "trl:GRPOConfig" and spec.loss_type in LOSS_PRESETS:
        fields.update(LOSS_PRESETS[spec.loss_type])
    elif spec.loss_type:
        fields["loss_type"] = [t.strip() for t in spec.loss_type.split(",")] if method.name == "dpo" else spec.loss_type
    if spec.beta is not None:  # the request's beta wins over a preset's
        fields["beta"] = [spec.beta] if method.name == "online_dpo" else spec.beta
    if "num_generations" in method.knobs:
        fields["num_generations"] = spec.num_generations or _generations(batch * accumulation)
    if spec.max_completion_length is not None:
        key = "max_new_tokens" if method.name == "online_dpo" else "max_completion_length"
        fields[key] = spec.max_completion_length
    if spec.max_seq_length is not None and method.max_length:
        fields["max_length"] = spec.max_seq_length
    if method.name in ("orpo", "cpo", "online_dpo"):
        fields["remove_unused_columns"] = False
    return fields


def _generations(generation_batch: int) -> int:
    """TRL's default of 8 completions per prompt, lowered to divide a small generation batch."""
    for n in range(min(8, generation_batch), 1, -1):
        if generation_batch % n == 0:
            return n
    raise InvalidArgument("hyperparameters.batch_size", "online RL needs batch_size x gradient_accumulation_steps "
                          "of at least 2 (completions are compared within a group)")


def build_config(method: Method, common: dict, fields: dict):
    """The TRL config; its own consistency checks become INVALID_ARGUMENT naming the closest field."""
    try:
        return method.config_class()(**common, **fields)
    except ValueError as exc:
        text = str(exc)
        where = next((f"method_params.{k}" for k in ("num_generations", "beta", "loss_type") if k in text),
                     "hyperparameters")
        raise InvalidArgument(where, text.splitlines()[0]) from None
