"""The shim's fine-tuning jobs through the official `openai` client, against a real gateway (its HTTP API in-process)
and a real TRL trainer: the create answer is the job as GET reads it, field for field; job and event listings page by
`after` and `has_more` over more than one page."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

import openai
import pytest
from trl_harness import Trainer, tiny, trl_service

from forgeway.testing import gateway_settings, start_gateway, stop_now

pytestmark = [pytest.mark.trl, pytest.mark.slow]

EXAMPLES = [{"messages": [{"role": "user", "content": f"Where did cat {i} sit?"},
                          {"role": "assistant", "content": "On the mat."}]} for i in range(8)]


@pytest.fixture
async def shim(tmp_path) -> AsyncIterator[tuple[openai.AsyncOpenAI, str, Trainer]]:
    """The OpenAI client on a gateway's HTTP API, the TRL trainer behind it, and an uploaded training file."""
    async with trl_service(tmp_path / "trl") as trainer:
        gateway = await start_gateway(gateway_settings([trainer.address], http_port=0))
        client = openai.AsyncOpenAI(base_url=f"http://127.0.0.1:{gateway.service.http_port}/v1", api_key="k",
                                    max_retries=0)
        try:
            upload = await client.files.create(
                file=("cats.jsonl", "".join(json.dumps(e) + "\n" for e in EXAMPLES).encode()), purpose="fine-tune")
            yield client, upload.id, trainer
        finally:
            await client.close()
            await stop_now(gateway)


async def test_the_create_answer_is_the_job_as_get_reads_it_field_for_field(shim):
    client, training_file, _ = shim
    # The first job keeps the trainer busy until it is cancelled, so the second stays queued while it is compared.
    busy = await client.fine_tuning.jobs.create(
        model=str(tiny("llama")), training_file=training_file,
        method={"type": "supervised", "supervised": {"hyperparameters": {"max_steps": 100000, "batch_size": 2}}},
        extra_body={"backend": "trl"})
    created = await client.fine_tuning.jobs.create(
        model=str(tiny("llama")), training_file=training_file, validation_file=training_file, suffix="shim", seed=7,
        method={"type": "supervised", "supervised": {"hyperparameters": {
            "n_epochs": 2, "batch_size": 2, "learning_rate_multiplier": 0.1}}},
        extra_body={"backend": "trl"})
    try:
        read = await client.fine_tuning.jobs.retrieve(created.id)
        assert created.status == "queued" and read.status == "queued"
        assert created.model_dump() == read.model_dump()
        assert created.user_provided_suffix == "shim" and created.seed == 7
        assert (created.training_file, created.validation_file) == (training_file, training_file)
        assert created.hyperparameters.model_dump() == {"n_epochs": 2, "batch_size": 2,
                                                        "learning_rate_multiplier": 0.1}
        assert created.method.type == "supervised" and created.model == str(tiny("llama"))

        listed = await client.fine_tuning.jobs.list(limit=1)
        assert [j.id for j in listed.data] == [created.id] and listed.has_more
        assert listed.data[0].model_dump() == read.model_dump()
        rest = await client.fine_tuning.jobs.list(limit=1, after=created.id)
        assert [j.id for j in rest.data] == [busy.id] and not rest.has_more
        with pytest.raises(openai.BadRequestError):
            await client.fine_tuning.jobs.list(after="job-nowhere")
    finally:
        for job in (created, busy):
            await client.fine_tuning.jobs.cancel(job.id)


async def test_job_events_page_newest_first_by_after(shim):
    client, training_file, trainer = shim
    job = await client.fine_tuning.jobs.create(
        model=str(tiny("llama")), training_file=training_file,
        method={"type": "supervised", "supervised": {"hyperparameters": {"max_steps": 3, "batch_size": 2}}},
        extra_body={"backend": "trl"})
    await trainer.wait(job.id)  # the job's events, followed to its end over gRPC
    assert (await client.fine_tuning.jobs.retrieve(job.id)).status == "succeeded"
    whole = (await client.fine_tuning.jobs.list_events(job.id, limit=100)).data
    assert not (await client.fine_tuning.jobs.list_events(job.id, limit=100)).has_more
    sequences = [int(e.id.rsplit("-", 1)[1]) for e in whole]
    assert sequences == list(range(len(whole), 0, -1)) and len(whole) > 4
    paged, after = [], None
    for _ in range(len(whole)):  # a listing that never ends fails below instead of hanging
        page = await client.fine_tuning.jobs.list_events(job.id, limit=3, **({"after": after} if after else {}))
        paged += page.data
        assert len(page.data) == 3 or not page.has_more
        if not page.has_more:
            break
        after = page.data[-1].id
    assert [e.model_dump() for e in paged] == [e.model_dump() for e in whole]
    with pytest.raises(openai.NotFoundError):
        await client.fine_tuning.jobs.list_events("job-nowhere")
