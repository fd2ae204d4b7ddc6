"""AlignTune algorithm knobs: a MethodParams message's values with defaults, and the checks that name their field."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping

from forgeway.core.errors import InvalidArgument

Violations = list[tuple[str, str]]


def field(message: str, knob: str) -> str:
    """The request field of one knob, as violations name it ("method_params.gbmpo.divergence")."""
    return f"method_params.{message}.{knob}"


def read(params: Mapping[str, Mapping], message: str, defaults: Mapping[str, object]) -> dict[str, object]:
    """The message's knobs: each set value (an empty string counts as unset), else its default."""
    given = params.get(message) or {}
    return {knob: default if given.get(knob) in (None, "") else given[knob] for knob, default in defaults.items()}


def within(message: str, knob: str, value: float, *, above: float | None = None, at_least: float | None = None,
           at_most: float | None = None) -> Violations:
    """A violation when `value` is not a finite number in the range the bounds give."""
    if not isinstance(value, (int, float)) or isinstance(value, bool) or not math.isfinite(value):
        return [(field(message, knob), f"must be a finite number, got {value!r}")]
    for ok, why in ((above is None or value > above, f"must be greater than {above}"),
                    (at_least is None or value >= at_least, f"must be at least {at_least}"),
                    (at_most is None or value <= at_most, f"must be at most {at_most}")):
        if not ok:
            return [(field(message, knob), f"{why}, got {value:g}")]
    return []


def one_of(message: str, knob: str, value: object, allowed: Iterable[str]) -> Violations:
    """A violation listing the allowed names when `value` is not one of them."""
    allowed = tuple(allowed)
    if value in allowed:
        return []
    return [(field(message, knob), f"unknown {knob} {value!r}; allowed: {', '.join(allowed)}")]


def require(errors: Violations) -> None:
    """Raise the violations as one InvalidArgument (for a trainer built without the service's request checks)."""
    if errors:
        raise InvalidArgument(*errors[0], more=errors[1:])
