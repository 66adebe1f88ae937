"""The ``report`` block of a run's config, read in one place (the analysis checks it before the work)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from omegaconf import DictConfig, OmegaConf

from bertstory.errors import BertstoryError

DEFAULT_SEGMENTS = 3
DEFAULT_FORMATS = ("png",)
FORMATS = ("png", "pdf", "svg")


@dataclass
class ReportOptions:
    """``report.enabled``, ``report.heads`` (extra ``[layer, head]`` pairs, 0-based), ``report.segments`` and
    ``report.formats`` (the figure files: png always, pdf and svg on request)."""

    enabled: bool = True
    heads: list[list[int]] = field(default_factory=list)
    segments: int = DEFAULT_SEGMENTS
    formats: list[str] = field(default_factory=lambda: list(DEFAULT_FORMATS))

    @classmethod
    def from_config(cls, cfg: DictConfig | None) -> ReportOptions:
        """The options of a composed config (defaults for what it lacks)."""
        block = cfg.get("report") if cfg is not None else None
        if block is None:
            return cls()
        values = OmegaConf.to_container(block, resolve=True)
        return cls(enabled=bool(values.get("enabled", True)), heads=list(values.get("heads") or []),
                   segments=int(values.get("segments", DEFAULT_SEGMENTS)),
                   formats=check_formats(values.get("formats") or DEFAULT_FORMATS))


def check_formats(formats: Sequence[str] | str) -> list[str]:
    """Validate ``report.formats``; png is always written (report.html and W&B show it) and comes first."""
    formats = [formats] if isinstance(formats, str) else list(formats)
    bad = [f for f in formats if f not in FORMATS]
    if bad:
        raise BertstoryError(f"report.formats has {bad}: choose from {list(FORMATS)}, e.g. report.formats=[png,pdf]")
    return ["png"] + [f for f in dict.fromkeys(formats) if f != "png"]


def check_heads(heads: Sequence[Sequence[int]], layers: int, n_heads: int) -> list[tuple[int, int]]:
    """Validate ``report.heads`` (a list of ``[layer, head]``, 0-based) against the model's shape."""
    out = []
    for entry in heads or ():
        if len(entry) != 2 or not all(isinstance(v, int) for v in entry):
            raise BertstoryError(f"report.heads entry {list(entry)} is not [layer, head]: "
                                 "write report.heads=[[5,3],[0,1]] (0-based)")
        layer, head = entry
        if not (0 <= layer < layers and 0 <= head < n_heads):
            raise BertstoryError(f"report.heads entry [{layer},{head}] is outside the model's {layers} layers x "
                                 f"{n_heads} heads: use 0-based indices below those")
        out.append((layer, head))
    return out
