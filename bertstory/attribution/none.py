"""``attribution=none``: attention only, no attribution (the fastest path)."""

from bertstory.attribution.base import Attribution


class NoAttribution(Attribution):
    name = "none"

    def attribute(self, model, input_ids, attention_mask, token_type_ids=None):
        return None
