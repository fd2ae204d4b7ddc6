"""The ModelForge tasks beside text generation: summarization (seq2seq) and extractive QA (start/end positions),
trained with plain transformers trainers."""

from __future__ import annotations

from dataclasses import dataclass

import datasets
import transformers

from forgeway.core.generation import Task


@dataclass(frozen=True)
class TaskPlan:
    """How one task trains: its dataset format, model class, pipeline name and whether perplexity means anything."""

    task: Task
    format: str
    model_class: str
    pipeline_task: str
    perplexity: bool


TASKS: dict[Task, TaskPlan] = {
    Task.SUMMARIZATION: TaskPlan(Task.SUMMARIZATION, "summarization", "AutoModelForSeq2SeqLM", "summarization", True),
    Task.EXTRACTIVE_QA: TaskPlan(Task.EXTRACTIVE_QA, "extractive_qa", "AutoModelForQuestionAnswering",
                                 "question-answering", False),
}
DEFAULT_MAX_LENGTH = 384
DEFAULT_TARGET_LENGTH = 128


def tokenize_summaries(rows: datasets.Dataset, tokenizer, max_length: int, max_target: int) -> datasets.Dataset:
    """document -> input_ids; summary -> labels."""

    def encode(batch: dict) -> dict:
        inputs = tokenizer(batch["document"], max_length=max_length, truncation=True)
        inputs["labels"] = tokenizer(text_target=batch["summary"], max_length=max_target, truncation=True)["input_ids"]
        return inputs

    return rows.map(encode, batched=True, remove_columns=rows.column_names)


def tokenize_questions(rows: datasets.Dataset, tokenizer, max_length: int) -> datasets.Dataset:
    """(question, context) pairs -> input_ids with the answer's first and last token as start/end positions;
    an answer cut off by truncation points at position 0, as in the SQuAD recipe."""

    def encode(batch: dict) -> dict:
        enc = tokenizer(batch["question"], batch["context"], max_length=max_length, truncation="only_second",
                        return_offsets_mapping=True, padding="max_length")
        starts, ends = [], []
        for i, offsets in enumerate(enc["offset_mapping"]):
            answer = batch["answers"][i]
            first = int(answer["answer_start"][0])
            last = first + len(answer["text"][0])
            sequence = enc.sequence_ids(i)
            context = [j for j, s in enumerate(sequence) if s == 1]
            start = end = 0
            if context and offsets[context[0]][0] <= first and offsets[context[-1]][1] >= last:
                start = next(j for j in context if offsets[j][1] > first)
                end = next(j for j in reversed(context) if offsets[j][0] < last)
            starts.append(start)
            ends.append(end)
        enc.pop("offset_mapping")
        enc["start_positions"], enc["end_positions"] = starts, ends
        return enc

    return rows.map(encode, batched=True, remove_columns=rows.column_names)


class QuestionAnswerTrainer(transformers.Trainer):
    """A Trainer whose LoRA runs call the model inside peft's QA wrapper (LoRA layers and the saved qa_outputs head in
    place): PeftModelForQuestionAnswering.forward drops token_type_ids, which BERT-style readers need, and the hf
    service serves adapters the same way."""

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        inner = model.get_base_model() if hasattr(model, "get_base_model") else model
        outputs = inner(**inputs)
        return (outputs.loss, outputs) if return_outputs else outputs.loss


def build_task_trainer(plan: TaskPlan, model, tokenizer, common: dict, train: datasets.Dataset,
                       evaluation: datasets.Dataset | None, max_length: int | None, max_target: int | None,
                       callbacks: list):
    """A Seq2SeqTrainer (summarization) or Trainer (extractive QA) over tokenized rows."""
    max_length = max_length or DEFAULT_MAX_LENGTH
    if plan.task is Task.SUMMARIZATION:
        def prepare(rows):
            return tokenize_summaries(rows, tokenizer, max_length, max_target or DEFAULT_TARGET_LENGTH)

        args = transformers.Seq2SeqTrainingArguments(**common)
        collator = transformers.DataCollatorForSeq2Seq(tokenizer, model=model)
        trainer_class = transformers.Seq2SeqTrainer
    else:
        def prepare(rows):
            return tokenize_questions(rows, tokenizer, max_length)

        args = transformers.TrainingArguments(**common)
        collator = transformers.default_data_collator
        trainer_class = QuestionAnswerTrainer
    return trainer_class(
        model=model, args=args, data_collator=collator, train_dataset=prepare(train),
        eval_dataset=prepare(evaluation) if evaluation is not None else None, processing_class=tokenizer,
        callbacks=callbacks,
    )
