"""Training dataset formats by their columns: the one table the trainers and the HTTP upload detect and check rows with.

Each format is a set of columns; some are read as they are (TRL's formats), others are renamed or rewritten onto one of
those (ModelForge's `input`/`output` trains as TRL's prompt/completion; AlignTune's alpaca, hh-rlhf and UltraFeedback
rows become prompt/completion or prompt/chosen/rejected). Detection is by column set: among the formats a method or
task accepts, the one with the most of its columns present wins (so `instruction`/`input`/`output` outranks
`input`/`output`), then one whose content test passes on a sample row (hh-rlhf's dialogue markers), ties going to the
accepted order and then to this table's order. A hub dataset known by name (KNOWN_DATASETS) is read as its format
first, when that format is accepted and its columns are there.
Row checks name the row (counted from 0) and the column as the dataset spells it: `rows[3].output`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field

# A required column, or a tuple of alternatives ("answers" or "answer").
Need = str | tuple[str, ...]


@dataclass(frozen=True)
class DatasetFormat:
    """One shape of training examples.

    Args:
        name: the format's name, as provenance and errors show it.
        columns: the columns that identify it and that every row must fill.
        trains_as: the trained (TRL) format it is read as; empty means itself.
        renames: column here -> column of the trained format.
        optional: columns checked when present (a preference dataset's prompt).
        origin: whose dataset shape this is ("trl", "modelforge", "aligntune").
        blank: columns that may hold empty text (alpaca's input).
        kinds: column -> how it is checked, where that differs from its trained column's check.
        rewrite: turns a renamed row into the trained format (alpaca's prompt, hh-rlhf's split dialogue).
        recognizes: a content test on a sample row; the format is only detected when it passes.
    """

    name: str
    columns: tuple[Need, ...]
    trains_as: str = ""
    renames: Mapping[str, str] = field(default_factory=dict)
    optional: tuple[str, ...] = ()
    origin: str = "trl"
    blank: tuple[str, ...] = ()
    kinds: Mapping[str, str] = field(default_factory=dict)
    rewrite: Callable[[dict], dict] | None = None
    recognizes: Callable[[Mapping], bool] | None = None

    @property
    def trained(self) -> str:
        return self.trains_as or self.name

    @property
    def rewritten(self) -> bool:
        """Whether convert_row changes its rows (renamed or rewritten columns, labels made booleans, answers made SQuAD
        lists)."""
        rewrites = self.rewrite is not None or self.trained in ("unpaired_preference", "extractive_qa")
        return bool(self.renames) or rewrites

    def required(self, columns: Iterable[str]) -> list[str]:
        """The columns it reads, alternatives resolved against the dataset's columns (the first one otherwise)."""
        present = set(columns)
        return [next((c for c in need if c in present), need[0]) if isinstance(need, tuple) else need
                for need in self.columns]

    def checked(self, columns: Iterable[str]) -> list[str]:
        """Required columns, then the optional ones the dataset has."""
        present = list(columns)
        return self.required(present) + [c for c in self.optional if c in present]

    def matches(self, columns: Iterable[str]) -> bool:
        present = set(columns)
        return all(c in present for c in self.required(present))

    def renamed(self, columns: Iterable[str]) -> dict[str, str]:
        """The renames that apply to a dataset with these columns: its resolved alternatives only."""
        used = self.checked(columns)
        return {c: self.renames[c] for c in used if c in self.renames and self.renames[c] != c}

    def describe(self) -> str:
        needs = ", ".join("|".join(n) if isinstance(n, tuple) else n for n in self.columns)
        optional = f" (optional {', '.join(self.optional)})" if self.optional else ""
        source = f" [{self.origin}, trains as {self.trained}]" if self.trains_as else ""
        return f"{self.name}: {needs}{optional}{source}"


ASSISTANT, HUMAN = "\n\nAssistant:", "\n\nHuman:"  # hh-rlhf's turn markers
SCORES = ("overall_score", "overall")  # an UltraFeedback completion's score, in the order they are read
RESPONSES = ("response", "text")  # an UltraFeedback completion's text


def _alpaca(row: dict) -> dict:
    """Alpaca's instruction (read as prompt) and optional input as one prompt: "instruction\n\ninput". No "###
    Instruction:/### Response:" template: AlignTune's TRL SFT path maps instruction -> prompt and output -> completion
    and leaves the rest to the chat template (it drops input; we keep it)."""
    extra = row.pop("input", None)
    if isinstance(extra, str) and extra.strip():
        row["prompt"] = f"{row['prompt']}\n\n{extra}"
    return row


def _dialogue(row: dict) -> dict:
    """hh-rlhf's whole dialogues as prompt/chosen/rejected: the prompt is the chosen text up to and including its last
    "\n\nAssistant:" (the shared turns), chosen and rejected what follows each one's last "\n\nAssistant:",
    unstripped, so prompt + chosen is the original text. (AlignTune cuts the prompt at the first marker, which loses
    the earlier turns of a multi-turn dialogue.)"""
    cut = row["chosen"].rindex(ASSISTANT) + len(ASSISTANT)
    row["prompt"], row["chosen"] = row["chosen"][:cut], row["chosen"][cut:]
    row["rejected"] = row["rejected"][row["rejected"].rindex(ASSISTANT) + len(ASSISTANT):]
    return row


def _best_and_worst(row: dict) -> dict:
    """UltraFeedback's scored completions as chosen (the highest overall_score, the first on ties) and rejected (the
    lowest, the last on ties), as AlignTune's preprocess_ultrafeedback does (it reads `overall`; both are read)."""
    completions = row.pop("completions")
    ranked = sorted(completions, key=_score, reverse=True)  # stable: ties keep their order
    row["chosen"], row["rejected"] = _response(ranked[0]), _response(ranked[-1])
    return row


def _score(completion: Mapping) -> float:
    return float(next(completion[k] for k in SCORES if _number(completion.get(k))))


def _response(completion: Mapping) -> str:
    return next(completion[k] for k in RESPONSES if isinstance(completion.get(k), str) and completion[k].strip())


def _is_dialogue(row: Mapping) -> bool:
    """hh-rlhf's content test: chosen is a dialogue of Human/Assistant turns."""
    chosen = row.get("chosen")
    return isinstance(chosen, str) and HUMAN in chosen and ASSISTANT in chosen


# AlignTune's column heuristics (src/aligntune/data/schemas.py and column_schemas.py), as alternatives; names other
# formats read (input/output, text, summary, label, content) are left to those.
PROMPTS = ("prompt", "question", "problem", "query", "instruction", "user_input")
ANSWERS = ("response", "answer", "solution", "output", "target", "ground_truth")
CHOSEN = ("chosen", "chosen_response", "better_response", "winner", "response_j", "positive", "good", "chosen_text")
REJECTED = ("rejected", "rejected_response", "worse_response", "loser", "response_k", "negative", "bad",
            "rejected_text")


def _onto(target: str, names: tuple[str, ...]) -> dict[str, str]:
    return dict.fromkeys(names, target)


FORMATS: dict[str, DatasetFormat] = {f.name: f for f in [
    # The formats TRL and the task trainers read.
    DatasetFormat("preference", ("chosen", "rejected"), optional=("prompt",)),  # TRL extracts an implicit prompt
    DatasetFormat("unpaired_preference", ("prompt", "completion", "label")),
    DatasetFormat("prompt_completion", ("prompt", "completion")),
    DatasetFormat("conversational", ("messages",)),
    DatasetFormat("language_modeling", ("text",)),
    DatasetFormat("extractive_qa", ("context", "question", ("answers", "answer"))),  # SQuAD answers, or one string
    DatasetFormat("summarization", ("document", "summary")),
    DatasetFormat("prompt_only", ("prompt",)),
    # ModelForge's own shapes (its document/summary, context/question/answers and prompt/chosen/rejected are above).
    DatasetFormat("input_output", ("input", "output"), trains_as="prompt_completion",
                  renames={"input": "prompt", "output": "completion"}, origin="modelforge"),
    DatasetFormat("article_summary", ("article", "summary"), trains_as="summarization",
                  renames={"article": "document"}, origin="modelforge"),
    # AlignTune's datasets (its ultrachat/messages and binarized UltraFeedback are TRL's formats above).
    DatasetFormat("alpaca", ("instruction", "output"), trains_as="prompt_completion", optional=("input",),
                  renames={"instruction": "prompt", "output": "completion"}, origin="aligntune", blank=("input",),
                  kinds={"instruction": "text", "output": "text"}, rewrite=_alpaca),
    DatasetFormat("hh_rlhf", ("chosen", "rejected"), trains_as="preference", origin="aligntune",
                  kinds={"chosen": "dialogue", "rejected": "dialogue"}, rewrite=_dialogue, recognizes=_is_dialogue),
    # hh-rlhf for the GRPO family (AlignTune's RL examples): the split-off prompt; chosen/rejected stay as columns
    DatasetFormat("hh_rlhf_prompts", ("chosen", "rejected"), trains_as="prompt_only", origin="aligntune",
                  kinds={"chosen": "dialogue", "rejected": "dialogue"}, rewrite=_dialogue, recognizes=_is_dialogue),
    DatasetFormat("ultrafeedback", ("instruction", "completions"), trains_as="preference", origin="aligntune",
                  renames={"instruction": "prompt"}, kinds={"instruction": "text", "completions": "scored"},
                  rewrite=_best_and_worst),
    DatasetFormat("prompt_response", (PROMPTS, ANSWERS), trains_as="prompt_completion", origin="aligntune",
                  renames={**_onto("prompt", PROMPTS), **_onto("completion", ANSWERS)}),
    # GRPO's prompt and reference (AlignTune's grpo schema): the question is the prompt, the answer stays for rewards
    DatasetFormat("question_reference", (PROMPTS[1:], ANSWERS), trains_as="prompt_only", origin="aligntune",
                  renames=_onto("prompt", PROMPTS[1:]), kinds=dict.fromkeys(ANSWERS, "text")),
    DatasetFormat("response_pair", (PROMPTS, CHOSEN, REJECTED), trains_as="preference", origin="aligntune",
                  renames={**_onto("prompt", PROMPTS), **_onto("chosen", CHOSEN), **_onto("rejected", REJECTED)}),
]}
TRAINED = tuple(dict.fromkeys(f.trained for f in FORMATS.values()))

# Hub datasets AlignTune knows by name (its DataManager.DATASET_PATTERNS, with alpaca and gsm8k): a part of the
# lower-cased hub id (the longest that occurs wins) -> the formats it is read as, the first one accepted that fits.
KNOWN_DATASETS: dict[str, tuple[str, ...]] = {
    "alpaca": ("alpaca",),
    "hh-rlhf": ("hh_rlhf", "hh_rlhf_prompts"),
    "anthropic/hh": ("hh_rlhf", "hh_rlhf_prompts"),
    "ultrafeedback_binarized": ("preference", "conversational", "prompt_only"),
    "ultrafeedback": ("ultrafeedback",),
    "ultrachat": ("conversational", "prompt_only"),
    "human-like-dpo": ("preference",),
    "gsm8k": ("prompt_response", "question_reference"),
}

# How a trained format's column is checked; any other column holds non-empty text.
_KINDS = {"messages": "messages", "prompt": "text_or_messages", "completion": "text_or_messages",
          "chosen": "text_or_messages", "rejected": "text_or_messages", "label": "label", "answers": "answers",
          "answer": "answer"}


def detect(columns: Iterable[str], accepted: Iterable[str] = TRAINED, sample: Mapping | None = None,
           name: str = "") -> DatasetFormat | None:
    """The format of a dataset with these columns among those trained as one of `accepted`; None when none fits.
    `sample` (a row) lets a format with a content test be found; `name` (a hub id) one known by name."""
    present = list(columns)
    order = list(accepted)
    for known in known_formats(name):
        if FORMATS[known].trained in order and FORMATS[known].matches(present):
            return FORMATS[known]
    candidates = sorted((f for f in FORMATS.values() if f.trained in order and f.matches(present)
                         and (f.recognizes is None or (sample is not None and f.recognizes(sample)))),
                        key=lambda f: order.index(f.trained))
    return max(candidates, key=lambda f: (len(f.checked(present)), f.recognizes is not None), default=None)


def known_formats(name: str) -> tuple[str, ...]:
    """The formats a hub dataset is known by (KNOWN_DATASETS); empty for any other name."""
    lowered = name.lower()
    hits = [part for part in KNOWN_DATASETS if part in lowered]
    return KNOWN_DATASETS[max(hits, key=len)] if hits else ()


def candidates(accepted: Iterable[str] = TRAINED) -> list[DatasetFormat]:
    """The formats read as one of `accepted`, for an error message listing what would fit."""
    order = list(accepted)
    return sorted((f for f in FORMATS.values() if f.trained in order), key=lambda f: order.index(f.trained))


def suggest_mapping(columns: Iterable[str], accepted: Iterable[str] = TRAINED,
                    sample: Mapping | None = None) -> dict[str, str] | None:
    """A column_mapping guess that would make a dataset one of the accepted trained formats: the format that would
    use most of the dataset's columns, its columns (optional ones first: a preference prompt) taken from the unused
    ones in order; a text value is never offered as messages. None when nothing lines up."""
    present = list(columns)
    best: tuple[tuple[int, int], dict[str, str]] | None = None
    for shape in (f for f in candidates(accepted) if not f.trains_as):
        needed = shape.required(present)
        wanted = [c for c in (*shape.optional, *needed) if c not in present]
        spare = [c for c in present if c not in needed and c not in shape.optional]
        mapping = dict(zip(spare, wanted))
        if not mapping or any(c not in mapping.values() for c in needed if c not in present):
            continue
        if sample is not None and any(t == "messages" and isinstance(sample.get(c), str) for c, t in mapping.items()):
            continue
        score = (len(mapping), -len(wanted))
        if best is None or score > best[0]:
            best = (score, mapping)
    return best[1] if best else None


def row_problems(shape: DatasetFormat, row: Mapping) -> list[tuple[str, str]]:
    """What is wrong with one example, as (column path, why): missing or empty values, wrong types, labels that are
    not booleans, messages without role or content, answers that are not where they say in the context."""
    problems: list[tuple[str, str]] = []
    for column in shape.checked(row.keys()):
        value = row.get(column)
        if column in shape.blank and (value is None or isinstance(value, str) and not value.strip()):
            continue
        if _empty(value):
            problems.append((column, "missing or empty"))
            continue
        kind = shape.kinds.get(column) or _KINDS.get(shape.renames.get(column, column), "text")
        if kind == "text" and not isinstance(value, str):
            problems.append((column, f"must be text, not {_type(value)}"))
        elif kind == "text_or_messages" and not isinstance(value, str):
            problems += _messages(column, value)
        elif kind == "messages":
            problems += _messages(column, value)
        elif kind == "label" and as_label(value) is None:
            problems.append((column, f"must be true or false, not {value!r}"))
        elif kind in ("answers", "answer") and isinstance(row.get("context"), str):
            problems += _answers(column, value, row["context"])
        elif kind == "dialogue" and not (isinstance(value, str) and ASSISTANT in value):
            problems.append((column, "must be a Human/Assistant dialogue with a '\\n\\nAssistant:' turn (hh-rlhf)"))
        elif kind == "scored":
            problems += _scored(column, value)
    return problems


def convert_row(shape: DatasetFormat, row: Mapping) -> dict:
    """A checked example in its trained format: columns renamed and rewritten, labels as booleans, answers as SQuAD
    lists ({"text": [...], "answer_start": [...]}); other columns kept."""
    renames = shape.renamed(row.keys())
    out = {renames.get(k, k): v for k, v in row.items()}
    if shape.rewrite is not None:
        out = shape.rewrite(out)
    if "label" in shape.checked(row.keys()):
        out["label"] = as_label(out["label"])
    if shape.trained == "extractive_qa":
        if "answer" in out and "answers" not in row:
            text = out.pop("answer")
            out["answers"] = {"text": [text], "answer_start": [out["context"].find(text)]}
        else:
            texts, starts = _spans(out["answers"])
            out["answers"] = {"text": texts, "answer_start": [int(s) for s in starts]}
    return out


def as_label(value) -> bool | None:
    """A KTO label as a boolean (true/false, 1/0, yes/no); None for anything else."""
    if isinstance(value, bool):
        return value
    if isinstance(value, (int, float)) and value in (0, 1):
        return bool(value)
    if isinstance(value, str) and value.strip().lower() in ("true", "false", "1", "0", "yes", "no"):
        return value.strip().lower() in ("true", "1", "yes")
    return None


def _messages(column: str, value) -> list[tuple[str, str]]:
    if not isinstance(value, list):
        return [(column, f"must be text or a list of messages, not {_type(value)}")]
    return [(f"{column}[{i}]", "a message needs a role and non-empty content") for i, m in enumerate(value)
            if not (isinstance(m, Mapping) and isinstance(m.get("role"), str) and m["role"]
                    and not _empty(m.get("content")))]


def _scored(column: str, value) -> list[tuple[str, str]]:
    """UltraFeedback's completions: at least two, each with a response (or text) and a numeric overall_score."""
    if not isinstance(value, list) or len(value) < 2:
        return [(column, "must be a list of at least two scored completions")]
    why = f"needs a non-empty {' or '.join(RESPONSES)} and a numeric {' or '.join(SCORES)}"
    return [(f"{column}[{i}]", why) for i, c in enumerate(value)
            if not (isinstance(c, Mapping) and any(_number(c.get(k)) for k in SCORES)
                    and any(isinstance(c.get(k), str) and c[k].strip() for k in RESPONSES))]


def _number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _spans(answers) -> tuple[list, list]:
    """SQuAD answers with lists or scalars -> (texts, starts) as lists."""
    texts, starts = answers.get("text"), answers.get("answer_start")
    return (texts if isinstance(texts, list) else [texts]), (starts if isinstance(starts, list) else [starts])


def _answers(column: str, value, context: str) -> list[tuple[str, str]]:
    if column == "answer":
        if not isinstance(value, str):
            return [(column, f"must be text, not {_type(value)}")]
        return [] if value in context else [(column, f"{value!r} does not occur in the context")]
    if not isinstance(value, Mapping) or "text" not in value or "answer_start" not in value:
        return [(column, "must be {'text': ..., 'answer_start': ...} (SQuAD's shape; lists or single values)")]
    texts, starts = _spans(value)
    if not texts or len(texts) != len(starts):
        return [(column, f"needs as many answer_start values as texts (got {len(texts)} and {len(starts)})")]
    problems = []
    for i, (text, start) in enumerate(zip(texts, starts, strict=True)):
        where = f"{column}.text[{i}]" if isinstance(value["text"], list) else f"{column}.text"
        if not isinstance(text, str) or not text.strip():
            problems.append((where, "must be non-empty text"))
        elif not isinstance(start, (int, float)) or isinstance(start, bool) or not math.isfinite(start) \
                or start != int(start) or start < 0:
            problems.append((where.replace(".text", ".answer_start"), f"must be a character offset, not {start!r}"))
        elif context[int(start):int(start) + len(text)] != text:
            found = context.find(text)
            hint = f"; it occurs at {found}" if found >= 0 else "; it does not occur in the context"
            problems.append((where, f"{text!r} is not at answer_start {int(start)} of the context{hint}"))
    return problems


def _empty(value) -> bool:
    if value is None:
        return True
    if isinstance(value, str):
        return not value.strip()
    if isinstance(value, (list, dict)):
        return not value
    return False


def _type(value) -> str:
    return {dict: "an object", list: "a list", bool: "a boolean"}.get(type(value), type(value).__name__)
