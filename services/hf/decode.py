"""One decode step's choice of tokens for a set of rows: batched argmax, per-row sampling, logprobs, deltas."""

from __future__ import annotations

import torch

from forgeway.core.generation import TokenLogprob

from .models import LoadedModel
from .sequence import Choice, Job


def emit_tokens(loaded: LoadedModel, rows: list[Choice], logits: torch.Tensor) -> None:
    """Pick each row's next token from its logits row, feed it to the row and post the deltas."""
    logits = logits.float()
    want = [i for i, row in enumerate(rows) if row.job.request.logprobs]
    logprobs = torch.log_softmax(logits[want], dim=-1) if want else None
    if loaded.suppress:
        logits[:, loaded.suppress] = float("-inf")
    greedy = logits.argmax(dim=-1).tolist()
    tokens = []
    for i, row in enumerate(rows):
        if row.plain:
            tokens.append(greedy[i])
            continue
        line = logits[i]
        row.sampler.adjust(line)
        if row.constraint is not None:
            row.constraint.mask(line)
        tokens.append(row.sampler.pick(line))
    deltas: dict[Job, list] = {}
    slot = {i: k for k, i in enumerate(want)}
    for i, (row, token) in enumerate(zip(rows, tokens)):
        lp = _logprob(loaded, logprobs[slot[i]], token, row.job.request.top_logprobs) if i in slot else None
        deltas.setdefault(row.job, []).append(row.accept(token, lp))
    for job, events in deltas.items():
        job.step_events(events)


def _logprob(loaded: LoadedModel, row: torch.Tensor, token: int, top: int) -> TokenLogprob:
    tb = loaded.token_bytes
    alternatives = []
    if top:
        values, ids = torch.topk(row, top)
        alternatives = [(tb.text(t), tb.bytes(t), v) for v, t in zip(values.tolist(), ids.tolist())]
    return TokenLogprob(tb.text(token), tb.bytes(token), float(row[token]), alternatives)
