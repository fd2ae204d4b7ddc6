"""Reward functions for GRPO, RLOO and online DPO, chosen by name: built-ins plus the `forgeway.rewards` entry points.

A request names a reward as "name" or "name:argument" ("length:200", "regex:^\\d+$", "keywords:cat,dog",
"exact_match:answer"); no code crosses the wire. Out-of-tree rewards register a factory under the entry-point
group `forgeway.rewards`:

    [project.entry-points."forgeway.rewards"]
    my_reward = "my_package.rewards:make_my_reward"

A factory takes the argument (a string, or None when the name has none) and returns a function
`reward(completions: list[str], **columns) -> list[float]`; `columns` holds the dataset's other columns, one value
per completion, as TRL passes them.

AlignTune's reward names (its registry, github Lexsi-Labs/aligntune src/aligntune/rewards/registry.py) are accepted
with its definitions, reimplemented: "length:MIN..MAX" (AlignTune's range, in words; "length:N" stays a target in
characters), diversity, fluency, coherence, brevity, relevance, harmlessness, code_syntax, math_correctness, bleu,
rouge (text_rewards.py) and sentiment, safety, toxicity (classifier_rewards.py: bundled lexicons, VADER and
alt-profanity-check, where AlignTune downloads hub classifiers; or "NAME:/path/to/local/classifier").
AlignTune's other names are refused with the reason (REFUSED). A GRPO-family request that names no reward function
and no reward model gets AlignTune's default set (ALIGNTUNE_DEFAULTS, from its TRL GRPO backend's setup_rewards).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from importlib.metadata import entry_points
from pathlib import Path

from forgeway.core.errors import InvalidArgument, Unsupported

from .classifier_rewards import CLASSIFIER_REWARDS, is_path
from .text_rewards import TEXT_REWARDS, parse_range, per_text, text_of, word_range

ENTRY_POINT_GROUP = "forgeway.rewards"
MAX_ARGUMENT = 256

RewardFunc = Callable[..., list[float]]
Factory = Callable[[str | None], RewardFunc]


def length(argument: str | None) -> RewardFunc:
    """"length:N": 1 at the target length in characters (default 100), falling linearly to 0 at twice or zero length.
    "length:MIN..MAX": AlignTune's LengthReward, 1 for MIN..MAX words, else 0."""
    if argument and ".." in argument:
        return per_text(word_range(*parse_range(argument, (10, 500))))
    target = int(argument) if argument else 100
    if target < 1:
        raise ValueError("the target length must be a positive number of characters")

    def reward(completions, **_) -> list[float]:
        return [max(0.0, 1.0 - abs(len(text_of(c)) - target) / target) for c in completions]

    return reward


def regex(argument: str | None) -> RewardFunc:
    """1 when the completion matches the pattern (re.search), else 0."""
    if not argument:
        raise ValueError("needs a pattern: 'regex:PATTERN'")
    pattern = re.compile(argument, re.DOTALL)

    def reward(completions, **_) -> list[float]:
        return [1.0 if pattern.search(text_of(c)) else 0.0 for c in completions]

    return reward


def think_format(argument: str | None) -> RewardFunc:
    """1 for "<think>...</think> <answer>...</answer>" completions (the R1 format), else 0."""
    return regex(argument or r"^\s*<think>.*?</think>\s*<answer>.*?</answer>\s*$")


def exact_match(argument: str | None) -> RewardFunc:
    """1 when the completion, trimmed and case-folded, equals the row's reference column (default "reference")."""
    column = argument or "reference"

    def reward(completions, **columns) -> list[float]:
        if column not in columns:
            raise KeyError(f"exact_match needs the dataset column {column!r}")
        return [1.0 if text_of(c).strip().casefold() == str(ref).strip().casefold() else 0.0
                for c, ref in zip(completions, columns[column], strict=True)]

    reward.columns = (column,)  # type: ignore[attr-defined]
    return reward


def json_valid(argument: str | None) -> RewardFunc:
    """1 when the completion (without a ``` fence) parses as JSON, else 0."""

    def reward(completions, **_) -> list[float]:
        scores = []
        for c in completions:
            text = re.sub(r"^\s*```(?:json)?\s*|\s*```\s*$", "", text_of(c))
            try:
                json.loads(text)
                scores.append(1.0)
            except ValueError:
                scores.append(0.0)
        return scores

    return reward


def keywords(argument: str | None) -> RewardFunc:
    """The fraction of keywords present (case-insensitive): from the argument "a,b,c", else the row's "keywords"."""
    fixed = [k.strip().casefold() for k in argument.split(",") if k.strip()] if argument else None

    def reward(completions, **columns) -> list[float]:
        rows = [fixed] * len(completions) if fixed else columns.get("keywords")
        if rows is None:
            raise KeyError("keywords needs 'keywords:a,b' or a dataset column 'keywords'")
        scores = []
        for c, words in zip(completions, rows, strict=True):
            words = [w.casefold() for w in (words.split(",") if isinstance(words, str) else words)]
            text = text_of(c).casefold()
            scores.append(sum(w in text for w in words) / len(words) if words else 0.0)
        return scores

    if not fixed:
        reward.columns = ("keywords",)  # type: ignore[attr-defined]
    return reward


BUILTIN: dict[str, Factory] = {
    "length": length,
    "regex": regex,
    "format": think_format,
    "exact_match": exact_match,
    "json_valid": json_valid,
    "keywords": keywords,
    **TEXT_REWARDS,
    **CLASSIFIER_REWARDS,
}

# AlignTune's TRL GRPO backends, given no reward (backends/trl/rl/grpo/grpo.py setup_rewards): these, 0.2 each.
ALIGNTUNE_DEFAULTS: tuple[tuple[str, float], ...] = (
    ("length:20..200", 0.2), ("sentiment", 0.2), ("safety", 0.2), ("diversity", 0.2), ("fluency", 0.2))

_HUB = "needs a hub model; name a local reward model in method_params.reward_model instead"
_RUNS_CODE = "runs the generated code, which a trainer never does"
_NOT_PORTED = "not ported yet (AlignTune's keyword heuristic)"
# AlignTune's registry names that are not built in here, and why.
REFUSED: dict[str, str] = {
    **dict.fromkeys(("bertscore", "semantic_similarity", "reward_model_ensemble"), _HUB),
    "rubric": "asks an LLM judge over the network",
    **dict.fromkeys(("code_execution", "code_correctness", "code_verifiable", "mbpp_reward"), _RUNS_CODE),
    **dict.fromkeys(("image_relevance", "audio_quality"), "a placeholder in AlignTune (a constant 0.5)"),
    "regex_verifiable": "use regex:PATTERN", "json_schema_verifiable": "use json_valid",
    **dict.fromkeys(("factuality", "bias", "politeness", "helpfulness", "honesty", "hallucination", "meteor",
                     "math_reasoning", "logical_consistency", "commonsense", "code_quality", "code_completeness",
                     "instruction_following", "conciseness", "context_relevance", "temporal_consistency",
                     "readability", "engagement", "medical_accuracy", "legal_compliance", "financial_accuracy",
                     "causal_reasoning", "counterfactual_reasoning", "counterfactual_math", "math_verifiable",
                     "sql_verifiable"), _NOT_PORTED),
}


@dataclass(frozen=True)
class Reward:
    """A resolved reward: its request name, weight and function."""

    name: str
    weight: float
    func: RewardFunc

    @property
    def columns(self) -> tuple[str, ...]:
        """Dataset columns the function reads."""
        return getattr(self.func, "columns", ())


class RewardRegistry:
    """Built-in rewards plus those registered under the `forgeway.rewards` entry-point group."""

    def __init__(self) -> None:
        self.factories: dict[str, Factory | str] = {ep.name: ep.value for ep in entry_points(group=ENTRY_POINT_GROUP)}
        self.factories.update(BUILTIN)  # entry points may add names, not replace built-ins

    def names(self) -> list[str]:
        return sorted(self.factories)

    def resolve(self, requested: tuple[tuple[str, float], ...], columns: list[str] | None = None,
                confine: Callable[[Path, str], Path] | None = None) -> list[Reward]:
        """Reward functions for (name[:argument], weight) pairs; InvalidArgument names the bad entry. `confine`
        checks a local classifier path (an argument of a reward marked `reads_model`) against the allowed roots."""
        rewards = []
        for i, (spec, weight) in enumerate(requested):
            where = f"method_params.reward_functions[{i}].name"
            name, _, argument = spec.partition(":")
            if name not in self.factories:
                why = f"AlignTune's {name!r} reward is not available here: {REFUSED[name]}" if name in REFUSED \
                    else f"unknown reward {name!r}"
                raise InvalidArgument(where, f"{why}; allowed: {', '.join(self.names())}")
            if len(argument) > MAX_ARGUMENT:
                raise InvalidArgument(where, f"the argument is longer than {MAX_ARGUMENT} characters")
            factory = self._factory(name)
            if confine is not None and getattr(factory, "reads_model", False) and is_path(argument):
                argument = str(confine(Path(argument), where))
            try:
                func = factory(argument or None)
            except (ValueError, re.error) as exc:
                raise InvalidArgument(where, f"{name}: {exc}") from None
            except ImportError as exc:
                raise Unsupported(where, "trl", f"{name} needs {exc.name}: pip install 'forgeway[trl]'") \
                    from None
            func.__name__ = name  # TRL logs rewards/<name>/mean
            reward = Reward(spec, weight, func)
            missing = [c for c in reward.columns if columns is not None and c not in columns]
            options = getattr(func, "any_column", ())
            if columns is not None and options and not any(c in columns for c in options):
                missing = [" or ".join(options)]
            if missing:
                raise InvalidArgument(where, f"{name} reads the dataset column {missing[0]!r}; columns: "
                                      f"{', '.join(columns or [])}")
            rewards.append(reward)
        return rewards

    def _factory(self, name: str) -> Factory:
        target = self.factories[name]
        if isinstance(target, str):
            module, _, attr = target.partition(":")
            import importlib

            target = getattr(importlib.import_module(module), attr)
            self.factories[name] = target
        return target
