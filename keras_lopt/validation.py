"""Argument checks with Keras-style error messages.

Every check raises

    ValueError("`name` must be RULE. Received: name=VALUE")

naming the argument, the rule and the value received, as Keras' own
optimizers do ("`beta_1` must be in [0, 1). Received: beta_1=1.5"), and
returns the value as a plain Python `int` or `float` where it checks one.
Integers and numbers are Python or numpy scalars; a bool is neither.
"""

import math
import numbers
from typing import Any, Iterable, Sequence, Tuple

__all__ = [
    "boolean",
    "fraction",
    "interval_around_zero",
    "is_integer",
    "is_number",
    "non_negative_int",
    "non_negative_number",
    "one_of",
    "positive_int",
    "positive_ints",
    "positive_number",
    "require",
]


def is_integer(value: Any) -> bool:
    """Whether `value` is an integer (Python or numpy), not a bool."""
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def is_number(value: Any) -> bool:
    """Whether `value` is a real number (Python or numpy), not a bool."""
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def require(ok: bool, name: str, value: Any, rule: str) -> None:
    """Raises the Keras-style `ValueError` for `name` unless `ok`.

    Args:
        ok: whether `value` obeys the rule.
        name: the argument as the user writes it, e.g. `"num_pairs"`.
        value: the value received (shown with `repr`).
        rule: what `value` must be, completing "`name` must be ...".
    """
    if not ok:
        raise ValueError(f"`{name}` must be {rule}. Received: {name}={value!r}")


def interval_around_zero(name: str, value: Any) -> Tuple[float, float]:
    """`value` as `(low, high)` floats; two finite numbers, low <= 0 <= high."""
    try:
        low, high = (float(v) for v in value)
    except (TypeError, ValueError):
        low = high = math.nan
    require(
        math.isfinite(low) and math.isfinite(high) and low <= 0.0 <= high,
        name,
        value,
        "finite `(low, high)` with low <= 0 <= high",
    )
    return low, high


def positive_int(name: str, value: Any) -> int:
    """`value` as an int; it must be an integer >= 1."""
    require(is_integer(value) and value >= 1, name, value, "a positive integer")
    return int(value)


def non_negative_int(name: str, value: Any) -> int:
    """`value` as an int; it must be an integer >= 0."""
    require(is_integer(value) and value >= 0, name, value, "a non-negative integer")
    return int(value)


def positive_ints(name: str, values: Iterable[Any]) -> Tuple[int, ...]:
    """`values` as a tuple of ints; each must be an integer >= 1."""
    values = tuple(values)
    require(
        all(is_integer(v) and v >= 1 for v in values),
        name,
        values,
        "a sequence of positive integers",
    )
    return tuple(int(v) for v in values)


def positive_number(name: str, value: Any, rule: str = "a positive finite number") -> float:
    """`value` as a float; it must be a finite number > 0.

    `rule` is the wording of the message, for arguments whose message has
    always said "a positive number".
    """
    require(is_number(value) and math.isfinite(value) and value > 0, name, value, rule)
    return float(value)


def non_negative_number(name: str, value: Any, rule: str = "a non-negative finite number") -> float:
    """`value` as a float; it must be a finite number >= 0 (`rule`: as in
    `positive_number`)."""
    require(is_number(value) and math.isfinite(value) and value >= 0, name, value, rule)
    return float(value)


def fraction(name: str, value: Any) -> float:
    """`value` as a float; it must be a number in [0, 1]."""
    require(is_number(value) and 0.0 <= value <= 1.0, name, value, "in [0, 1]")
    return float(value)


def boolean(name: str, value: Any) -> bool:
    """`value`; it must be a bool."""
    require(isinstance(value, bool), name, value, "a bool")
    return value


def one_of(name: str, value: Any, choices: Sequence[Any]) -> Any:
    """`value`; it must be in `choices` (shown as given: a tuple or a list)."""
    require(value in choices, name, value, f"one of {choices}")
    return value
