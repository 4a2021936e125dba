"""scikit-learn's estimator protocol without importing scikit-learn.

``import sklearn.base`` costs about 0.65 s on a cold start (it pulls in ``scipy.stats`` through
``sklearn.utils``), more than QWEM's whole fit on a 300k-token corpus. :class:`LeanEstimator`
gives an estimator the part of ``sklearn.base.BaseEstimator`` a user touches (``get_params``,
``set_params``, ``repr``, ``sklearn.base.clone``, ``__sklearn_tags__``), with the same rules:
``__init__`` stores its explicit keyword parameters and nothing else, unknown names in
``set_params`` are refused by name. scikit-learn is imported only if its tags are asked for.
"""

from __future__ import annotations

import inspect


class LeanEstimator:
    """Parameters as scikit-learn's ``BaseEstimator`` handles them (see the module docstring)."""

    @classmethod
    def _get_param_names(cls) -> list[str]:
        init = cls.__init__
        if init is object.__init__:
            return []
        parameters = inspect.signature(init).parameters.values()
        for p in parameters:
            if p.kind == p.VAR_POSITIONAL or p.kind == p.VAR_KEYWORD:
                raise RuntimeError(f"{cls.__name__}.__init__ must name its parameters (no *args / **kwargs)")
        return sorted(p.name for p in parameters if p.name != "self")

    def get_params(self, deep: bool = True) -> dict:
        """The constructor parameters and their values (``deep`` as scikit-learn: nested estimators)."""
        params = {}
        for name in self._get_param_names():
            value = getattr(self, name)
            if deep and hasattr(value, "get_params") and not isinstance(value, type):
                params.update((f"{name}__{key}", item) for key, item in value.get_params().items())
            params[name] = value
        return params

    def set_params(self, **params) -> LeanEstimator:
        """Set constructor parameters; an unknown name is refused, naming the valid ones."""
        valid = self._get_param_names()
        for name, value in params.items():
            if name not in valid:
                raise ValueError(
                    f"Invalid parameter {name!r} for estimator {type(self).__name__}. "
                    f"Valid parameters are: {valid!r}."
                )
            setattr(self, name, value)
        return self

    def __repr__(self) -> str:
        defaults = {
            name: p.default
            for name, p in inspect.signature(type(self).__init__).parameters.items()
            if p.default is not p.empty
        }
        changed = []
        for name in self._get_param_names():
            value = getattr(self, name, None)
            default = defaults.get(name, inspect.Parameter.empty)
            if default is inspect.Parameter.empty or not _same(value, default):
                changed.append(f"{name}={value!r}")
        return f"{type(self).__name__}({', '.join(changed)})"

    def __sklearn_tags__(self):
        from sklearn.utils import Tags, TargetTags

        return Tags(
            estimator_type=None,
            target_tags=TargetTags(required=False),
            transformer_tags=None,
            regressor_tags=None,
            classifier_tags=None,
        )


def _same(a, b) -> bool:
    try:
        return bool(a == b) and type(a) is type(b)
    except (TypeError, ValueError):  # arrays and the like: compare by identity
        return a is b
