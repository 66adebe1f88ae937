"""``metrics.json`` (schema 1, DESIGN.md) as a typed view: the one owner of the file's layout.

>>> m = RunMetrics.read("outputs/2025-01-01/12-00-00/metrics.json")
>>> m.layers, m.heads, m.has_attribution
>>> m.table("discrepancy/js")[5][3]          # LxH tables by flat name
>>> m.layer_means("attention/patterns/cls")  # head means per layer
>>> m.stderr("discrepancy/js")               # segment-clustered SEs (None for files made before them)
>>> m.layer_stderr("discrepancy/js")         # SEs of the head means per layer

Every other module reads and writes metrics.json through this class; none indexes the raw dict.
An LxH table is ``[layer][head]`` nested lists of floats, None where a mean had nothing to average.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from bertstory.errors import BertstoryError
from bertstory.files import write_json_atomic

SCHEMA = 1
FILE = "metrics.json"
TABLE_BLOCKS = ("attention", "attribution", "uniform", "discrepancy")
Table = list[list[float | None]]


def layer_mean(table: Table) -> list[float | None]:
    """Mean over the heads of each layer of an LxH table (None entries left out; None if all are)."""
    out = []
    for row in table:
        values = [v for v in row if v is not None]
        out.append(sum(values) / len(values) if values else None)
    return out


def as_array(table: Table) -> np.ndarray:
    """An LxH table as a float array, None -> nan."""
    return np.array([[math.nan if v is None else v for v in row] for row in table], dtype=float)


@dataclass
class RunMetrics:
    """One run's metrics.json. ``raw`` is the JSON object itself (schema 1, only ever added to)."""

    raw: dict[str, Any]

    # ------------------------------------------------------------------ files

    @classmethod
    def read(cls, path: str | os.PathLike) -> RunMetrics:
        """Read ``path`` (a metrics.json file, or the run directory holding one)."""
        path = Path(path)
        if path.is_dir():
            path = path / FILE
        if not path.is_file():
            raise BertstoryError(f"no {FILE} in {path.parent}: give the directory of a finished analysis run")
        try:
            raw = json.loads(path.read_text())
        except (OSError, ValueError) as e:
            raise BertstoryError(f"cannot read {path} ({e}): rerun the analysis into a new directory") from e
        return cls(raw)

    def write(self, path: str | os.PathLike) -> Path:
        """Write atomically to ``path`` (a file, or a run directory)."""
        path = Path(path)
        return write_json_atomic(self.raw, path / FILE if path.is_dir() else path)

    def __getitem__(self, key: str) -> Any:
        """Read access to the JSON object, for users of the results API (``run.metrics["discrepancy"]``)."""
        return self.raw[key]

    def __contains__(self, key: str) -> bool:
        return key in self.raw

    # ------------------------------------------------------------------ facts

    @property
    def kind(self) -> str:
        """``analysis``, or ``finetune`` for a train.py run."""
        return self.raw.get("kind", "analysis")

    @property
    def model(self) -> dict[str, Any]:
        return self.raw["model"]

    @property
    def method(self) -> dict[str, Any]:
        return self.raw.get("method", {})

    @property
    def data(self) -> dict[str, Any]:
        return self.raw["data"]

    @property
    def layers(self) -> int:
        return int(self.model["layers"])

    @property
    def heads(self) -> int:
        return int(self.model["heads"])

    @property
    def shape(self) -> tuple[int, int]:
        return self.layers, self.heads

    @property
    def model_name(self) -> str:
        return str(self.model["name"])

    @property
    def method_name(self) -> str:
        return str(self.method.get("name", "?"))

    @property
    def has_attribution(self) -> bool:
        """Whether the run has attribution maps (every method but ``none``)."""
        return "attribution" in self.raw

    @property
    def persistence(self) -> dict[str, Any] | None:
        return self.raw.get("persistence")

    def label(self) -> str:
        """``model/method``, for legends and titles."""
        return f"{self.model_name}/{self.method_name}"

    def title(self) -> str:
        """``name (LxH), method, N segments``."""
        return f"{self.model_name} ({self.layers}x{self.heads}), {self.method_name}, {self.data['segments']} segments"

    # ------------------------------------------------------------------ LxH tables

    def tables(self, blocks: tuple[str, ...] = TABLE_BLOCKS) -> dict[str, Table]:
        """Every LxH table of ``blocks`` by a flat name such as ``attention/patterns/cls`` or ``discrepancy/js``."""
        out: dict[str, Table] = {}
        for block in blocks:
            for key, value in self.raw.get(block, {}).items():
                if key == "patterns":
                    out.update({f"{block}/patterns/{p}": t for p, t in value.items()})
                else:
                    out[f"{block}/{key}"] = value
        return out

    def table(self, name: str) -> Table:
        """One LxH table by its flat name (``block/key`` or ``block/patterns/p``)."""
        node: Any = self.raw
        for part in name.split("/"):
            if not isinstance(node, dict) or part not in node:
                raise KeyError(f"{FILE} has no table {name}")
            node = node[part]
        return node

    def has_table(self, name: str) -> bool:
        try:
            self.table(name)
        except KeyError:
            return False
        return True

    def array(self, name: str) -> np.ndarray:
        """One LxH table as a float array (None -> nan)."""
        return as_array(self.table(name))

    def layer_means(self, name: str) -> list[float | None]:
        """Head means per layer of one table."""
        return layer_mean(self.table(name))

    # ------------------------------------------------------------------ standard errors (added to schema 1)

    @property
    def has_stderr(self) -> bool:
        """Whether the file has the ``stderr`` block (files written before it have not)."""
        return "stderr" in self.raw

    def stderr(self, name: str) -> Table | None:
        """The segment-clustered SEs of one LxH table, or None (an older file, or a table without SEs)."""
        return self._walk(("stderr", *name.split("/")))

    def layer_stderr(self, name: str) -> list[float | None] | None:
        """The SEs of one table's head means per layer, or None."""
        return self._walk(("stderr", "layer_means", *name.split("/")))

    def _walk(self, parts: tuple[str, ...]) -> Any:
        node: Any = self.raw
        for part in parts:
            if not isinstance(node, dict) or part not in node:
                return None
            node = node[part]
        return node
