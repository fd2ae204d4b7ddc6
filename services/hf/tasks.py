"""ModelForge's other tasks: summarization with encoder-decoder models, extractive question answering."""

from __future__ import annotations

import torch
from transformers import DynamicCache, EncoderDecoderCache
from transformers.modeling_outputs import BaseModelOutput

from forgeway.server import metrics
from forgeway.core.errors import Internal
from forgeway.core.generation import AnswerSpan, Completion, Delta, FinishReason

from .decode import emit_tokens
from .scheduler import Runner, log
from .sequence import Job

MAX_ANSWER_TOKENS = 30  # longest QA span when the request sets no max_tokens


class SerialRunner(Runner):
    """Runs one job at a time to completion, checking for cancellation between steps."""

    def active(self) -> bool:
        return False

    def fits(self, n: int, free_slots: int, running_jobs: int) -> bool:
        return running_jobs == 0

    def cycle(self) -> None:
        for job in self._take():
            metrics.TOKENS.labels("hf", job.model, "prompt").inc(len(job.prompt_ids))
            try:
                with self.loaded.running(job.adapter):
                    self.run(job)
            except Exception:
                log.exception("model %s: %s failed", self.name, self.loaded.task.value)
                job.fail(Internal(f"{self.loaded.task.value} failed on model {self.name!r}"))
            finally:
                self._release(job)

    def run(self, job: Job) -> None:
        raise NotImplementedError


class Seq2SeqRunner(SerialRunner):
    """Summarization: encode the document once, decode the n summaries together step by step."""

    def run(self, job: Job) -> None:
        loaded, model = self.loaded, self.loaded.network
        ids = torch.tensor([job.prompt_ids], dtype=torch.long, device=loaded.device)
        mask = torch.ones_like(ids)
        hidden = model.get_encoder()(input_ids=ids, attention_mask=mask).last_hidden_state
        hidden, mask = hidden.expand(job.n, -1, -1), mask.expand(job.n, -1)
        cache = EncoderDecoderCache(DynamicCache(), DynamicCache())
        start = model.generation_config.decoder_start_token_id
        if start is None:
            start = model.config.decoder_start_token_id
        rows, last = list(job.choices), [start] * job.n
        while rows and not job.cancelled:
            logits = model(
                encoder_outputs=BaseModelOutput(last_hidden_state=hidden), attention_mask=mask,
                decoder_input_ids=torch.tensor(last, device=loaded.device)[:, None], use_cache=True,
                **{loaded.cache_arg: cache},
            ).logits[:, -1, :]
            emit_tokens(loaded, rows, logits)
            keep = [i for i, row in enumerate(rows) if not row.done]
            if len(keep) < len(rows) and keep:
                index = torch.tensor(keep, device=loaded.device)
                cache.batch_select_indices(index)
                hidden, mask = hidden.index_select(0, index), mask.index_select(0, index)
            rows = [rows[i] for i in keep]
            last = [row.last for row in rows]


class QuestionAnswerRunner(SerialRunner):
    """Extractive QA: the most likely answer span inside the context, with its probability as score."""

    def run(self, job: Job) -> None:
        loaded = self.loaded
        encoding = job.encoding
        inputs = {k: torch.tensor([v], device=loaded.device) for k, v in encoding.items()
                  if k in ("input_ids", "attention_mask", "token_type_ids")}
        out = loaded.network(**inputs)
        in_context = torch.tensor([s == 1 for s in encoding.sequence_ids()], device=loaded.device)
        start = torch.softmax(out.start_logits[0].float().masked_fill(~in_context, float("-inf")), -1)
        end = torch.softmax(out.end_logits[0].float().masked_fill(~in_context, float("-inf")), -1)
        longest = job.request.sampling.max_tokens or MAX_ANSWER_TOKENS
        scores = torch.triu(start[:, None] * end[None, :]).tril(longest - 1)
        best = int(scores.argmax())
        s, e = divmod(best, scores.shape[1])
        offsets = encoding["offset_mapping"]
        context = job.request.context
        char_start, char_end = offsets[s][0], offsets[e][1]
        while char_start < char_end and context[char_start].isspace():  # byte-level tokens carry their space
            char_start += 1
        while char_end > char_start and context[char_end - 1].isspace():
            char_end -= 1
        text = context[char_start:char_end]
        tokens = e - s + 1
        job.count_tokens(tokens)
        span = AnswerSpan(start=char_start, end=char_end, score=float(scores[s, e]))
        job.finish_with([Delta(0, text)], [Completion(0, text, FinishReason.STOP, answer_span=span,
                                                      completion_tokens=tokens)])
