"""Long segments in bounded memory: ``exact`` and ``sketch`` on a bert-base-shaped model at 32 ... 512 tokens.

    nice -n 10 python benchmarks/long_segments.py --tokens 128 --json benchmarks/results/long/128.json
    python benchmarks/long_segments.py --summarize benchmarks/results/long/*.json

For one segment of N tokens (the wiki corpus, cut to N) of ``bert_base_random`` (12 layers, 12 heads,
d = 768, random weights), each measured method runs as ``ForwardModeAttribution.scores`` does:
input Jacobians, tangents, the engine's primal pass (``setup_s``), then chunks of tangents of the
size ``attribution.memory_mb`` gives. Where the whole segment is predicted to take under
``--whole-under`` seconds it runs whole (``scores()`` itself); otherwise one warm-up chunk and
``--chunks`` timed chunks run and the time is extrapolated: ``setup_s + tangents * s_per_tangent``
(``extrapolated: true``). Peak memory is the process's peak RSS over the setup and the chunks that
ran, above the RSS before the setup (the model and the data already loaded): it must stay under
``memory_mb``. ``--summarize`` prints the table of several runs and fits ``time ~ n^p`` by least squares
in log-log.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))

import torch  # noqa: E402
from attribution import MODELS, PeakMemory, find_segment, sync  # noqa: E402  (benchmarks/attribution.py)
from bench_json import save_json  # noqa: E402  (benchmarks/bench_json.py)

from bertstory.attribution.exact import Exact  # noqa: E402
from bertstory.attribution.inputs import input_jacobians  # noqa: E402
from bertstory.attribution.memory import plan_memory  # noqa: E402
from bertstory.attribution.sketch import Sketch  # noqa: E402
from bertstory.models import load_encoder  # noqa: E402

METHODS = ("exact_float32", "sketch_float32", "exact_bfloat16")


def setup(method, model, ids, tt):
    """The method's tangents and the engine's primal pass, as ``scores()`` builds them."""
    dtype = method.tangent_dtype(model)
    with torch.no_grad():
        x, inp, E = input_jacobians(model, ids, tt, method.wrt)
        rows, vecs, weights = method.tangents(inp, E)
    return dtype, rows, vecs, weights, method._fast_pusher(model, x, dtype)


def measure(method, model, ids, tt, chunks: int, whole_under: float, chunk_size: int | None = None,
            warmup: int = 1) -> dict:
    """Time (wall and process CPU) and peak memory of ``method`` on one segment: setup, ``warmup`` untimed and
    ``chunks`` timed chunks, extrapolated to all tangents; or the whole segment when that is predicted cheap."""
    n = ids.shape[1]
    L, H = model.config.num_hidden_layers, model.config.num_attention_heads
    with PeakMemory(ids.device) as mem:
        t0, c0 = time.perf_counter(), time.process_time()
        dtype, rows, vecs, weights, push = setup(method, model, ids, tt)
        sync(ids.device)
        setup_s, setup_cpu = time.perf_counter() - t0, time.process_time() - c0
        chunk = chunk_size or plan_memory(n, model.config, dtype, method.memory_mb, ids.device).chunk
        S2 = torch.zeros(L, H, n, n, dtype=torch.float32, device=ids.device)
        wall, cpu, done, start, total = 0.0, 0.0, 0, 0, len(rows)
        for k in range(warmup + chunks):
            if start >= total:
                break
            stop = min(start + chunk, total)
            t, c = time.perf_counter(), time.process_time()
            push(rows[start:stop], vecs[start:stop].to(dtype), weights[start:stop].float(), S2)
            sync(ids.device)
            if k >= warmup:
                wall, cpu, done = wall + time.perf_counter() - t, cpu + time.process_time() - c, done + stop - start
            start = stop
    per, per_cpu = wall / max(done, 1), cpu / max(done, 1)
    res = dict(dtype=str(dtype).removeprefix("torch."), tangents=total, chunk=chunk, setup_s=setup_s,
               setup_cpu_s=setup_cpu, s_per_tangent=per, cpu_s_per_tangent=per_cpu, tangents_timed=done,
               peak_mb=mem.mb, peak_rss_mb=mem.absolute_mb, memory_mb=method.memory_mb, extrapolated=True,
               seconds=setup_s + total * per, cpu_seconds=setup_cpu + total * per_cpu)
    if res["seconds"] < whole_under:  # cheap enough: the whole segment through scores() itself
        with PeakMemory(ids.device) as mem:
            t, c = time.perf_counter(), time.process_time()
            method.scores(model, ids, tt)
            sync(ids.device)
        res.update(seconds=time.perf_counter() - t, cpu_seconds=time.process_time() - c, extrapolated=False,
                   peak_mb=max(res["peak_mb"], mem.mb))
    return res


def run(args) -> dict:
    device = torch.device(args.device)
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    with PeakMemory(device) as load:
        spec = dict(MODELS[args.model])
        enc = load_encoder(spec.pop("name_or_path", "minilm"), name=args.model, **spec)
        model = enc.model.to(device)
    model_mb = sum(p.numel() * p.element_size() for p in model.parameters()) / 2**20
    n = args.tokens
    ids, tt, _ = find_segment(enc.tokenizer, n)
    ids, tt = ids.to(device), tt.to(device)
    out = dict(model=args.model, tokens=n, device=device.type, threads=torch.get_num_threads(),
               model_mb=model_mb, model_load_rss_mb=load.mb, loadavg=os.getloadavg(), results={})
    kw = dict(memory_mb=args.memory_mb) if args.memory_mb else {}
    methods = {"exact_float32": lambda: Exact(dtype="float32", **kw),
               "sketch_float32": lambda: Sketch(probes=args.probes, dtype="float32", **kw),
               "exact_bfloat16": lambda: Exact(dtype="bfloat16", **kw)}
    for key in args.methods:
        name = key.replace("sketch", f"sketch{args.probes}")
        r = measure(methods[key](), model, ids, tt, args.chunks, args.whole_under, warmup=args.warmup)
        out["results"][name] = {**r, "loadavg": os.getloadavg()}
        print(name, json.dumps(out["results"][name]), flush=True)
    if args.bf16_tangents:
        r = measure(Exact(dtype="bfloat16", **kw), model, ids, tt, 1, 0.0, chunk_size=args.bf16_tangents, warmup=0)
        name = f"exact_bfloat16_{args.bf16_tangents}tangents"  # not --methods exact_bfloat16's key: both may run
        out["results"][name] = r
        print(name, json.dumps(r), flush=True)
    return out


def fit_exponent(ns: list[int], ts: list[float]) -> float:
    """Least-squares slope p of log t = p log n + c."""
    x, y = [math.log(n) for n in ns], [math.log(t) for t in ts]
    mx, my = sum(x) / len(x), sum(y) / len(y)
    return sum((a - mx) * (b - my) for a, b in zip(x, y, strict=True)) / sum((a - mx) ** 2 for a in x)


def human(s: float) -> str:
    return f"{s:.1f} s" if s < 120 else (f"{s / 60:.1f} min" if s < 7200 else f"{s / 3600:.1f} h")


def summarize(paths: list[Path]) -> str:
    runs = sorted((json.loads(p.read_text()) for p in paths), key=lambda r: r["tokens"])
    names = sorted({k for r in runs for k in r["results"]})
    lines = ["| tokens | method | wall per segment | CPU per segment | setup wall | chunk | peak above model (MB) "
             "| memory_mb | load avg |", "|---|---|---|---|---|---|---|---|---|"]
    for r in runs:
        for name in names:
            m = r["results"].get(name)
            if m is None:
                continue
            how = (f"extrapolated: {m['tangents_timed']:,} of {m['tangents']:,} tangents"
                   if m["extrapolated"] else "whole segment")
            lines.append(f"| {r['tokens']} | {name} | {human(m['seconds'])} ({how}) | {human(m['cpu_seconds'])} "
                         f"| {m['setup_s']:.1f} s | {m['chunk']} | {m['peak_mb']:.0f} | {m['memory_mb']} "
                         f"| {m.get('loadavg', r['loadavg'])[0]:.1f} |")
    lines.append("")
    for name in names:
        for key in ("seconds", "cpu_seconds"):
            pts = [(r["tokens"], r["results"][name][key]) for r in runs if name in r["results"]]
            if len(pts) >= 2:
                p = fit_exponent([a for a, _ in pts], [b for _, b in pts])
                lines.append(f"{name}: {key} ~ n^{p:.2f} over n = {', '.join(str(a) for a, _ in pts)}")
    return "\n".join(lines)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--tokens", type=int, default=128)
    p.add_argument("--model", choices=sorted(MODELS), default="bert_base_random")
    p.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    p.add_argument("--probes", type=int, default=32)
    p.add_argument("--chunks", type=int, default=1, help="timed chunks")
    p.add_argument("--warmup", type=int, default=1, help="untimed chunks before them")
    p.add_argument("--whole-under", type=float, default=150.0, help="run whole segments predicted under this (s)")
    p.add_argument("--memory-mb", type=int, default=None, help="attribution.memory_mb (default: the method's)")
    p.add_argument("--methods", nargs="+", choices=METHODS, default=list(METHODS[:2]),
                   help="what to measure (exact_bfloat16: where bf16 matmuls are fast)")
    p.add_argument("--bf16-tangents", type=int, default=0,
                   help="also time one chunk of this many bf16 tangents (CPUs without bf16 units)")
    p.add_argument("--merge", action="store_true", help="add the results to those already in --json")
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    p.add_argument("--json", type=Path, default=None)
    p.add_argument("--summarize", type=Path, nargs="+", default=None, help="print the table of these JSON files")
    args = p.parse_args(argv)
    if args.summarize:
        print(summarize(args.summarize))
        return None
    res = run(args)
    if args.json and args.merge and args.json.is_file():
        old = json.loads(args.json.read_text())
        res = {**old, "results": {**old["results"], **res["results"]}}
    save_json(res, args.json)
    return res


if __name__ == "__main__":
    main()
