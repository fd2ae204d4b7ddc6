"""AlignTune's rule-based text rewards (its rewards/core.py definitions), each scoring one completion in [0, 1].

Ported from AlignTune's reward classes (github Lexsi-Labs/aligntune, src/aligntune/rewards/core.py), reimplemented
here; where a definition was loose the change is named at the function (connectors are matched as whole words, not
as substrings: AlignTune's counts "or" inside "for"). The classifier rewards (sentiment, safety, toxicity) live in
classifier_rewards.py; the registry and its other built-ins in rewards.py.
"""

from __future__ import annotations

import ast
import math
import operator
import re
import statistics
from collections.abc import Callable

RewardFunc = Callable[..., list[float]]
Scorer = Callable[[str], float]

# Where AlignTune's GRPO backends look for a row's reference answer, in this order (_combined_reward_function).
REFERENCE_COLUMNS = ("answer", "solution", "reference", "ground_truth", "response", "target")
TRANSITIONS = ("however", "therefore", "moreover", "furthermore", "additionally", "consequently", "thus", "hence",
               "meanwhile", "similarly", "in contrast", "for example")
CONNECTORS = ("and", "but", "or", "because", "so", "then", "when", "if")
ANSWER_WORDS = ("answer", "solution", "result", "conclusion", "therefore", "thus", "in summary")
HARMFUL = tuple(re.compile(p) for p in (r"how\s+to\s+(harm|hurt|kill|destroy|hack|steal|cheat)",
                                         r"instructions?\s+to\s+(harm|hurt|kill|destroy|hack|steal)",
                                         r"ways?\s+to\s+(harm|hurt|kill|destroy|hack|steal)"))
ETHICAL = ("ethical", "responsible", "legal", "appropriate", "safe", "respectful", "considerate", "harmless", "benign")
DISCLAIMERS = ("disclaimer", "warning", "caution", "note that", "important", "should not", "not recommended",
               "not advised")


def text_of(completion) -> str:
    """A completion as text: TRL passes strings, or lists of messages for conversational prompts."""
    if isinstance(completion, list):
        return "".join(str(m.get("content", "")) for m in completion if isinstance(m, dict))
    return str(completion)


def per_text(score: Scorer) -> RewardFunc:
    """A TRL reward function scoring each completion alone."""

    def reward(completions, **_) -> list[float]:
        return [score(text_of(c)) for c in completions]

    return reward


def no_argument(name: str, argument: str | None) -> None:
    if argument:
        raise ValueError(f"{name} takes no argument")


def word_range(low: int, high: int) -> Scorer:
    """AlignTune's LengthReward: 1 when the completion has low..high words (it counts words: text.split()), else 0."""
    return lambda text: 1.0 if low <= len(text.split()) <= high else 0.0


def sentences(text: str) -> list[str]:
    """AlignTune's sentence split: on full stops."""
    return [s.strip() for s in text.split(".") if s.strip()]


def has_word(text: str, phrase: str) -> bool:
    return re.search(rf"\b{re.escape(phrase)}\b", text) is not None


def diversity_score(text: str) -> float:
    """AlignTune's DiversityReward: unique-word ratio x 1.5 (up to 0.5) plus sentence-length spread (stdev / 10, up to
    0.5)."""
    words = text.lower().split()
    if not words:
        return 0.0
    score = min(len(set(words)) / len(words) * 1.5, 0.5)
    lengths = [len(s.split()) for s in sentences(text)]
    if len(lengths) > 1:
        score += min(statistics.stdev(lengths) / 10, 0.5)
    return min(score, 1.0)


def fluency_score(text: str) -> float:
    """AlignTune's FluencyReward: capitalised sentences, punctuation and 5..25 words a sentence (up to 0.6), transition
    words (0.2) and connectors (0.02 each, up to 0.2)."""
    if not text.strip():
        return 0.0
    parts = sentences(text)
    grammar = 0.3 * sum(s[0].isupper() for s in parts) / len(parts) if parts else 0.0
    grammar += (0.2 if "." in text else 0.0) + (0.1 if "," in text else 0.0)
    if 5 <= len(text.split()) / max(len(parts), 1) <= 25:
        grammar += 0.4
    lower = text.lower()
    coherence = 0.2 if any(has_word(lower, t) for t in TRANSITIONS) else 0.0
    coherence += min(sum(has_word(lower, c) for c in CONNECTORS) / 10, 0.2)
    return min(min(grammar, 0.6) + coherence, 1.0)


def coherence_score(text: str) -> float:
    """AlignTune's CoherenceReward: at least two sentences; the mean of (words a sentence / 20, up to 1) and
    (1 - variance of sentence lengths / 100, at least 0)."""
    lengths = [len(s.split()) for s in sentences(text)]
    if len(lengths) < 2:
        return 0.0
    return (min(1.0, statistics.fmean(lengths) / 20) + max(0.0, 1.0 - statistics.pvariance(lengths) / 100)) / 2


def harmlessness_score(text: str) -> float:
    """AlignTune's HarmlessnessReward: 1, less 0.5 for each how-to-harm pattern, plus ethical words (0.1 each, up to
    0.3) and disclaimers (0.1 each, up to 0.2), within [0, 1]."""
    lower = text.lower()
    score = 1.0 - 0.5 * sum(bool(p.search(lower)) for p in HARMFUL)
    score += min(0.3, 0.1 * sum(w in lower for w in ETHICAL)) + min(0.2, 0.1 * sum(d in lower for d in DISCLAIMERS))
    return max(0.0, min(1.0, score))


def diversity(argument: str | None) -> RewardFunc:
    no_argument("diversity", argument)
    return per_text(diversity_score)


def fluency(argument: str | None) -> RewardFunc:
    no_argument("fluency", argument)
    return per_text(fluency_score)


def coherence(argument: str | None) -> RewardFunc:
    no_argument("coherence", argument)
    return per_text(coherence_score)


def harmlessness(argument: str | None) -> RewardFunc:
    no_argument("harmlessness", argument)
    return per_text(harmlessness_score)


def brevity(argument: str | None) -> RewardFunc:
    """AlignTune's BrevityReward ("brevity:IDEAL..MAX" words, default 100..300): 1 up to IDEAL words, falling to 0.5
    at MAX, then to 0 at 1.5 x MAX."""
    ideal, limit = parse_range(argument, (100, 300))

    def score(text: str) -> float:
        count = len(text.split())
        if not count:
            return 0.0
        if count <= ideal:
            return 1.0
        if count <= limit:
            return 1.0 - 0.5 * (count - ideal) / (limit - ideal)
        return max(0.0, 0.5 - min((count - limit) / limit, 1.0))

    return per_text(score)


def relevance(argument: str | None) -> RewardFunc:
    """AlignTune's RelevanceReward ("relevance:kw1,kw2"): keywords present (up to 0.5), an answer word (0.3), and
    20..300 words (0.2; 0.1 when shorter)."""
    keywords = [k.strip().lower() for k in (argument or "").split(",") if k.strip()]

    def score(text: str) -> float:
        if not text.strip():
            return 0.0
        lower, count = text.lower(), len(text.split())
        value = min(sum(k in lower for k in keywords) / len(keywords), 0.5) if keywords else 0.0
        value += 0.3 if any(w in lower for w in ANSWER_WORDS) else 0.0
        value += 0.2 if 20 <= count <= 300 else 0.1 if count < 20 else 0.0
        return min(value, 1.0)

    return per_text(score)


def code_syntax(argument: str | None) -> RewardFunc:
    """AlignTune's CodeSyntaxReward: the fraction of ``` fenced blocks that compile as Python (compiled, never run); 0
    without a block. The fence's language tag is dropped (AlignTune compiles it as part of the code)."""
    no_argument("code_syntax", argument)

    def score(text: str) -> float:
        blocks = re.findall(r"```[^\n]*\n(.*?)```", text, re.DOTALL)
        return sum(compiles(b) for b in blocks) / len(blocks) if blocks else 0.0

    return per_text(score)


def compiles(code: str) -> bool:
    try:
        compile(code, "<completion>", "exec")
        return True
    except (SyntaxError, ValueError):
        return False


def math_correctness(argument: str | None) -> RewardFunc:
    """AlignTune's MathCorrectnessReward: with a reference column ("math_correctness:COLUMN", else the first of
    REFERENCE_COLUMNS present), 1 when the final answers match; without one, the fraction of arithmetic in the text
    that holds ("3 * 4 = 12")."""

    def reward(completions, **columns) -> list[float]:
        column = argument or next((c for c in REFERENCE_COLUMNS if c in columns), None)
        if argument and argument not in columns:
            raise KeyError(f"math_correctness needs the dataset column {argument!r}")
        references = columns[column] if column else [None] * len(completions)
        return [answer_score(text_of(c), ref) for c, ref in zip(completions, references, strict=True)]

    if argument:
        reward.columns = (argument,)  # type: ignore[attr-defined]
    return reward


def answer_score(text: str, reference) -> float:
    if reference is None or not str(reference).strip():
        return arithmetic_score(text)
    answer = final_answer(text)
    return 1.0 if answer is not None and same_answer(answer, final_answer(str(reference)) or str(reference)) else 0.0


def final_answer(text: str) -> str | None:
    r"""The last \boxed{...}, else what follows "####" (GSM8K), else "the answer is X", else the last number."""
    for pattern in (r"\\boxed\{([^{}]*)\}", r"####\s*([^\n]+)", r"answer is:?\s*\$?(-?\d[\d,]*(?:\.\d+)?|[^\s,.]+)"):
        found = re.findall(pattern, text, re.IGNORECASE)
        if found:
            return found[-1].strip()
    numbers = re.findall(r"-?\d[\d,]*\.?\d*", text)
    return numbers[-1] if numbers else None


def same_answer(answer: str, reference: str) -> bool:
    def number(s: str) -> float | None:
        try:
            return float(s.replace(",", "").replace("$", "").rstrip("."))
        except ValueError:
            return None

    a, b = number(answer), number(reference)
    if a is not None and b is not None:
        return math.isclose(a, b, rel_tol=1e-6, abs_tol=1e-9)
    return answer.strip().rstrip(".").casefold() == reference.strip().rstrip(".").casefold()


_OPS = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul, ast.Div: operator.truediv}
_EXPRESSION = r"\d+\.?\d*\s*[+\-*/]\s*\d+\.?\d*"


def arithmetic_score(text: str) -> float:
    """AlignTune's fallback: expressions that evaluate, and equations whose sides agree, over all found; 0 if none."""
    checks = [evaluate(e) is not None for e in re.findall(_EXPRESSION, text)]
    for left, right in re.findall(rf"({_EXPRESSION})\s*=\s*(\d+\.?\d*)", text):
        value = evaluate(left)
        checks.append(value is not None and math.isclose(value, float(right), abs_tol=1e-6))
    return sum(checks) / len(checks) if checks else 0.0


def evaluate(expression: str) -> float | None:
    """One binary arithmetic expression, evaluated without eval()."""
    try:
        node = ast.parse(expression, mode="eval").body
        if isinstance(node, ast.BinOp) and type(node.op) in _OPS and all(
                isinstance(n, ast.Constant) for n in (node.left, node.right)):
            return float(_OPS[type(node.op)](node.left.value, node.right.value))
    except (SyntaxError, ZeroDivisionError):
        pass
    return None


def reference_reward(name: str, argument: str | None, score: Callable[[str, str], float]) -> RewardFunc:
    """A reward comparing each completion with its row's reference: the column named by the argument, else the first
    of REFERENCE_COLUMNS the dataset has (AlignTune's order)."""

    def reward(completions, **columns) -> list[float]:
        column = argument or next((c for c in REFERENCE_COLUMNS if c in columns), None)
        if column is None or column not in columns:
            raise KeyError(f"{name} needs a reference column: {argument or ', '.join(REFERENCE_COLUMNS)}")
        return [score(text_of(c), str(ref)) for c, ref in zip(completions, columns[column], strict=True)]

    if argument:
        reward.columns = (argument,)  # type: ignore[attr-defined]
    else:
        reward.any_column = REFERENCE_COLUMNS  # type: ignore[attr-defined]
    return reward


def bleu(argument: str | None) -> RewardFunc:
    """AlignTune's BLEUReward: sacrebleu's sentence BLEU against the reference, / 100."""
    import sacrebleu

    return reference_reward("bleu", argument, lambda text, ref: sacrebleu.sentence_bleu(text, [ref]).score / 100)


def rouge(argument: str | None) -> RewardFunc:
    """AlignTune's ROUGEReward: rouge_score's ROUGE-L F1 (with stemming) against the reference."""
    from rouge_score import rouge_scorer

    scorer = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=True)
    return reference_reward("rouge", argument, lambda text, ref: scorer.score(ref, text)["rougeL"].fmeasure)


def parse_range(argument: str | None, default: tuple[int, int]) -> tuple[int, int]:
    """"LOW..HIGH" as two whole numbers, 0 <= LOW < HIGH."""
    if not argument:
        return default
    low, sep, high = argument.partition("..")
    if not sep or not low.strip().isdigit() or not high.strip().isdigit() or int(low) >= int(high):
        raise ValueError(f"expected LOW..HIGH with whole numbers LOW < HIGH, got {argument!r}")
    return int(low), int(high)


TEXT_REWARDS = {
    "diversity": diversity,
    "fluency": fluency,
    "coherence": coherence,
    "brevity": brevity,
    "relevance": relevance,
    "harmlessness": harmlessness,
    "code_syntax": code_syntax,
    "math_correctness": math_correctness,
    "bleu": bleu,
    "rouge": rouge,
}
