"""Write ``viewer.html``: the data as inline JSON, the plain-JavaScript viewer and its CSS inline.

The page loads nothing: a Content-Security-Policy ``default-src 'none'`` forbids every request
(scripts and styles only inline, images only ``data:``), so it opens from a file without a network.
"""

from __future__ import annotations

import html
import json
import os
from dataclasses import dataclass
from pathlib import Path

from omegaconf import DictConfig

from bertstory.errors import BertstoryError
from bertstory.files import write_text_atomic
from bertstory.results.run import Results
from bertstory.viewer.options import ViewerOptions
from bertstory.viewer.payload import check_same_segments, run_payload

STATIC = Path(__file__).parent / "static"
FILE = "viewer.html"
CSP = "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; img-src data:"


@dataclass
class ViewerPage:
    """What :func:`build` wrote: the page and its size in bytes."""

    path: Path
    bytes: int

    def describe(self) -> str:
        size = f"{self.bytes / 1e6:.1f} MB" if self.bytes >= 1e6 else f"{self.bytes / 1e3:.0f} kB"
        return f"{self.path} ({size})"


def inline_json(data: object) -> str:
    """JSON safe inside a ``<script>`` element (no ``</`` can close it)."""
    return json.dumps(data, separators=(",", ":"), allow_nan=False).replace("</", "<\\/")


def page_html(runs: list[dict]) -> str:
    """The whole page for one or two runs' payloads."""
    title = "bertstory viewer: " + " vs ".join(r["label"] for r in runs)
    css = (STATIC / "viewer.css").read_text(encoding="utf-8")
    js = (STATIC / "viewer.js").read_text(encoding="utf-8")
    body = (STATIC / "viewer_body.html").read_text(encoding="utf-8")
    return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
            f'<meta http-equiv="Content-Security-Policy" content="{CSP}">'
            f"<title>{html.escape(title)}</title><style>{css}</style></head>\n<body>\n{body}\n"
            f'<script type="application/json" id="bertstory-data">{inline_json({"runs": runs})}</script>\n'
            f"<script>{js}</script>\n</body></html>\n")


def build(run_dir: str | os.PathLike, cfg: DictConfig | None = None, compare: str | os.PathLike | None = None,
          out: str | os.PathLike | None = None, max_segments: int | None = None,
          dtype: str | None = None) -> ViewerPage:
    """Write the viewer of the run in ``run_dir`` (and of ``compare``, a run over the same segments).

    ``cfg`` defaults to the run's ``.hydra/config.yaml``; ``max_segments``/``dtype`` to its ``viewer`` block.
    The page goes to ``out``, else ``run_dir/viewer.html`` (``run_dir/viewer-compare.html`` with ``compare``).
    """
    run = Results(run_dir)
    if cfg is not None:
        run.config = cfg  # the tokenizer of the run's model, also before Hydra saved .hydra/config.yaml
    options = ViewerOptions.from_config(run.config)
    options = ViewerOptions(options.enabled, max_segments or options.max_segments, dtype or options.dtype)
    if not run.indices():
        raise BertstoryError(f"{run.run_dir} saved no maps (writer.max_segments=0?): rerun with writer.max_segments "
                             "at least 1 to view segments")
    runs = [run_payload(run, options.max_segments, options.dtype)]
    if compare is not None:
        runs.append(run_payload(Results(compare), options.max_segments, options.dtype))
        check_same_segments(runs[0], runs[1])
    path = Path(out) if out is not None else run.run_dir / ("viewer-compare.html" if compare else FILE)
    write_text_atomic(page_html(runs), path)
    return ViewerPage(path, path.stat().st_size)


def build_after_run(run_dir: str | os.PathLike, cfg: DictConfig) -> str:
    """The end of an analysis run: write the viewer if ``viewer.enabled``; the line to print."""
    if not ViewerOptions.from_config(cfg).enabled:
        return "viewer: off (viewer.enabled=false)"
    if not Results(run_dir).indices():
        return "viewer: not written, no saved maps (writer.max_segments=0)"
    return f"viewer: {build(run_dir, cfg=cfg).describe()}"
