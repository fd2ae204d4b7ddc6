"""AlignTune's pace, nmgrpo and metaes train on the tiny llama through a real trl server, each term at work."""

from __future__ import annotations

import grpc
import pytest
from trl_harness import PROMPTS, assert_succeeded, request, rows, trl_service

from forgeway.core.errors import from_rpc_error
from forgeway.v1 import jobs_pb2, train_pb2

pytestmark = [pytest.mark.trl, pytest.mark.slow]

M = train_pb2
LENGTH = [M.RewardFunction(name="length:20", weight=1.0)]


@pytest.fixture(scope="module")
async def trainer(tmp_path_factory):
    async with trl_service(tmp_path_factory.mktemp("trl-aligntune-rl")) as service:
        yield service


def rl_request(method: int, lora: bool = True, **params) -> train_pb2.TrainRequest:
    """Two steps; batch 2 with 2 accumulation steps, so each generated batch holds two prompts of 2 completions."""
    req = request(method, rows(PROMPTS), lora=lora, method_params=M.MethodParams(
        num_generations=2, max_completion_length=8, max_prompt_length=16, reward_functions=LENGTH, **params))
    req.hyperparameters.ClearField("max_seq_length")
    req.hyperparameters.gradient_accumulation_steps = 2
    return req


def metrics(events: list[jobs_pb2.JobEvent]) -> list[dict[str, float]]:
    return [dict(e.progress.metrics) for e in events if e.WhichOneof("kind") == "progress" and e.progress.metrics]


def logs(events: list[jobs_pb2.JobEvent]) -> list[str]:
    return [e.log.text for e in events if e.WhichOneof("kind") == "log"]


async def rejected(trainer, req: train_pb2.TrainRequest):
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await trainer.train(req)
    return from_rpc_error(caught.value)


async def test_pace_replaces_group_mean_advantages_with_persistent_baselines(trainer):
    events = await trainer.train(rl_request(M.TRAINING_METHOD_PACE, pace=M.PaceParams(rho_min=0.9)))
    assert_succeeded(events)
    steps = [m for m in metrics(events) if "pace/baseline_mean" in m]
    assert len(steps) == 2
    assert steps[0]["pace/baseline_mean"] == pytest.approx(0.5)  # Beta(1, 1) priors before any reward
    assert all(m["pace/advantage_change"] > 1e-3 for m in steps)  # not TRL's per-group advantages
    assert all(0.9 <= m["pace/rho_mean"] <= 0.96 for m in steps)  # rho clamped to [rho_min, rho_max]
    assert steps[-1]["pace/tracked_prompts"] >= 2


async def test_nmgrpo_reports_the_mirror_divergence_from_the_reference(trainer):
    events = await trainer.train(rl_request(M.TRAINING_METHOD_NMGRPO, lora=False,
                                            mirror=M.MirrorParams(coefficient=1.0, hidden_units=12, seed=3)))
    assert_succeeded(events)
    divergence = [m["nmgrpo/mirror_divergence"] for m in metrics(events) if "nmgrpo/mirror_divergence" in m]
    assert len(divergence) == 2 and divergence[0] == 0.0  # the policy starts as its reference
    assert divergence[1] > 0.0  # one optimizer step later it has moved away


async def test_metaes_searches_the_mirror_map_then_trains(trainer):
    search = M.MetaEsParams(population=2, generations=2, inner_steps=1, sigma=0.05)
    events = await trainer.train(rl_request(M.TRAINING_METHOD_METAES, meta_es=search))
    assert_succeeded(events)
    lines = [line for line in logs(events) if line.startswith("meta-es generation")]
    assert [line.split()[2] for line in lines if "candidate" not in line] == ["1/2:", "2/2:"]
    assert len([line for line in lines if "candidate" in line]) == 4  # population 2 x 2 generations
    first = next(m for m in metrics(events) if "metaes/generation" in m)
    assert first["metaes/generation"] == 2.0 and 0.0 <= first["metaes/best_reward"] <= 1.0
    assert any("nmgrpo/mirror_divergence" in m for m in metrics(events))


@pytest.mark.parametrize(("method", "params", "field"), [
    (M.TRAINING_METHOD_PACE, {"pace": M.PaceParams(rho_min=0.99, rho_max=0.9)}, "method_params.pace.rho_min"),
    (M.TRAINING_METHOD_PACE, {"pace": M.PaceParams(kl_half_life=0)}, "method_params.pace.kl_half_life"),
    (M.TRAINING_METHOD_NMGRPO, {"mirror": M.MirrorParams(hidden_units=10)}, "method_params.mirror.hidden_units"),
    (M.TRAINING_METHOD_NMGRPO, {"pace": M.PaceParams()}, "method_params.pace"),
    (M.TRAINING_METHOD_METAES, {"meta_es": M.MetaEsParams(population=3)}, "method_params.meta_es.population"),
    (M.TRAINING_METHOD_METAES, {"meta_es": M.MetaEsParams(sigma=0)}, "method_params.meta_es.sigma"),
])
async def test_a_bad_knob_is_invalid_argument_naming_it_and_creates_no_job(trainer, method, params, field):
    before = len((await trainer.jobs.ListJobs(jobs_pb2.ListJobsRequest())).jobs)
    error = await rejected(trainer, rl_request(method, **params))
    assert error.code == grpc.StatusCode.INVALID_ARGUMENT
    assert field in {f for f, _ in error.field_violations}
    assert len((await trainer.jobs.ListJobs(jobs_pb2.ListJobsRequest())).jobs) == before
