"""nmgrpo (AlignTune's Neural Mirror GRPO): GRPO regularised by the Bregman divergence of a random convex mirror map."""

from __future__ import annotations

import torch

from .knobs import Violations, field, read, require, within
from .reference import ReferencePenaltyTrainer

# AlignTune's defaults (backends/trl/rl/meta_es/neural_mirror_grpo.py: mirror_coefficient, the 126-unit map,
# mirror_seed); the map's parameters are drawn uniformly from [0, INIT_SCALE) (its mirror_init_scale).
DEFAULTS = {"coefficient": 1e-4, "hidden_units": 126, "seed": 42}
INIT_SCALE = 0.01
MESSAGE = "mirror"
FAMILIES = 6  # x^3, x^2, x^(1/2), x^(1/3), log(x+), exp(x): an equal share of the hidden units each
_LOG_EPS, _PROB_EPS = 1e-3, 1e-10


def knobs(params: dict[str, dict]) -> dict:
    """The mirror knobs: each set value, else its default, typed like the default (a uint64 arrives as a string)."""
    return {name: type(DEFAULTS[name])(value) for name, value in read(params, MESSAGE, DEFAULTS).items()}


def check(params: dict[str, dict]) -> Violations:
    """Violations in method_params.mirror, before any model loads."""
    k = read(params, MESSAGE, DEFAULTS)
    errors = within(MESSAGE, "coefficient", k["coefficient"], at_least=0.0)
    if int(k["hidden_units"]) <= 0 or int(k["hidden_units"]) % FAMILIES:
        errors.append((field(MESSAGE, "hidden_units"), f"must be a positive multiple of {FAMILIES} (an equal share per "
                       "activation family: cube, square, square root, cube root, log, exp), got "
                       f"{k['hidden_units']}"))
    return errors


class MirrorMap:
    """h(y) = sum_j v_j H_j(w_j y + b_j) + (a/2) y^2 + c (y log y - y), with H_j the primitive of unit j's activation
    and every parameter non-negative, so h is convex and its Bregman divergence is at least 0. The parameters live
    in one flat vector phi = [v, w, b, a, c] (3 x hidden_units + 2), the space Meta-ES searches."""

    def __init__(self, phi: torch.Tensor):
        self.phi = phi.detach().to(torch.float64).clamp(min=0.0)
        self.hidden_units = (self.phi.numel() - 2) // 3
        if self.phi.numel() != 3 * self.hidden_units + 2 or self.hidden_units % FAMILIES:
            raise ValueError(f"a mirror map needs 3 x units + 2 parameters with units a multiple of {FAMILIES}")

    @classmethod
    def random(cls, hidden_units: int, seed: int, scale: float = INIT_SCALE) -> MirrorMap:
        generator = torch.Generator().manual_seed(seed)
        return cls(torch.rand(3 * hidden_units + 2, generator=generator, dtype=torch.float64) * scale)

    def parts(self, device) -> tuple[torch.Tensor, ...]:
        n, phi = self.hidden_units, self.phi.to(device, torch.float64)
        return phi[:n], phi[n:2 * n], phi[2 * n:3 * n], phi[3 * n], phi[3 * n + 1]

    def _units(self, y: torch.Tensor, w: torch.Tensor, b: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Each unit's activation and primitive at y, shape (..., units); units with w ~ 0 are linear in y."""
        u = w * y.unsqueeze(-1) + b
        cube, square, root, cbrt, log, exp = u.chunk(FAMILIES, dim=-1)  # the families' equal shares, in order
        root, cbrt, log = root.clamp(min=0.0), cbrt.clamp(min=0.0), log.clamp(min=0.0) + _LOG_EPS
        activation = torch.cat([cube ** 3, square ** 2, root.sqrt(), cbrt.pow(1 / 3), log.log(), exp.exp()], -1)
        primitive = torch.cat([cube ** 4 / 4, square ** 3 / 3, root.pow(1.5) * 2 / 3, cbrt.pow(4 / 3) * 3 / 4,
                               log * log.log() - log, exp.exp()], -1)
        flat = w.abs() < 1e-6
        return activation, torch.where(flat, activation * y.unsqueeze(-1), primitive / w.clamp(min=1e-6))

    def divergence(self, y: torch.Tensor, y0: torch.Tensor) -> torch.Tensor:
        """D_h(y || y0) = h(y) - h(y0) - h'(y0)(y - y0) per element, for probabilities y (policy), y0 (reference),
        in float64: the terms nearly cancel for the small probabilities of a large vocabulary."""
        y, y0 = y.double().clamp(min=_PROB_EPS), y0.double().clamp(min=_PROB_EPS)
        v, w, b, a, c = self.parts(y.device)
        _, at_y = self._units(y, w, b)
        act_y0, at_y0 = self._units(y0, w, b)
        gap = (y - y0).unsqueeze(-1)
        units = (v * (at_y - at_y0 - act_y0 * gap)).sum(-1)
        return units + a / 2 * (y - y0) ** 2 + c * (y * (y / y0).log() - (y - y0))


class NeuralMirrorGRPOTrainer(ReferencePenaltyTrainer):
    """GRPOTrainer whose loss adds coefficient x the mean per-token Bregman divergence between the policy's and the
    reference's token probabilities (TRL's beta KL still applies if beta is set; AlignTune uses the map instead)."""

    def __init__(self, *args, algorithm: dict[str, dict] | None = None, mirror_map: MirrorMap | None = None,
                 **kwargs):
        require(check(algorithm or {}))
        settings = knobs(algorithm or {})
        self.coefficient = settings["coefficient"]
        self.mirror = mirror_map or MirrorMap.random(settings["hidden_units"], settings["seed"])
        super().__init__(*args, **kwargs)

    def penalty(self, logps: torch.Tensor, ref_logps: torch.Tensor, mask: torch.Tensor, inputs: dict,
                mode: str) -> torch.Tensor:
        per_token = self.mirror.divergence(logps.exp(), ref_logps.exp()).to(logps.dtype)
        total, tokens = (per_token * mask).sum(), mask.sum().float()
        overall = self.accelerator.reduce(torch.stack([total.detach(), tokens]), reduction="sum")
        self._metrics[mode]["nmgrpo/mirror_divergence"].append((overall[0] / overall[1].clamp(min=1.0)).item())
        accumulation = self.current_gradient_accumulation_steps if mode == "train" else 1.0
        return self.coefficient * (total / tokens.clamp(min=1.0)) / accumulation
