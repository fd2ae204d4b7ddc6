"""GRPO with no reward trains on AlignTune's default set; AlignTune's reward names and a local classifier train."""

from __future__ import annotations

import grpc
import pytest
from trl_harness import PROMPTS, assert_succeeded, request, rows, trl_service

from forgeway.core.errors import from_rpc_error
from forgeway.v1 import train_pb2

pytestmark = [pytest.mark.trl, pytest.mark.slow]

M = train_pb2


@pytest.fixture(scope="module")
async def trainer(tmp_path_factory):
    async with trl_service(tmp_path_factory.mktemp("trl-default-rewards")) as service:
        yield service


def grpo(*rewards: tuple[str, float], loss_type: str = "") -> train_pb2.TrainRequest:
    params = M.MethodParams(loss_type=loss_type, num_generations=2, max_completion_length=8, max_prompt_length=16,
                            reward_functions=[M.RewardFunction(name=n, weight=w) for n, w in rewards])
    return request(M.TRAINING_METHOD_GRPO, rows(PROMPTS), method_params=params)


def logs(events) -> list[str]:
    return [e.log.text for e in events if e.WhichOneof("kind") == "log"]


async def test_grpo_without_a_reward_trains_on_aligntunes_default_set(trainer):
    events = await trainer.train(grpo())
    assert_succeeded(events)
    assert ("no reward given: AlignTune's default set: length:20..200 (0.2), sentiment (0.2), safety (0.2), "
            "diversity (0.2), fluency (0.2)") in logs(events)
    reported = {k for e in events if e.WhichOneof("kind") == "progress" for k in e.progress.metrics}
    assert {f"rewards/{name}/mean" for name in ("length", "sentiment", "safety", "diversity", "fluency")} <= reported


async def test_rloo_and_online_dpo_still_need_a_reward(trainer):
    for method in (M.TRAINING_METHOD_RLOO, M.TRAINING_METHOD_ONLINE_DPO):
        req = request(method, rows(PROMPTS), method_params=M.MethodParams(max_completion_length=8))
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await trainer.train(req)
        error = from_rpc_error(caught.value)
        assert error.code == grpc.StatusCode.INVALID_ARGUMENT
        assert "method_params.reward_functions" in {f for f, _ in error.field_violations}


async def test_aligntune_reward_names_train_with_the_dapo_preset(trainer):
    events = await trainer.train(grpo(("sentiment", 0.5), ("toxicity", 0.5), ("rouge", 1.0), ("coherence", 0.2),
                                      loss_type="dapo"))
    assert_succeeded(events)
    assert not any("default set" in line for line in logs(events))


async def test_a_local_sentiment_classifier_trains(trainer):
    import torch
    from transformers import AutoConfig, AutoTokenizer, BertForSequenceClassification

    from forgeway.testing import build_tiny_bert

    base = build_tiny_bert(trainer.home / "bert-base", head="rerank")
    config = AutoConfig.from_pretrained(base, num_labels=2, id2label={0: "negative", 1: "positive"},
                                        label2id={"negative": 0, "positive": 1})
    model = BertForSequenceClassification.from_pretrained(base, config=config, ignore_mismatched_sizes=True)
    torch.nn.init.normal_(model.classifier.weight, std=2.0)  # texts get different scores: advantages are not all 0
    folder = trainer.home / "sentiment-classifier"  # inside the trainer's home: an allowed root
    model.save_pretrained(folder)
    AutoTokenizer.from_pretrained(base).save_pretrained(folder)
    assert_succeeded(await trainer.train(grpo((f"sentiment:{folder}", 1.0), loss_type="dr_grpo")))


async def test_a_classifier_outside_the_allowed_roots_is_refused(trainer, tmp_path):
    (tmp_path / "config.json").write_text("{}")
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await trainer.train(grpo((f"safety:{tmp_path}", 1.0)))
    assert caught.value.code() == grpc.StatusCode.PERMISSION_DENIED
    assert "method_params.reward_functions[0].name" in caught.value.details()
