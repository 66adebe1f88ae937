"""The ``viewer`` block of a run's config, read in one place."""

from __future__ import annotations

from dataclasses import dataclass

from omegaconf import DictConfig, OmegaConf

from bertstory.errors import BertstoryError

DTYPES = ("float16", "uint8")


@dataclass
class ViewerOptions:
    """``viewer.enabled``, ``viewer.max_segments`` (saved segments on the page) and ``viewer.dtype``.

    ``dtype`` is how each map value is stored in the page: ``float16`` (relative error <= 2^-11, exact for
    the default float16 shards) or ``uint8`` (``round(255 v)``, absolute error <= 1/510, half the size).
    """

    enabled: bool = True
    max_segments: int = 32
    dtype: str = "float16"

    def __post_init__(self) -> None:
        if self.dtype not in DTYPES:
            raise BertstoryError(f"viewer.dtype={self.dtype} is not one of {', '.join(DTYPES)}: pick one of those")
        if self.max_segments < 1:
            raise BertstoryError(f"viewer.max_segments={self.max_segments} must be at least 1")

    @classmethod
    def from_config(cls, cfg: DictConfig | None) -> ViewerOptions:
        """The options of a composed config (defaults for what it lacks)."""
        block = cfg.get("viewer") if cfg is not None else None
        if block is None:
            return cls()
        values = OmegaConf.to_container(block, resolve=True)
        default = cls()
        return cls(enabled=bool(values.get("enabled", default.enabled)),
                   max_segments=int(values.get("max_segments") or default.max_segments),
                   dtype=str(values.get("dtype", default.dtype)))
