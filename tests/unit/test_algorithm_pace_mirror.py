"""The pure pieces of pace, nmgrpo and metaes on small tensors: baselines, rho, curriculum, mirror divergence, ES."""

from __future__ import annotations

import pytest
import torch

from forgeway.services.trl.algorithms import metaes, mirror, pace
from forgeway.services.trl.methods import METHODS

pytestmark = pytest.mark.trl


def baselines(**overrides) -> pace.PromptBaselines:
    knobs = pace.knobs({"pace": overrides})
    return pace.PromptBaselines(knobs["prior_alpha"], knobs["prior_beta"], knobs["kl_half_life"], knobs["rho_min"],
                                knobs["rho_max"])


def test_forgetting_halves_at_the_half_life_within_its_clamp():
    assert pace.forgetting(0.5, 0.5, 0.0, 1.0) == pytest.approx(0.5)
    assert pace.forgetting(0.0, 0.5, 0.875, 0.96) == 0.96  # no drift: keep the most evidence allowed
    assert pace.forgetting(2.0, 0.5, 0.875, 0.96) == 0.875  # large drift: forget fastest allowed
    assert pace.forgetting(0.1, 1.0, 0.5, 1.0) == pytest.approx(2 ** -0.1)


def test_a_baseline_starts_at_its_prior_and_follows_binarised_rewards():
    table = baselines(prior_alpha=3.0, prior_beta=1.0)
    assert table.value("new") == 0.75
    table.update("p", [1.0, 1.0])  # mean 1 vs v 0.75: KL 2|1 - v| = 0.5, rho 2^-1 clamped to 0.875; then v 0.81
    a, b = table.table["p"]
    assert (a, b) == pytest.approx((0.875 * (0.875 * 3 + 1) + 1, 0.875 * 0.875))
    assert table.last_rho == pytest.approx([0.875, 0.875])
    table.table["r"] = (9.0, 1.0)
    table.update("r", [1.0])  # small drift, 2|1 - 0.9| = 0.2: rho 2^-0.4 = 0.758 -> 0.875 still; rho_max 0.96 at 0
    table.table["s"] = (1.0, 1.0)
    table.update("s", [0.5])  # no drift from v = 0.5: the largest rho
    assert table.last_rho[-1] == 0.96 and table.table["s"] == pytest.approx((0.96, 1.96))
    before = table.value("p")
    table.update("p", [0.2, 0.4])  # below 0.5: failures
    assert table.value("p") < before and "q" not in table.table


def test_baselines_survive_a_checkpoint(tmp_path):
    table = baselines()
    table.update("p", [1.0, 0.0, 1.0])
    table.save(tmp_path / pace.BASELINES_FILE)
    restored = baselines()
    restored.load(tmp_path / pace.BASELINES_FILE)
    assert restored.table == table.table and restored.value("p") == table.value("p")


def test_curriculum_weight_peaks_where_success_is_least_certain():
    table = baselines()
    table.table.update({"easy": (9.0, 1.0), "edge": (5.0, 5.0), "hard": (1.0, 9.0)})
    weights = {k: table.weight(k, 0.05) for k in ("easy", "edge", "hard")}
    assert weights["edge"] == pytest.approx(0.55) and weights["easy"] == pytest.approx(0.35)
    assert weights["easy"] == pytest.approx(weights["hard"])


def test_curriculum_sampler_keeps_trls_order_and_follows_the_weights():
    table = baselines()
    keys = ["a", "b", "c", "d"]
    table.table.update({"a": (1000.0, 1e-3), "b": (1000.0, 1e-3), "c": (1.0, 1.0), "d": (1.0, 1.0)})
    sampler = pace.CurriculumSampler(keys, keys, table, 0.0, mini_repeat_count=2, batch_size=2, repeat_count=1,
                                     seed=0)
    drawn = list(sampler)
    assert len(drawn) == len(sampler) == 8
    assert all(drawn[i] == drawn[i + 1] for i in range(0, 8, 2))  # each prompt num_generations times in a row
    assert sorted(drawn[:4:2]) == [2, 3] and sorted(drawn[4::2]) == [2, 3]  # the certain prompts are ~never drawn


def test_baseline_advantages_are_normalised_and_skip_unscorable_rows():
    rewards = torch.tensor([1.0, 0.0, 1.0, float("nan")])
    values = torch.tensor([0.5, 0.5, 0.9, 0.9])
    advantages = pace.baseline_advantages(rewards, values)
    raw = torch.tensor([0.5, -0.5, 0.1])
    assert advantages[:3] == pytest.approx(((raw - raw.mean()) / raw.std()).tolist())
    assert advantages[3] == 0.0
    assert pace.baseline_advantages(torch.tensor([float("nan")]), torch.tensor([0.5])).tolist() == [0.0]


def brute_bregman(phi: torch.Tensor, y: float, y0: float) -> float:
    """h(y) - h(y0) - h'(y0)(y - y0) with h integrated numerically from its defining derivative (float64)."""
    n = (phi.numel() - 2) // 3
    v, w, b, a, c = phi[:n], phi[n:2 * n], phi[2 * n:3 * n], phi[3 * n], phi[3 * n + 1]
    share = n // 6

    def derivative(t: torch.Tensor) -> torch.Tensor:  # h'(t) = sum_j v_j act_j(w_j t + b_j) + a t + c log t
        u = w * t.unsqueeze(-1) + b
        acts = [u ** 3, u ** 2, u.clamp(min=0).sqrt(), u.clamp(min=0).pow(1 / 3), (u.clamp(min=0) + 1e-3).log(),
                u.exp()]
        act = torch.cat([f[..., k * share:(k + 1) * share] for k, f in enumerate(acts)], -1)
        return (v * act).sum(-1) + a * t + c * t.log()

    grid = torch.linspace(y0, y, 20001, dtype=torch.float64)
    integral = torch.trapezoid(derivative(grid), grid)
    return float(integral - derivative(torch.tensor([y0], dtype=torch.float64))[0] * (y - y0))


def test_mirror_divergence_matches_its_definition_and_is_a_divergence():
    phi = torch.rand(3 * 12 + 2, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    mirror_map = mirror.MirrorMap(phi)
    for y, y0 in [(0.9, 0.2), (0.05, 0.6), (0.3, 0.31)]:
        got = mirror_map.divergence(torch.tensor([y]), torch.tensor([y0])).item()
        assert got == pytest.approx(brute_bregman(phi, y, y0), rel=1e-4, abs=1e-9) and got > 0
    same = torch.rand(4, 5)
    assert mirror_map.divergence(same, same).abs().max().item() < 1e-12
    policy = torch.rand(2, 3, requires_grad=True)
    mirror_map.divergence(policy, torch.rand(2, 3)).sum().backward()
    assert torch.isfinite(policy.grad).all()


def test_mirror_map_is_seeded_non_negative_and_shaped_like_aligntunes():
    first, again = mirror.MirrorMap.random(126, 42), mirror.MirrorMap.random(126, 42)
    assert first.phi.numel() == 380 and torch.equal(first.phi, again.phi)
    assert 0 <= first.phi.min() and first.phi.max() < mirror.INIT_SCALE
    assert not torch.equal(first.phi, mirror.MirrorMap.random(126, 43).phi)
    assert mirror.MirrorMap(-torch.ones(3 * 6 + 2)).phi.max() == 0  # clamped: h stays convex
    with pytest.raises(ValueError):
        mirror.MirrorMap(torch.ones(3 * 7 + 2))


def test_es_pairs_are_antithetic_and_the_step_follows_positive_fitness():
    directions = metaes.antithetic(4, 5, seed=1)
    assert torch.equal(directions[0], -directions[1]) and torch.equal(directions[2], -directions[3])
    phi = torch.zeros(5)
    moved = metaes.es_step(phi, directions, [1.0, 0.0, 0.0, 0.0], sigma=0.1, learning_rate=0.01)
    assert moved == pytest.approx((0.01 * directions[0] / 0.1).tolist())  # only the scoring candidate counts
    assert torch.equal(metaes.es_step(phi, directions, [0.0] * 4, 0.1, 0.01), phi)


@pytest.mark.parametrize(("method", "given", "fields"), [
    ("pace", {"pace": {}}, set()),
    ("pace", {"pace": {"rho_min": 0.97}}, {"method_params.pace.rho_min"}),
    ("pace", {"pace": {"rho_max": 1.5, "prior_beta": 0.0}}, {"method_params.pace.rho_max",
                                                            "method_params.pace.prior_beta"}),
    ("pace", {"pace": {"curriculum_floor": -0.1}}, {"method_params.pace.curriculum_floor"}),
    ("nmgrpo", {"mirror": {"hidden_units": 0}}, {"method_params.mirror.hidden_units"}),
    ("nmgrpo", {"mirror": {"coefficient": -1.0, "seed": "18446744073709551615"}}, {"method_params.mirror.coefficient"}),
    ("nmgrpo", {"meta_es": {}}, {"method_params.meta_es"}),
    ("metaes", {"mirror": {"hidden_units": 7}}, {"method_params.mirror.hidden_units"}),
    ("metaes", {"meta_es": {"population": 0, "generations": 0, "inner_steps": 0, "meta_learning_rate": 0.0}},
     {"method_params.meta_es.population", "method_params.meta_es.generations", "method_params.meta_es.inner_steps",
      "method_params.meta_es.meta_learning_rate"}),
])
def test_knob_checks_name_each_bad_field(method, given, fields):
    assert {field for field, _ in METHODS[method].check_algorithm(given)} == fields


def test_knobs_fill_aligntunes_defaults():
    assert pace.knobs({}) == pace.DEFAULTS and pace.knobs({"pace": {"curriculum": False}})["curriculum"] is False
    assert mirror.knobs({"mirror": {"seed": "7"}})["seed"] == 7 and mirror.knobs({})["coefficient"] == 1e-4
    assert metaes.knobs({"meta_es": {"population": 6}})["population"] == 6 and metaes.knobs({})["sigma"] == 0.02
