"""AlignTune's dataset shapes in the format table (alpaca, hh-rlhf, UltraFeedback, its column heuristics, hub names),
and the TRL service's split names, generated splits and hub configurations."""

from __future__ import annotations

import datasets
import pytest

from forgeway.core.datasetformats import FORMATS, convert_row, detect, known_formats, row_problems
from forgeway.core.errors import InvalidArgument
from forgeway.services.training.datasets import DatasetStore
from forgeway.services.training.spec import DatasetSpec
from forgeway.services.trl.datasets import DatasetLoader, detect_format, validate_rows
from forgeway.services.trl.splits import generated_splits, select_split

SFT = ("conversational", "prompt_completion", "language_modeling")
PREFERENCE = ("preference",)
PROMPTS = ("prompt_only",)
DIALOGUE = "\n\nHuman: Hi.\n\nAssistant: Hello.\n\nHuman: Where is the cat?\n\nAssistant:"
HH = {"chosen": DIALOGUE + " On the mat.", "rejected": DIALOGUE + " I will not say."}


def scored(*pairs) -> list[dict]:
    return [{"response": text, "overall_score": score} for text, score in pairs]


@pytest.mark.parametrize(("columns", "accepted", "sample", "name"), [
    (["instruction", "input", "output"], SFT, None, "alpaca"),  # three columns outrank ModelForge's input/output
    (["instruction", "output"], SFT, None, "alpaca"),
    (["input", "output"], SFT, None, "input_output"),
    (["prompt", "response"], SFT, None, "prompt_response"),
    (["question", "answer"], SFT, None, "prompt_response"),
    (["problem", "solution", "id"], SFT, None, "prompt_response"),
    (["question", "answer"], PROMPTS, None, "question_reference"),  # gsm8k for GRPO: the answer stays for rewards
    (["prompt", "answer"], PROMPTS, None, "prompt_only"),
    (["chosen", "rejected"], PREFERENCE, None, "preference"),
    (["chosen", "rejected"], PREFERENCE, HH, "hh_rlhf"),  # by content: Human/Assistant dialogues
    (["chosen", "rejected"], PREFERENCE, {"chosen": "On the mat.", "rejected": "No."}, "preference"),
    (["prompt", "chosen", "rejected"], PREFERENCE, {"prompt": "Hi", **HH}, "preference"),  # a prompt column wins
    (["instruction", "completions", "models"], PREFERENCE, None, "ultrafeedback"),
    (["question", "chosen", "rejected"], PREFERENCE, None, "response_pair"),
    (["prompt", "better_response", "worse_response"], PREFERENCE, None, "response_pair"),
    (["prompt", "prompt_id", "messages"], SFT, None, "conversational"),  # ultrachat_200k
    (["prompt", "chosen", "rejected", "messages"], PREFERENCE, None, "preference"),  # ultrafeedback_binarized
])
def test_detection_of_aligntune_shapes(columns, accepted, sample, name):
    assert detect(columns, accepted, sample).name == name


@pytest.mark.parametrize(("hub", "columns", "accepted", "name"), [
    ("tatsu-lab/alpaca", ["instruction", "input", "output", "text"], SFT, "alpaca"),  # not text
    ("yahma/alpaca-cleaned", ["instruction", "input", "output"], SFT, "alpaca"),
    ("Anthropic/hh-rlhf", ["chosen", "rejected"], PREFERENCE, "hh_rlhf"),  # no sample needed
    ("HuggingFaceH4/ultrafeedback_binarized", ["prompt", "chosen", "rejected", "messages"], PROMPTS, "prompt_only"),
    ("openbmb/UltraFeedback", ["instruction", "completions"], PREFERENCE, "ultrafeedback"),
    ("openai/gsm8k", ["question", "answer"], SFT, "prompt_response"),
    ("openai/gsm8k", ["question", "answer"], PROMPTS, "question_reference"),
    ("tatsu-lab/alpaca", ["prompt", "completion"], SFT, "prompt_completion"),  # a name whose columns do not fit
])
def test_known_hub_names_come_before_columns_and_are_checked_against_them(hub, columns, accepted, name):
    assert detect(columns, accepted, name=hub).name == name


def test_the_longest_known_name_wins_and_other_names_know_nothing():
    assert known_formats("HuggingFaceH4/ultrafeedback_binarized")[0] == "preference"
    assert known_formats("openbmb/UltraFeedback") == ("ultrafeedback",)
    assert known_formats("someone/cats") == ()
    assert detect(["text"], SFT, name="Anthropic/hh-rlhf").name == "language_modeling"


def test_alpaca_joins_a_non_empty_input_to_the_instruction():
    shape = FORMATS["alpaca"]
    assert convert_row(shape, {"instruction": "Add.", "input": "2 and 3", "output": "5"}) == \
        {"prompt": "Add.\n\n2 and 3", "completion": "5"}
    assert convert_row(shape, {"instruction": "Say hi.", "input": "", "output": "Hi", "id": 4}) == \
        {"prompt": "Say hi.", "completion": "Hi", "id": 4}
    assert convert_row(shape, {"instruction": "Say hi.", "output": "Hi"}) == {"prompt": "Say hi.", "completion": "Hi"}
    assert row_problems(shape, {"instruction": "Say hi.", "input": "", "output": "Hi"}) == []  # input may be empty
    assert row_problems(shape, {"instruction": "Say hi.", "input": None, "output": "Hi"}) == []
    assert convert_row(shape, {"instruction": "Say hi.", "input": " ", "output": "Hi"})["prompt"] == "Say hi."
    assert row_problems(shape, {"instruction": " ", "input": 3, "output": ["x"]}) == [
        ("instruction", "missing or empty"), ("output", "must be text, not a list"), ("input", "must be text, not int")]


def test_hh_rlhf_splits_the_shared_dialogue_off_as_the_prompt():
    row = convert_row(FORMATS["hh_rlhf"], dict(HH))
    assert row == {"prompt": DIALOGUE, "chosen": " On the mat.", "rejected": " I will not say."}
    assert row["prompt"] + row["chosen"] == HH["chosen"]  # nothing lost, nothing added
    assert row_problems(FORMATS["hh_rlhf"], {"chosen": "On the mat.", "rejected": DIALOGUE + " No."}) == [
        ("chosen", "must be a Human/Assistant dialogue with a '\\n\\nAssistant:' turn (hh-rlhf)")]


def test_ultrafeedback_takes_the_best_and_the_worst_completion():
    shape = FORMATS["ultrafeedback"]
    row = {"instruction": "Where is the cat?", "models": ["a", "b", "c"],
           "completions": scored(("Fine.", 6.5), ("On the mat.", 9), ("Dunno.", 2))}
    assert convert_row(shape, row) == {"prompt": "Where is the cat?", "models": ["a", "b", "c"],
                                       "chosen": "On the mat.", "rejected": "Dunno."}
    # AlignTune's `overall` and a `text` field are read too; ties keep the order (first best, last worst)
    tied = [{"text": "A", "overall": 5}, {"response": "B", "overall_score": 5}]
    assert convert_row(shape, {"instruction": "q", "completions": tied})["chosen"] == "A"
    assert convert_row(shape, {"instruction": "q", "completions": tied})["rejected"] == "B"
    assert row_problems(shape, {"instruction": "q", "completions": scored(("only one", 3))}) == [
        ("completions", "must be a list of at least two scored completions")]
    assert row_problems(shape, {"instruction": "q", "completions": [{"response": "A"}, {"response": "", "overall": 2},
                                                                    {"response": "C", "overall_score": 1}]}) == [
        ("completions[0]", "needs a non-empty response or text and a numeric overall_score or overall"),
        ("completions[1]", "needs a non-empty response or text and a numeric overall_score or overall")]


def test_heuristic_columns_are_renamed_and_the_rest_kept():
    assert convert_row(FORMATS["prompt_response"], {"question": "q", "answer": "a", "query": "other"}) == \
        {"prompt": "q", "completion": "a", "query": "other"}  # only the resolved alternative is renamed
    assert convert_row(FORMATS["question_reference"], {"question": "2+2?", "answer": "#### 4"}) == \
        {"prompt": "2+2?", "answer": "#### 4"}
    assert convert_row(FORMATS["response_pair"], {"question": "q", "chosen_response": "c", "rejected_text": "r"}) \
        == {"prompt": "q", "chosen": "c", "rejected": "r"}


def test_validation_lists_every_bad_row_at_once_naming_row_and_column():
    rows = datasets.Dataset.from_list([
        {"instruction": "Say hi.", "input": "", "output": "Hi"},
        {"instruction": "", "input": "", "output": "Hi"},
        {"instruction": "Say bye.", "input": "", "output": " "},
    ])
    shape = detect_format(rows.column_names, SFT, "dataset", "method sft")
    with pytest.raises(InvalidArgument) as caught:
        validate_rows(rows, shape, "dataset", 2)
    assert caught.value.violations == [("dataset.rows[1].instruction", "missing or empty"), ("dataset.rows[2].output",
                                                                                "missing or empty")]
    hh = datasets.Dataset.from_list([HH, {"chosen": DIALOGUE + " Yes.", "rejected": "No."}])
    shape = detect_format(hh.column_names, PREFERENCE, "dataset", "method dpo", hh[0])
    with pytest.raises(InvalidArgument) as caught:
        validate_rows(hh, shape, "dataset", 2)
    assert caught.value.field == "dataset.rows[1].rejected"
    good = validate_rows(hh.select([0]), shape, "dataset", 1)
    assert good.to_list() == [{"chosen": " On the mat.", "rejected": " I will not say.", "prompt": DIALOGUE}]


def test_a_renamed_column_clashing_with_one_the_dataset_has_is_refused():
    rows = datasets.Dataset.from_list([{"instruction": "a", "output": "b", "prompt": "c"}] * 2)
    with pytest.raises(InvalidArgument) as caught:
        validate_rows(rows, FORMATS["alpaca"], "dataset", 2)
    assert caught.value.field == "dataset.columns" and "'instruction' as 'prompt'" in caught.value.message


def numbered(n: int) -> datasets.Dataset:
    return datasets.Dataset.from_list([{"text": f"row {i}"} for i in range(n)])


def test_split_names_are_read_as_aligntune_normalises_them():
    splits = datasets.DatasetDict({"train_sft": numbered(4), "test_prefs": numbered(2), "valid": numbered(3)})
    sizes = [len(select_split(splits, name, "dataset.split")[0]) for name in ("train", "validation", "test")]
    assert sizes == [4, 3, 2]
    assert select_split(splits, "train", "dataset.split")[1] == {"split_source": "train_sft"}
    assert select_split(splits, "train_sft[:50%]", "dataset.split")[0]["text"] == ["row 0", "row 1"]
    with pytest.raises(InvalidArgument) as caught:
        select_split(datasets.DatasetDict({"train": numbered(4), "test": numbered(2)}), "validation", "dataset.split")
    assert caught.value.field == "dataset.split"
    assert "no split 'validation'; available: train, test" in caught.value.message


def test_one_split_gets_train_validation_and_test_generated_80_10_10_with_seed_42():
    rows = numbered(20)
    parts = generated_splits(rows, "dataset.split")
    assert [len(parts[name]) for name in ("train", "validation", "test")] == [16, 2, 2]
    texts = [set(parts[name]["text"]) for name in ("train", "validation", "test")]
    assert set().union(*texts) == set(rows["text"]) and sum(map(len, texts)) == 20  # disjoint, all rows
    # AlignTune's SplitGenerator: test first, then validation from the rest, both with seed 42
    first = rows.train_test_split(test_size=0.1, seed=42)
    assert parts["test"]["text"] == first["test"]["text"]
    assert parts["validation"]["text"] == first["train"].train_test_split(test_size=0.1 / 0.9, seed=42)["test"]["text"]
    one = datasets.DatasetDict({"train": rows})
    validation, found = select_split(one, "validation", "eval_dataset.split")
    assert validation["text"] == parts["validation"]["text"] and "80/10/10" in found["split_generated"]
    assert len(select_split(one, "train", "dataset.split")[0]) == 20  # asked as it is: the whole split
    assert select_split(one, "train", "dataset.split", generate=True)[0]["text"] == parts["train"]["text"]
    with pytest.raises(InvalidArgument) as caught:
        select_split(datasets.DatasetDict({"train": numbered(2)}), "test", "eval_dataset.split")
    assert caught.value.field == "eval_dataset.split" and "too few" in caught.value.message


@pytest.fixture
def loader(tmp_path):
    root = tmp_path / "allowed"
    root.mkdir()
    return DatasetLoader(lambda path, field_name: path.resolve(), DatasetStore(tmp_path / "uploads", 1 << 20),
                         tmp_path / "cache"), root


def test_a_hub_config_name_is_passed_to_datasets_and_recorded(loader, tmp_path, monkeypatch):
    """A folder named like a hub id (datasets reads a local folder before the hub) with two configurations."""
    load, root = loader
    repo = tmp_path / "hub" / "someone" / "qa-sets"
    repo.mkdir(parents=True)
    (repo / "small.jsonl").write_text('{"question": "q1", "answer": "a1"}\n{"question": "q2", "answer": "a2"}\n')
    (repo / "big.jsonl").write_text("".join(f'{{"question": "q{i}", "answer": "a"}}\n' for i in range(5)))
    (repo / "README.md").write_text("---\nconfigs:\n- config_name: small\n  data_files: small.jsonl\n"
                                    "- config_name: big\n  data_files: big.jsonl\n---\n")
    monkeypatch.chdir(tmp_path / "hub")
    rows, provenance = load.load(DatasetSpec("hub", "someone/qa-sets", config_name="big"), "dataset")
    assert len(rows) == 5 and provenance["config_name"] == "big" and provenance["hub_name"] == "someone/qa-sets"
    rows, provenance = load.load(DatasetSpec("hub", "someone/qa-sets", config_name="small"), "dataset")
    assert len(rows) == 2 and provenance["config_name"] == "small"
    for config in ("huge", ""):
        with pytest.raises(InvalidArgument) as caught:
            load.load(DatasetSpec("hub", "someone/qa-sets", config_name=config), "dataset")
        assert caught.value.field == "dataset.config_name" and "small" in caught.value.message
    with pytest.raises(InvalidArgument) as caught:
        load.load(DatasetSpec("path", str(repo / "small.jsonl"), config_name="small"), "eval_dataset")
    assert caught.value.field == "eval_dataset.config_name"


def test_hh_rlhf_gives_the_grpo_family_its_prompts():
    row = {"chosen": "\n\nHuman: Hi\n\nAssistant: Hello.", "rejected": "\n\nHuman: Hi\n\nAssistant: Go."}
    shape = detect(["chosen", "rejected"], ("prompt_only",), sample=row)
    assert shape.name == "hh_rlhf_prompts" and convert_row(shape, dict(row))["prompt"] == "\n\nHuman: Hi\n\nAssistant:"
    assert detect(["chosen", "rejected"], ("preference", "prompt_only"), sample=row).name == "hh_rlhf"
    plain = {"chosen": "Hello.", "rejected": "Go."}  # no dialogue: no prompt to split off
    assert detect(["chosen", "rejected"], ("prompt_only",), sample=plain) is None


def test_columns_matching_no_format_get_the_formats_and_a_column_mapping_that_would_fix_them():
    with pytest.raises(InvalidArgument) as error:
        detect_format(["question", "reply"], ("conversational", "prompt_completion", "language_modeling"), "dataset",
                      "method sft", sample={"question": "Where?", "reply": "There."})
    (where, why), = error.value.violations
    assert where == "dataset.columns" and "prompt_completion: prompt, completion" in why
    assert why.endswith('for example column_mapping={"question": "prompt", "reply": "completion"}')
