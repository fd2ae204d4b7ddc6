"""AlignTune's classifier rewards (sentiment, safety, toxicity): bundled lexicons offline, or a local classifier.

AlignTune scores these with hub models (cardiffnlp/twitter-roberta-base-sentiment-latest, unitary/toxic-bert) through
a transformers pipeline. With no hub here, the default is a maintained PyPI package whose data ships inside it:

- sentiment: VADER (vaderSentiment; its lexicon and rules are bundled). The probability of the target sentiment is
  read off VADER's compound score c in [-1, 1]: (1 + c) / 2 for "positive" (the default), (1 - c) / 2 for "negative".
- safety, toxicity: alt-profanity-check (a linear SVM trained on toxic comments, its model bundled): 1 - P(offensive).

An argument that is a path ("sentiment:/models/my-classifier") names a local transformers sequence classifier run by
a text-classification pipeline, scored by AlignTune's rule: the top label's score when it is the wanted label (the
target sentiment; "non-toxic", "safe" or "clean" for safety; "non-toxic" or "safe" for toxicity), else 1 - score.
The path must lie inside the trainer's allowed roots (checked when the request is planned).
"""

from __future__ import annotations

import threading
from pathlib import Path

from .text_rewards import RewardFunc, text_of

TARGETS = ("positive", "negative")
SAFE_LABELS = {"safety": ("non-toxic", "safe", "clean"), "toxicity": ("non-toxic", "safe")}


def is_path(argument: str | None) -> bool:
    """Whether a classifier reward's argument names a local model folder rather than an option."""
    return bool(argument) and ("/" in argument or "\\" in argument or argument.startswith("."))


def classifier_folder(argument: str) -> str:
    if not (Path(argument) / "config.json").is_file():
        raise ValueError(f"{argument} is not a transformers model folder (no config.json)")
    return argument


class LocalClassifier:
    """A text-classification pipeline on a local folder, loaded at the first call; (label, score) of the top class."""

    def __init__(self, path: str):
        self.path = path
        self._pipeline = None
        self._lock = threading.Lock()

    def top(self, texts: list[str]) -> list[tuple[str, float]]:
        with self._lock:
            if self._pipeline is None:
                from transformers import pipeline

                self._pipeline = pipeline("text-classification", model=self.path, device="cpu")
            results = self._pipeline(texts, truncation=True)
        return [(r["label"].lower(), float(r["score"])) for r in results]


def label_reward(classifier: LocalClassifier, wanted: tuple[str, ...]) -> RewardFunc:
    """AlignTune's rule: the top label's score when it is a wanted label, else 1 - score."""

    def reward(completions, **_) -> list[float]:
        texts = [text_of(c) for c in completions]
        return [score if label in wanted else 1.0 - score for label, score in classifier.top(texts)]

    reward.model_path = classifier.path  # type: ignore[attr-defined]
    return reward


def sentiment(argument: str | None) -> RewardFunc:
    """The probability that a completion has the target sentiment: "sentiment[:positive|negative|PATH]"."""
    if is_path(argument):
        return label_reward(LocalClassifier(classifier_folder(argument)), ("positive",))
    target = argument or "positive"
    if target not in TARGETS:
        raise ValueError(f"the target sentiment must be one of {', '.join(TARGETS)} or a local classifier path, "
                         f"not {target!r}")
    from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer

    analyzer, sign = SentimentIntensityAnalyzer(), 1.0 if target == "positive" else -1.0

    def reward(completions, **_) -> list[float]:
        return [(1.0 + sign * analyzer.polarity_scores(text_of(c))["compound"]) / 2 for c in completions]

    return reward


def _clean(name: str):
    def factory(argument: str | None) -> RewardFunc:
        if is_path(argument):
            return label_reward(LocalClassifier(classifier_folder(argument)), SAFE_LABELS[name])
        if argument:
            raise ValueError(f"{name} takes no option; its argument may be a local classifier path")
        from profanity_check import predict_prob

        def reward(completions, **_) -> list[float]:
            if not completions:
                return []
            return [1.0 - float(p) for p in predict_prob([text_of(c) for c in completions])]

        return reward

    factory.__doc__ = f"1 - P(offensive) of a completion: \"{name}[:PATH]\"."
    factory.reads_model = True  # type: ignore[attr-defined]
    return factory


safety = _clean("safety")
toxicity = _clean("toxicity")
sentiment.reads_model = True  # type: ignore[attr-defined]

CLASSIFIER_REWARDS = {"sentiment": sentiment, "safety": safety, "toxicity": toxicity}
