"""metaes (AlignTune's Meta-ES): evolution strategies over nmgrpo's mirror map, then a full nmgrpo run with it."""

from __future__ import annotations

import copy
import gc
import tempfile

import torch
from transformers import PrinterCallback, ProgressCallback, set_seed
from transformers.trainer_utils import IntervalStrategy, SaveStrategy

from . import mirror
from .knobs import Violations, field, read, require, within
from .mirror import MirrorMap, NeuralMirrorGRPOTrainer

# The proto's defaults, scaled to a short search; AlignTune's own runs use larger populations and 15 iterations.
MESSAGE = "meta_es"
DEFAULTS = {"population": 4, "sigma": 0.02, "meta_learning_rate": 0.01, "generations": 2, "inner_steps": 2}


def knobs(params: dict[str, dict]) -> dict:
    """The meta_es knobs: each set value, else its default, typed like the default."""
    return {name: type(DEFAULTS[name])(value) for name, value in read(params, MESSAGE, DEFAULTS).items()}


def check(params: dict[str, dict]) -> Violations:
    """Violations in method_params.mirror and method_params.meta_es, before any model loads."""
    k = read(params, MESSAGE, DEFAULTS)
    errors = mirror.check(params)
    if int(k["population"]) < 2 or int(k["population"]) % 2:
        errors.append((field(MESSAGE, "population"), "must be an even number of at least 2 (perturbations come in "
                       f"mirrored pairs), got {k['population']}"))
    errors += [e for name in ("sigma", "meta_learning_rate") for e in within(MESSAGE, name, k[name], above=0.0)]
    errors += [e for name in ("generations", "inner_steps") for e in within(MESSAGE, name, k[name], at_least=1)]
    return errors


def antithetic(population: int, dim: int, seed: int) -> torch.Tensor:
    """population standard normal directions in mirrored pairs: e1, -e1, e2, -e2, ..."""
    half = torch.randn(population // 2, dim, generator=torch.Generator().manual_seed(seed))
    return torch.stack([half, -half], dim=1).reshape(population, dim)


def es_step(phi: torch.Tensor, directions: torch.Tensor, fitness: list[float], sigma: float,
            learning_rate: float) -> torch.Tensor:
    """AlignTune's update: phi + lr / (n sigma) x sum f_i e_i over the n candidates that scored above 0."""
    scores = torch.tensor(fitness, dtype=phi.dtype)
    scored = scores > 0
    if not scored.any():
        return phi
    gradient = (scores[scored].unsqueeze(1) * directions[scored]).sum(0) / (int(scored.sum()) * sigma)
    return phi + learning_rate * gradient


class _Candidate(NeuralMirrorGRPOTrainer):
    """One short nmgrpo run under a candidate map; remembers the mean reward of each generated batch."""

    def __init__(self, *args, **kwargs):
        self.rewards: list[float] = []
        super().__init__(*args, **kwargs)

    def _generate_and_score_completions(self, inputs):
        output = super()._generate_and_score_completions(inputs)
        if self.model.training:
            self.rewards.append(self._metrics["train"]["reward"][-1])
        return output


class MetaESTrainer(NeuralMirrorGRPOTrainer):
    """Searches the mirror map's parameters with antithetic ES (each candidate trains inner_steps of nmgrpo from
    the same starting weights and seed, scored by its mean reward; a generation's update is kept only when its mean
    fitness beats the best so far), then trains the job's steps with the map found."""

    def __init__(self, *args, algorithm: dict[str, dict] | None = None, **kwargs):
        require(check(algorithm or {}))
        self.search = knobs(algorithm or {})
        self._algorithm = algorithm or {}
        self._start = dict(kwargs, model=copy.deepcopy(kwargs["model"]))  # before TRL wraps it in an adapter
        super().__init__(*args, algorithm=algorithm, **kwargs)

    def train(self, *args, **kwargs):
        self.mirror = MirrorMap(self.evolve())
        set_seed(self.args.seed)
        return super().train(*args, **kwargs)

    def evolve(self) -> torch.Tensor:
        s = self.search
        phi, best, done = self.mirror.phi.clone(), float("-inf"), 0
        for generation in range(1, s["generations"] + 1):
            if self._job_stopping():
                break
            directions = antithetic(s["population"], phi.numel(), self.args.seed + generation)
            fitness = [self._score(MirrorMap(phi + s["sigma"] * d), generation, i)
                       for i, d in enumerate(directions)]
            mean = sum(fitness) / len(fitness)
            accepted = mean > best
            if accepted:
                phi, best = es_step(phi, directions, fitness, s["sigma"], s["meta_learning_rate"]), mean
            done = generation
            self._job_log(f"meta-es generation {generation}/{s['generations']}: mean reward {mean:.4f} (max "
                          f"{max(fitness):.4f}), {'accepted' if accepted else 'rejected'}; best {best:.4f}")
        if done:  # reported with the final run's first logged step
            self._metrics["train"]["metaes/generation"].append(float(done))
            self._metrics["train"]["metaes/best_reward"].append(best)
        return phi

    def _score(self, candidate_map: MirrorMap, generation: int, index: int) -> float:
        """Mean reward of inner_steps of nmgrpo under candidate_map, from the starting weights and seed."""
        set_seed(self.args.seed)
        with tempfile.TemporaryDirectory(prefix="metaes-") as scratch:
            args = copy.copy(self.args)
            args.max_steps, args.output_dir, args.report_to = self.search["inner_steps"], scratch, []
            args.save_strategy, args.eval_strategy = SaveStrategy.NO, IntervalStrategy.NO
            args.load_best_model_at_end = False
            start = dict(self._start, model=copy.deepcopy(self._start["model"]), args=args, callbacks=None,
                         eval_dataset=None)
            candidate = _Candidate(algorithm=self._algorithm, mirror_map=candidate_map, **start)
            for noisy in (PrinterCallback, ProgressCallback):
                candidate.remove_callback(noisy)
            candidate.train()
            rewards = candidate.rewards
        del candidate, start
        gc.collect()
        fitness = sum(rewards) / len(rewards) if rewards else 0.0
        self._job_log(f"meta-es generation {generation} candidate {index + 1}: mean reward {fitness:.4f}",
                      level="debug")
        return fitness

    def _jobs(self) -> list:
        """The job handles of this run's callbacks (services/trl/callbacks.py JobCallback), for log lines."""
        return [cb.job for cb in self.callback_handler.callbacks if hasattr(cb, "job")]

    def _job_log(self, text: str, level: str = "info") -> None:
        for job in self._jobs():
            job.log(text, level)

    def _job_stopping(self) -> bool:
        return any(getattr(job, "should_stop", False) for job in self._jobs())
