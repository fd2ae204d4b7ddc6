"""pace (AlignTune's BOLT): GRPO with persistent per-prompt Beta baselines and an uncertainty curriculum."""

from __future__ import annotations

import json
import math
from collections.abc import Iterator, Sized
from pathlib import Path

import torch
from torch.utils.data import Sampler
from trl import GRPOTrainer

from .knobs import Violations, field, read, require, within

# AlignTune's BOLT defaults (backends/trl/rl/pace: UnifiedBaseline and PaceConfig).
DEFAULTS = {"prior_alpha": 1.0, "prior_beta": 1.0, "kl_half_life": 0.5, "rho_min": 0.875, "rho_max": 0.96,
            "curriculum": True, "curriculum_floor": 0.05}
BASELINES_FILE = "pace_baselines.json"
MESSAGE = "pace"


def knobs(params: dict[str, dict]) -> dict:
    """The pace knobs: each set value, else its default, typed like the default."""
    return {name: type(DEFAULTS[name])(value) for name, value in read(params, MESSAGE, DEFAULTS).items()}


def check(params: dict[str, dict]) -> Violations:
    """Violations in method_params.pace, before any model loads."""
    k = read(params, MESSAGE, DEFAULTS)
    errors = [e for name in ("prior_alpha", "prior_beta", "kl_half_life") for e in within(MESSAGE, name, k[name],
                                                                                          above=0.0)]
    errors += [e for name in ("rho_min", "rho_max") for e in within(MESSAGE, name, k[name], above=0.0, at_most=1.0)]
    errors += within(MESSAGE, "curriculum_floor", k["curriculum_floor"], at_least=0.0, at_most=1.0)
    if not errors and k["rho_min"] > k["rho_max"]:
        errors.append((field(MESSAGE, "rho_min"), f"must not exceed rho_max ({k['rho_max']:g}), got {k['rho_min']:g}"))
    return errors


def forgetting(kl: float, half_life: float, rho_min: float, rho_max: float) -> float:
    """The retention factor rho = 2^(-KL / half_life), clamped to [rho_min, rho_max] (SPO's equation 5)."""
    return min(rho_max, max(rho_min, 2.0 ** (-kl / half_life)))


class PromptBaselines:
    """Per-prompt Beta(alpha, beta) estimates v = alpha / (alpha + beta) of the chance a completion succeeds."""

    def __init__(self, prior_alpha: float, prior_beta: float, kl_half_life: float, rho_min: float, rho_max: float):
        self.prior = (prior_alpha, prior_beta)
        self.kl_half_life, self.rho_min, self.rho_max = kl_half_life, rho_min, rho_max
        self.table: dict[str, tuple[float, float]] = {}
        self.last_rho: list[float] = []

    def value(self, key: str) -> float:
        a, b = self.table.get(key, self.prior)
        return a / (a + b)

    def weight(self, key: str, floor: float) -> float:
        """Curriculum weight sqrt(v(1 - v)) + floor: highest where the policy is least certain to succeed."""
        v = self.value(key)
        return math.sqrt(v * (1.0 - v)) + floor

    def update(self, key: str, rewards: list[float]) -> None:
        """Fold in one group's rewards, each binarised at 0.5, forgetting old evidence faster the further the
        group's mean has drifted from the estimate (KL taken as 2|mean - v|, as AlignTune estimates it)."""
        mean = sum(rewards) / len(rewards)
        for reward in rewards:
            a, b = self.table.get(key, self.prior)
            rho = forgetting(2.0 * abs(mean - a / (a + b)), self.kl_half_life, self.rho_min, self.rho_max)
            success = 1.0 if reward > 0.5 else 0.0
            self.table[key] = (rho * a + success, rho * b + 1.0 - success)
            self.last_rho.append(rho)

    def save(self, path: Path) -> None:
        path.write_text(json.dumps({k: list(v) for k, v in self.table.items()}))

    def load(self, path: Path) -> None:
        self.table = {k: (float(a), float(b)) for k, (a, b) in json.loads(path.read_text()).items()}


def baseline_advantages(rewards: torch.Tensor, values: torch.Tensor) -> torch.Tensor:
    """A = r - v, z-normalised over the batch and clipped to [-5, 5] (NaN rewards, unscorable, get 0)."""
    raw = rewards - values
    scored = raw[~torch.isnan(raw)]
    if scored.numel() == 0:
        return torch.zeros_like(raw)
    std = scored.std().clamp(min=1e-6) if scored.numel() > 1 else torch.ones((), device=raw.device)
    return torch.nan_to_num(((raw - scored.mean()) / std).clamp(-5.0, 5.0), nan=0.0)


def prompt_key(prompt) -> str:
    """A stable key for a dataset prompt: the text itself, or the messages as canonical JSON."""
    return prompt if isinstance(prompt, str) else json.dumps(prompt, sort_keys=True)


class CurriculumSampler(Sampler[int]):
    """TRL's RepeatSampler order (each prompt num_generations times, each chunk repeated), with the prompts of each
    chunk drawn by curriculum weight instead of a uniform shuffle; weights are read as each chunk is drawn."""

    def __init__(self, data_source: Sized, keys: list[str], baselines: PromptBaselines, floor: float,
                 mini_repeat_count: int, batch_size: int, repeat_count: int, seed: int):
        self.keys, self.baselines, self.floor = keys, baselines, floor
        self.mini_repeat_count, self.batch_size, self.repeat_count = mini_repeat_count, batch_size, repeat_count
        self.num_samples = len(data_source)
        self.generator = torch.Generator().manual_seed(seed)

    def weights(self) -> torch.Tensor:
        return torch.tensor([self.baselines.weight(k, self.floor) for k in self.keys], dtype=torch.float64)

    def __iter__(self) -> Iterator[int]:
        for _ in range(self.num_samples // self.batch_size):
            chunk = torch.multinomial(self.weights(), self.batch_size, replacement=False,
                                      generator=self.generator).tolist()
            for _ in range(self.repeat_count):
                for index in chunk:
                    yield from [index] * self.mini_repeat_count

    def __len__(self) -> int:
        return (self.num_samples // self.batch_size) * self.batch_size * self.mini_repeat_count * self.repeat_count


class PACETrainer(GRPOTrainer):
    """GRPOTrainer whose advantages are r - v(prompt) against persistent baselines instead of the group mean."""

    def __init__(self, *args, algorithm: dict[str, dict] | None = None, **kwargs):
        require(check(algorithm or {}))
        self.pace = knobs(algorithm or {})
        self.baselines = PromptBaselines(self.pace["prior_alpha"], self.pace["prior_beta"], self.pace["kl_half_life"],
                                         self.pace["rho_min"], self.pace["rho_max"])
        self._scored: tuple[torch.Tensor, list] | None = None
        super().__init__(*args, **kwargs)

    def _get_train_sampler(self, dataset=None) -> Sampler:
        dataset = self.train_dataset if dataset is None else dataset
        if not self.pace["curriculum"]:
            return super()._get_train_sampler(dataset)
        return CurriculumSampler(dataset, [prompt_key(p) for p in dataset["prompt"]], self.baselines,
                                 self.pace["curriculum_floor"], self.num_generations,
                                 self.args.generation_batch_size // self.num_generations,
                                 self.num_iterations * self.args.steps_per_generation, self.args.seed)

    def _calculate_rewards(self, inputs, prompts, completions, completion_ids_list):
        from accelerate.utils import gather_object

        rewards_per_func = super()._calculate_rewards(inputs, prompts, completions, completion_ids_list)
        self._scored = (rewards_per_func, gather_object([prompt_key(p) for p in prompts]))
        return rewards_per_func

    def _generate_and_score_completions(self, inputs):
        output = super()._generate_and_score_completions(inputs)
        rewards_per_func, keys = self._scored
        self._scored = None
        mode = "train" if self.model.training else "eval"
        generations = self.num_generations if mode == "train" else self.num_generations_eval
        weights = self.reward_weights.to(rewards_per_func.device).unsqueeze(0)
        rewards = (rewards_per_func * weights).nansum(dim=1)
        rewards[torch.isnan(rewards_per_func).all(dim=1)] = torch.nan
        values = torch.tensor([self.baselines.value(k) for k in keys], dtype=rewards.dtype, device=rewards.device)
        advantages = baseline_advantages(rewards, values)
        local = output["advantages"].shape[0]
        start = self.accelerator.process_index * local
        mine = advantages[start:start + local].to(output["advantages"].dtype)
        metrics = self._metrics[mode]
        metrics["pace/baseline_mean"].append(values.mean().item())
        metrics["pace/advantage_change"].append((mine - output["advantages"]).abs().mean().item())
        output["advantages"] = mine
        if mode == "train":  # pre-update reads above; the group's rewards join its prompt's baseline afterwards
            self.baselines.last_rho = []
            for g in range(0, len(keys), generations):
                group = [r for r in rewards[g:g + generations].tolist() if not math.isnan(r)]
                if group:
                    self.baselines.update(keys[g], group)
            if self.baselines.last_rho:
                metrics["pace/rho_mean"].append(sum(self.baselines.last_rho) / len(self.baselines.last_rho))
            metrics["pace/tracked_prompts"].append(float(len(self.baselines.table)))
        return output

    def _save_checkpoint(self, model, trial):
        super()._save_checkpoint(model, trial)
        if self.args.should_save:
            folder = Path(self._get_output_dir(trial)) / f"checkpoint-{self.state.global_step}"
            if folder.is_dir():
                self.baselines.save(folder / BASELINES_FILE)

    def _load_optimizer_and_scheduler(self, checkpoint):
        super()._load_optimizer_and_scheduler(checkpoint)
        if checkpoint and (Path(checkpoint) / BASELINES_FILE).is_file():  # resuming: the baselines come back too
            self.baselines.load(Path(checkpoint) / BASELINES_FILE)
