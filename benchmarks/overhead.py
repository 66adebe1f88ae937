"""Where a run's wall time goes: inside ``attribute()`` (the kernel) and everything else.

    WANDB_MODE=offline nice -n 10 python benchmarks/overhead.py [analyze.py overrides ...] [--json OUT]

Runs ``bertstory.run.analysis.run`` in this process on the composed config (the default run when no
override is given: MiniLM, 64 wiki segments, ``attribution=quick``, W&B offline, the report) and times,
by wrapping the functions the run calls:

- ``setup``: building the encoder, the method, the data (reading, tokenising) and the trainer;
- ``attribute``: ``method.attribute`` (the kernel);
- ``attention``: the attention-only forward pass of ``predict_step``;
- ``shards``: the writer's ``write_on_batch_end`` on the training thread (serialising and writing, or
  handing the batch to the background writer);
- ``statistics``: the rest of ``predict_step`` (finite checks, pattern masks, metric updates);
- ``predict other``: the rest of ``trainer.predict`` (data loading, Lightning's loop, the writer's wait);
- ``metrics``: computing the statistics and writing metrics.json; ``report``: figures and report.html;
  ``viewer``: the wait for viewer.html beyond the figures (it is built in a forked process beside them);
  ``logger``: sending the results to W&B and finishing the W&B run; ``other``: the rest of ``run()``.

``outside`` is everything but ``attribute``, as a share of ``run()``'s wall time.
"""

from __future__ import annotations

import argparse
import functools
import os
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("WANDB_MODE", "offline")
os.environ.setdefault("WANDB_SILENT", "true")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_json import save_json  # noqa: E402  (benchmarks/bench_json.py)

SPANS: dict[str, float] = defaultdict(float)


def wrap(owner, name: str, span: str) -> None:
    """Add the wall time of every call of ``owner.name`` to ``SPANS[span]``."""
    fn = getattr(owner, name)

    @functools.wraps(fn)
    def timed(*a, **kw):
        t = time.perf_counter()
        try:
            return fn(*a, **kw)
        finally:
            SPANS[span] += time.perf_counter() - t

    setattr(owner, name, timed)


def instrument() -> None:
    import lightning

    import bertstory.run.analysis as analysis
    import bertstory.run.module as module
    from bertstory.attribution.base import Attribution
    from bertstory.attribution.none import NoAttribution
    from bertstory.run.writer import MapWriter
    from bertstory.stats.collection import AnalysisMetrics

    wrap(Attribution, "attribute", "attribute")
    wrap(NoAttribution, "attribute", "attribute")
    wrap(module, "attention_maps", "attention")
    wrap(module.AnalysisModule, "predict_step", "predict_step")
    wrap(MapWriter, "write_on_batch_end", "shards")
    wrap(lightning.Trainer, "predict", "predict")
    wrap(analysis, "draw_report", "report")
    wrap(analysis, "write_report", "report")
    wrap(analysis, "finish", "finish")
    wrap(analysis, "log_results", "logger")
    wrap(analysis, "finish_wandb_run", "logger")
    wrap(analysis.RunMetrics, "write", "metrics")
    wrap(AnalysisMetrics, "compute_block", "metrics")
    wrap(analysis, "run", "run")


def split(spans: dict[str, float]) -> dict[str, float]:
    """The disjoint parts of ``run()``'s wall time."""
    parts = {
        "attribute": spans["attribute"],
        "attention": spans["attention"],
        "statistics": spans["predict_step"] - spans["attribute"] - spans["attention"],
        "shards": spans["shards"],
        "predict other": spans["predict"] - spans["predict_step"] - spans["shards"],
        "metrics": spans["metrics"],
        "viewer": spans["finish"] - spans["report"] - spans["logger"],
        "report": spans["report"],
        "logger": spans["logger"],
    }
    before = spans["run"] - spans["predict"] - spans["metrics"] - spans["finish"]
    parts["setup and other"] = before
    return parts


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("overrides", nargs="*", help="analyze.py overrides")
    p.add_argument("--json", type=Path, default=None)
    args = p.parse_args(argv)
    from hydra import compose, initialize_config_dir

    instrument()
    import bertstory.run.analysis as analysis

    with tempfile.TemporaryDirectory() as tmp:
        overrides = [*args.overrides, f"hydra.run.dir={tmp}"]
        with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
            cfg = compose(config_name="analyze", overrides=overrides)
        if cfg.get("logger") is not None and "save_dir" in cfg.logger:
            cfg.logger.save_dir = tmp  # analyze.py's Hydra run folder; composed here without a Hydra run
        cwd = os.getcwd()
        os.chdir(tmp)  # W&B's offline folder and anything relative land in the temporary folder
        try:
            analysis.run(cfg, Path(tmp) / "run")
        finally:
            os.chdir(cwd)
    parts = split(SPANS)
    total = SPANS["run"]
    outside = total - parts["attribute"]
    res = {"overrides": args.overrides, "run_s": total, "parts_s": parts, "outside_s": outside,
           "outside_share": outside / total, "predict_outside_share": (SPANS["predict"] - parts["attribute"])
           / SPANS["predict"], "loadavg": os.getloadavg()}
    print(f"\nrun() wall time {total:.2f} s; outside attribute(): {outside:.2f} s = {100 * outside / total:.1f}%"
          f" (inside trainer.predict: {100 * res['predict_outside_share']:.1f}%)")
    for k, v in parts.items():
        print(f"  {k:<16} {v:8.2f} s  {100 * v / total:5.1f}%")
    save_json(res, args.json)
    return res


if __name__ == "__main__":
    main()
