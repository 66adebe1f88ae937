"""``attribution=none``: attention only, no attribution (the fastest path)."""

from __future__ import annotations

from bertstory.attribution.base import Attribution, Attributions


class NoAttribution(Attribution):
    """No maps: the run keeps attention statistics only (no attribution, discrepancy or persistence)."""

    NAME = "none"
    produces_maps = False

    def attribute(self, model, input_ids, attention_mask, token_type_ids=None) -> Attributions:
        return Attributions(maps=None)
