"""Estimator parameters declared once per class and checked by one function (scikit-learn's
``_parameter_constraints`` idea, on factorkit's own ``check_*`` helpers, so a wrong type or range
reads the same in every estimator).

Each estimator has a class attribute ``_parameters``: ``{name: rule}``. :func:`validate_params`
checks every constructor parameter against its rule before any data is read; rules that tie two
parameters together stay in the estimator. ``tests/test_sklearn_api.py`` checks that every table
names exactly its class's constructor parameters.
"""

from __future__ import annotations

import inspect
from numbers import Integral

import numpy as np

from factorkit._validation import check_choice, check_float, check_int


class Rule:
    """What a parameter may be; ``check`` raises ``TypeError``/``ValueError`` naming it."""

    def check(self, name: str, value) -> None:  # pragma: no cover - every rule overrides it
        raise NotImplementedError

    def __or__(self, other: Rule) -> Rule:
        return AnyOf(self, other)


class Integer(Rule):
    def __init__(self, minimum: int | None = 1):
        self.minimum = minimum

    def check(self, name, value):
        check_int(name, value, minimum=self.minimum)


class Real(Rule):
    def __init__(self, **bounds):  # check_float's: positive, nonnegative, upper, ...
        self.bounds = bounds

    def check(self, name, value):
        check_float(name, value, **self.bounds)


class Choice(Rule):
    def __init__(self, *options: str):
        self.options = options

    def check(self, name, value):
        check_choice(name, value, self.options)


class Boolean(Rule):
    def check(self, name, value):
        if not isinstance(value, bool | np.bool_):
            raise TypeError(f"{name} must be True or False, got {type(value).__name__} {value!r}")


class Constant(Rule):
    """Exactly this value (``None``, ``'auto'``, ``'same'``)."""

    def __init__(self, value):
        self.value = value

    def check(self, name, value):
        if not (value is self.value or (isinstance(value, str) and value == self.value)):
            raise ValueError(f"{name} must be {self.value!r}, got {value!r}")


class Function(Rule):
    def check(self, name, value):
        if not callable(value):
            raise TypeError(f"{name} must be callable, got {type(value).__name__} {value!r}")


class Anything(Rule):
    """Checked where it is used (arrays, tuples of arrays)."""

    def check(self, name, value):
        return None


class RandomState(Rule):
    """scikit-learn's ``random_state``: None, an int >= 0, a ``numpy.random.RandomState`` or a
    ``numpy.random.Generator``."""

    def check(self, name, value):
        if value is None or isinstance(value, np.random.RandomState | np.random.Generator):
            return
        if isinstance(value, bool) or not isinstance(value, Integral):
            raise TypeError(
                f"{name} must be None, an int, a numpy RandomState or Generator, "
                f"got {type(value).__name__} {value!r}"
            )
        check_int(name, value, minimum=0)


def seed_of(random_state) -> int:
    """An int seed from scikit-learn's ``random_state``: an int as it is; a numpy ``RandomState`` or
    ``Generator`` draws one from its stream (so a shared generator gives each fit its own seed);
    None draws one from NumPy's global ``RandomState``, as scikit-learn does. NumPy only: the
    lean estimators use it too."""
    RandomState().check("random_state", random_state)
    if isinstance(random_state, np.random.Generator):
        return int(random_state.integers(np.iinfo(np.int32).max))
    if isinstance(random_state, np.random.RandomState):
        return int(random_state.randint(np.iinfo(np.int32).max))
    if random_state is None:
        return int(np.random.mtrand._rand.randint(np.iinfo(np.int32).max))  # the global RandomState
    return int(random_state)


class NotString(Rule):
    """Anything but a string (arrays, tuples; checked where used): strings go to a ``Choice``."""

    def check(self, name, value):
        if isinstance(value, str):
            raise TypeError(f"{name} must not be a string here, got {value!r}")


class AnyOf(Rule):
    """Accepted when one rule accepts. Else the error of the last rule that objected to the value
    rather than to its type (a ``ValueError``: ``'hellinger'`` is a string of the wrong name, not
    a number of the wrong type), or the last error when every rule objected to the type."""

    def __init__(self, *rules: Rule):
        self.rules = rules

    def __or__(self, other: Rule) -> Rule:
        return AnyOf(*self.rules, other)

    def check(self, name, value):
        errors = []
        for rule in self.rules:
            try:
                rule.check(name, value)
                return
            except (TypeError, ValueError) as err:
                errors.append(err)
        raise next((e for e in reversed(errors) if isinstance(e, ValueError)), errors[-1])


NONE = Constant(None)


def validate_params(estimator) -> None:
    """Check every constructor parameter of ``estimator`` against its class's ``_parameters``, in
    the table's order (the order the estimator documents them); then refuse, by name, a parameter
    set away from its default where the other settings leave it unused (the estimator's
    ``_applies()``: ``{name: (applies, where it applies)}``), rather than ignore it."""
    for name, rule in type(estimator)._parameters.items():
        rule.check(name, getattr(estimator, name))
    applies = getattr(estimator, "_applies", None)
    if applies is None:
        return
    defaults = {
        name: parameter.default
        for name, parameter in inspect.signature(type(estimator).__init__).parameters.items()
    }
    for name, (used, where) in applies().items():
        value, default = getattr(estimator, name), defaults[name]
        if not used and not _is_default(value, default):
            raise ValueError(
                f"{name} applies with {where} only; got {name}={value!r}, which these settings would "
                f"ignore (leave it at its default, {default!r})"
            )


def _is_default(value, default) -> bool:
    if value is default:
        return True
    try:
        return bool(type(value) is type(default) and value == default)
    except (TypeError, ValueError):  # arrays and the like: not a default
        return False
