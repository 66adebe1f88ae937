"""Attribution methods, one module each, selected by ``attribution=NAME`` (``conf/attribution/``).

Every method has the same interface (:class:`~bertstory.attribution.base.Attribution`):
``method.attribute(model, input_ids, attention_mask, token_type_ids)`` returns the
row-normalised attribution (B, L, H, n, n), or None for ``none``.
"""

from bertstory.attribution.base import Attribution, normalise_rows
from bertstory.attribution.exact import Exact, GradXInput, Sketch
from bertstory.attribution.grad_sum import GradSum
from bertstory.attribution.none import NoAttribution
from bertstory.attribution.rollout import Rollout

METHODS: dict[str, type[Attribution]] = {
    cls.name: cls for cls in (Exact, GradXInput, Sketch, GradSum, Rollout, NoAttribution)
}


def accepted_options(cls: type[Attribution]) -> set[str]:
    """The keyword options a method's constructors name (over its class hierarchy; ``**kw`` excluded)."""
    import inspect

    names: set[str] = set()
    for klass in cls.__mro__:
        init = klass.__dict__.get("__init__")
        if init is None:
            continue
        for p in inspect.signature(init).parameters.values():
            if p.name != "self" and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY):
                names.add(p.name)
    return names


def build_attribution(name: str, **options) -> Attribution:
    """The method called ``name`` with its options (the ``attribution`` config group minus ``name``)."""
    from bertstory.errors import BertstoryError

    if name not in METHODS:
        raise BertstoryError(f"unknown attribution method {name!r}: choose one of {', '.join(METHODS)}")
    known = accepted_options(METHODS[name])
    unknown = sorted(set(options) - known)
    if unknown:
        raise BertstoryError(f"unknown option attribution.{unknown[0]} for attribution={name}: "
                             f"use {', '.join(sorted(known)) or 'no options'}")
    try:
        return METHODS[name](**options)
    except (TypeError, ValueError) as e:
        raise BertstoryError(f"bad option for attribution={name}: {e}") from e


__all__ = ["METHODS", "Attribution", "build_attribution", "normalise_rows"]
