"""counterfact_grpo and gbmpo train the tiny llama through the trl service, each showing its own term at work."""

from __future__ import annotations

import grpc
import pytest
from trl_harness import PROMPTS, assert_succeeded, request, rows, trl_service

from forgeway.core.errors import from_rpc_error
from forgeway.v1 import jobs_pb2, train_pb2

pytestmark = [pytest.mark.trl, pytest.mark.slow]

M = train_pb2


@pytest.fixture(scope="module")
async def trainer(tmp_path_factory):
    async with trl_service(tmp_path_factory.mktemp("trl-aligntune")) as service:
        yield service


def online(method: int, lora: bool = True, **knobs) -> train_pb2.TrainRequest:
    """Two steps of an online method with a length reward, seed 7, 2 completions of up to 16 tokens per prompt."""
    params = M.MethodParams(num_generations=2, max_completion_length=16, max_prompt_length=16,
                            reward_functions=[M.RewardFunction(name="length:50", weight=1.0)], **knobs)
    req = request(method, rows(PROMPTS), lora=lora, method_params=params)
    req.hyperparameters.seed = 7
    req.hyperparameters.ClearField("max_seq_length")  # online methods bound prompt and completion lengths instead
    return req


def trained(events: list[jobs_pb2.JobEvent]) -> list[jobs_pb2.Progress]:
    """The progress events of optimizer steps (those carrying the step's loss), in step order."""
    assert_succeeded(events)
    return [e.progress for e in events if e.WhichOneof("kind") == "progress" and e.progress.HasField("loss")]


async def test_counterfact_reweights_tokens_and_changes_the_update(trainer):
    grpo = trained(await trainer.train(online(M.TRAINING_METHOD_GRPO)))
    weighted = trained(await trainer.train(online(M.TRAINING_METHOD_COUNTERFACT_GRPO)))
    flat = M.CounterfactParams(boost_factor=1.0, min_weight=1.0, answer_weight=1.0)
    uniform = trained(await trainer.train(online(M.TRAINING_METHOD_COUNTERFACT_GRPO, counterfact=flat)))
    first = weighted[0].metrics
    assert first["counterfact/reweighted"] > 0  # completions with a nonzero advantage got weights
    assert first["counterfact/weight_min"] < 1.0 < first["counterfact/weight_max"]
    assert uniform[0].metrics["counterfact/weight_min"] == uniform[0].metrics["counterfact/weight_max"] == 1.0
    # Same seed, same completions and advantages at step 1: all-one weights reproduce GRPO's gradient exactly, the
    # counterfactual weights change it (mean-1 weights leave the reported loss value itself unchanged).
    assert uniform[0].grad_norm == pytest.approx(grpo[0].grad_norm, rel=1e-4)
    assert weighted[0].grad_norm != pytest.approx(grpo[0].grad_norm, rel=1e-3)
    assert grpo[0].metrics["reward"] == pytest.approx(weighted[0].metrics["reward"])


_GBMPO: dict[str, list[jobs_pb2.Progress]] = {}


async def gbmpo_run(trainer, divergence: str) -> list[jobs_pb2.Progress]:
    """One gbmpo job per divergence (run once, shared by the tests): full fine-tuning for l2 and probl2 (a copied
    reference, beta 0), LoRA for the *kl variants (the reference is the adapter switched off, beta defaulted)."""
    if divergence not in _GBMPO:
        req = online(M.TRAINING_METHOD_GBMPO, lora=divergence.endswith("kl"),
                     gbmpo=M.GbmpoParams(divergence=divergence, divergence_coefficient=0.5))
        _GBMPO[divergence] = trained(await trainer.train(req))
    return _GBMPO[divergence]


@pytest.mark.parametrize("divergence", ["l2", "l2kl", "probl2", "probl2kl"])
async def test_gbmpo_logs_its_divergence(trainer, divergence):
    steps = await gbmpo_run(trainer, divergence)
    assert [p.step for p in steps] == [1, 2]
    values = [p.metrics["gbmpo/divergence"] for p in steps]
    assert values[0] == pytest.approx(0.0, abs=1e-9)  # step 1: the policy is still the reference
    assert values[1] > 0.0  # step 2: one update away from it
    assert ("kl" in steps[1].metrics) == divergence.endswith("kl")  # only the *kl variants add TRL's beta x KL


async def test_gbmpo_l2_and_probl2_measure_different_divergences(trainer):
    l2, probl2 = await gbmpo_run(trainer, "l2"), await gbmpo_run(trainer, "probl2")
    assert l2[1].metrics["gbmpo/divergence"] != pytest.approx(probl2[1].metrics["gbmpo/divergence"], rel=1e-3)


async def rejected(trainer, req: train_pb2.TrainRequest):
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await trainer.train(req)
    return from_rpc_error(caught.value)


async def test_bad_knobs_are_refused_before_any_job(trainer):
    before = len((await trainer.jobs.ListJobs(jobs_pb2.ListJobsRequest())).jobs)
    error = await rejected(trainer, online(M.TRAINING_METHOD_GBMPO, gbmpo=M.GbmpoParams(divergence="kl2")))
    assert error.code == grpc.StatusCode.INVALID_ARGUMENT
    ((where, why),) = error.field_violations
    assert where == "method_params.gbmpo.divergence" and "l2, l2kl, probl2, probl2kl" in why
    error = await rejected(trainer, online(M.TRAINING_METHOD_COUNTERFACT_GRPO,
                                           counterfact=M.CounterfactParams(boost_factor=0.25, answer_weight=0.0)))
    assert {f for f, _ in error.field_violations} == {"method_params.counterfact.answer_weight"}
    error = await rejected(trainer, online(M.TRAINING_METHOD_COUNTERFACT_GRPO,
                                           counterfact=M.CounterfactParams(boost_factor=0.25)))
    assert error.field_violations == [("method_params.counterfact.boost_factor",
                                       "must be at least min_weight (0.5), got 0.25")]
    error = await rejected(trainer, online(M.TRAINING_METHOD_GBMPO, counterfact=M.CounterfactParams(min_weight=1)))
    assert error.field_violations[0][0] == "method_params.counterfact"
    assert len((await trainer.jobs.ListJobs(jobs_pb2.ListJobsRequest())).jobs) == before
