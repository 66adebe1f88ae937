"""Attribution methods, one module each, built from ``conf/attribution/*.yaml`` by Hydra's ``_target_``.

Every method has the same interface (:class:`~bertstory.attribution.base.Attribution`):
``method.attribute(model, input_ids, attention_mask, token_type_ids)`` returns
:class:`~bertstory.attribution.base.Attributions`: the row-normalised maps (B, L, H, n, n), or None
for ``none``, and the count of rows that needed the zero-row rule.
"""

from __future__ import annotations

from bertstory.attribution.base import Attribution, Attributions, normalise_rows
from bertstory.errors import BertstoryError


def build_method(cfg) -> Attribution:
    """The method described by the ``attribution`` config group (``_target_`` and its options)."""
    from hydra.errors import InstantiationException
    from hydra.utils import instantiate

    name = cfg.get("name", "?")
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


__all__ = ["Attribution", "Attributions", "build_method", "normalise_rows"]
