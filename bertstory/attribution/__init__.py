"""Attribution methods, one module each, built from ``conf/attribution/*.yaml`` by Hydra's ``_target_``.

Every method has the same interface (:class:`~bertstory.attribution.base.Attribution`):
``method.attribute(model, input_ids, attention_mask, token_type_ids)`` returns
:class:`~bertstory.attribution.base.Attributions`: the row-normalised maps (B, L, H, n, n), or None
for ``none``, and the count of rows that needed the zero-row rule.
"""

from __future__ import annotations

import inspect

from bertstory.attribution.base import Attribution, Attributions, normalise_rows
from bertstory.errors import BertstoryError


def build_method(cfg) -> Attribution:
    """The method described by the ``attribution`` config group (``_target_`` and its options)."""
    from hydra.errors import InstantiationException
    from hydra.utils import instantiate

    name = cfg.get("name", "?")
    check_options(cfg, name)
    try:
        return instantiate(cfg, _convert_="all")
    except InstantiationException as e:
        cause = e
        while cause.__cause__ is not None:
            cause = cause.__cause__
        if isinstance(cause, BertstoryError):
            raise cause from None
        raise BertstoryError(f"bad option for attribution={name}: {cause}: check the attribution.* overrides "
                             f"against conf/attribution/{name}.yaml") from None


def accepted_options(cls: type) -> set[str]:
    """The keyword options a method class takes: the named ``__init__`` parameters along its MRO."""
    names: set[str] = set()
    for klass in cls.__mro__:
        init = klass.__dict__.get("__init__")
        if init is None:
            continue
        for p in inspect.signature(init).parameters.values():
            if p.name != "self" and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY):
                names.add(p.name)
    return names


def check_options(cfg, name: str) -> None:
    """A one-line error for an ``attribution.*`` key the method does not take, naming the ones it does."""
    from hydra.utils import get_class

    target = cfg.get("_target_")
    if target is None:
        raise BertstoryError(f"attribution={name} has no _target_: give conf/attribution/{name}.yaml a method class")
    try:
        cls = get_class(target)
    except Exception as e:  # hydra wraps import errors of every kind
        raise BertstoryError(f"attribution._target_={target} cannot be imported ({e}): fix the class path") from None
    known = accepted_options(cls)
    unknown = sorted(k for k in cfg if k != "_target_" and k not in known)
    if unknown:
        raise BertstoryError(f"unknown option attribution.{unknown[0]} for attribution={name}: "
                             f"it takes {', '.join(sorted(known))}")


__all__ = ["Attribution", "Attributions", "build_method", "normalise_rows"]
