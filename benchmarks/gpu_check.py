"""One command for a GPU machine: does every CUDA path work, and how fast is it (``benchmarks/gpu_check.sh``).

    bash benchmarks/gpu_check.sh [--out DIR]          # on a machine with CUDA GPUs, under 8 minutes
    bash benchmarks/gpu_check.sh --cpu-dry-run        # the same steps on CPU with tiny sizes (CI)

Steps, each a subprocess with a time limit; the results go to ``DIR/gpu_check.json`` and ``DIR/summary.md``:

1. ``tests``: the ``gpu``-marked tests (``pytest -m gpu``);
2. ``bench_minilm``, ``bench_bert_base``: ``benchmarks/attribution.py --device cuda --tf32`` at 128 tokens
   (exact in TF32 and in bfloat16, sketch, grad_sum, the naive loop sampled): the paper setting's cost
   per segment (bert-base shape, 128 tokens) measured;
3. ``run_cpu``, ``run_gpu``, ``run_ddp``: ``analyze.py`` on 16 wiki segments with ``trainer=cpu``,
   ``trainer=gpu`` and ``trainer=ddp`` on all visible GPUs (``attribution=quick``, ``dtype=auto``:
   bfloat16 on the GPU); ``compare_gpu``, ``compare_ddp``: every number of their metrics.json against
   the CPU run's, within ``--tolerance`` (bfloat16/TF32 round-off).

``--cpu-dry-run`` runs the same steps on CPU: ``model=tiny`` with 4 segments, the benchmark on
``tiny`` at 10 tokens, "gpu" and "ddp" as one and two CPU processes, float32 (tolerance 1e-5).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def differences(a, b, path: str = "") -> list[tuple[str, float]]:
    """``(path, |a - b|)`` for every number of metrics.json ``a`` (inf where ``b`` lacks it or is not a number)."""
    if isinstance(a, dict):
        return [d for k, v in a.items() for d in differences(v, b.get(k) if isinstance(b, dict) else None,
                                                             f"{path}.{k}")]
    if isinstance(a, list):
        if not isinstance(b, list) or len(a) != len(b):
            return [(path, math.inf)]
        return [d for i, (x, y) in enumerate(zip(a, b, strict=True)) for d in differences(x, y, f"{path}[{i}]")]
    if isinstance(a, bool) or not isinstance(a, int | float):
        return []
    if not isinstance(b, int | float) or isinstance(b, bool):
        return [(path, math.inf)]
    return [(path, abs(a - b))]


def compare(ref: Path, other: Path, tolerance: float) -> dict:
    """The largest difference between the statistics blocks of two metrics.json files."""
    a, b = json.loads(ref.read_text()), json.loads(other.read_text())
    blocks = ("attention", "attribution", "uniform", "discrepancy")
    diffs = [d for k in blocks if k in a for d in differences(a[k], b.get(k), k)]
    worst = max(diffs, key=lambda d: d[1], default=("", 0.0))
    same_data = a["data"] == b["data"]
    return {"max_abs_diff": worst[1], "where": worst[0], "numbers": len(diffs), "same_data": same_data,
            "tolerance": tolerance, "ok": same_data and worst[1] <= tolerance}


def step(name: str, cmd: list[str], limit: float, log_dir: Path, env: dict) -> dict:
    t = time.perf_counter()
    log = log_dir / f"{name}.log"
    with log.open("w") as f:
        try:
            rc = subprocess.run(cmd, cwd=ROOT, stdout=f, stderr=subprocess.STDOUT, timeout=limit, env=env).returncode
        except subprocess.TimeoutExpired:
            rc = "timeout"
    res = {"name": name, "cmd": " ".join(cmd), "rc": rc, "ok": rc == 0, "seconds": time.perf_counter() - t,
           "log": str(log)}
    print(f"{name:<16} {'ok' if res['ok'] else 'FAILED'} ({res['seconds']:.0f} s)", flush=True)
    return res


def plan(dry: bool, out: Path, gpus: int) -> list[tuple[str, list[str], float]]:
    py = sys.executable
    bench = [py, "benchmarks/attribution.py", "--repeats", "1"]
    if dry:
        bench_steps = [("bench_tiny", [*bench, "--model", "tiny", "--tokens", "10", "--naive-samples", "16",
                                       "--matmul-size", "256", "--json", str(out / "bench_tiny.json")], 300)]
        data = ["model=tiny", "data.limit=4", "data.max_length=16", "data.batch_size=2"]
        gpu, ddp = ["trainer=cpu"], ["trainer=ddp", "trainer.accelerator=cpu", "trainer.devices=2"]
    else:
        bench_steps = [(f"bench_{m}", [*bench, "--device", "cuda", "--tf32", "--model", m_arg, "--tokens", "128",
                                       "--json", str(out / f"bench_{m}.json")], 150)
                       for m, m_arg in (("minilm", "minilm"), ("bert_base", "bert_base_random"))]
        data = ["data.limit=16"]
        gpu, ddp = ["trainer=gpu"], ["trainer=ddp", "trainer.accelerator=gpu", f"trainer.devices={gpus}"]
    common = [py, "analyze.py", *data, "logger=none", "report.enabled=false"]
    marker = ["-m", "gpu"]
    return [
        ("tests", [py, "-m", "pytest", "-q", "-p", "no:cacheprovider", *marker, "tests"], 180),
        *bench_steps,
        ("run_cpu", [*common, "trainer=cpu", f"hydra.run.dir={out / 'run_cpu'}"], 120),
        ("run_gpu", [*common, *gpu, f"hydra.run.dir={out / 'run_gpu'}"], 60),
        ("run_ddp", [*common, *ddp, f"hydra.run.dir={out / 'run_ddp'}"], 90),
    ]


def summary_md(res: dict) -> str:
    lines = [f"# gpu_check ({'CPU dry run' if res['dry_run'] else res['device']}), {res['seconds']:.0f} s",
             "", "| step | ok | seconds | detail |", "|---|---|---|---|"]
    for s in res["steps"]:
        detail = ""
        if "compare" in s:
            c = s["compare"]
            detail = f"max |diff| {c['max_abs_diff']:.2e} at {c['where']} (tolerance {c['tolerance']})"
        elif "bench" in s:
            b = s["bench"]
            detail = (f"exact {b['exact_s']:.2f} s ({'TF32' if b['details']['tf32'] else 'float32'}), "
                      f"bf16 {b['exact_bf16_s']:.2f} s, sketch {b['sketch_s']:.2f} s, tokens {b['tokens']}")
        lines.append(f"| {s['name']} | {'yes' if s['ok'] else '**no**'} | {s['seconds']:.0f} | {detail} |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--cpu-dry-run", action="store_true", help="the same steps on CPU with tiny sizes")
    p.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "gpu_check")
    p.add_argument("--tolerance", type=float, default=None, help="largest |difference| of a statistic vs CPU")
    p.add_argument("--slack", type=float, default=10.0, help="dry run: multiply each step's time limit by this "
                   "(a shared CPU runs the steps several times slower)")
    args = p.parse_args(argv)
    dry = args.cpu_dry_run
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "WANDB_MODE": "offline", "PYTHONUNBUFFERED": "1"}
    gpus = 0
    if not dry:
        import torch

        if not torch.cuda.is_available():
            print("gpu_check: no CUDA device here: run it on a GPU machine, or pass --cpu-dry-run", file=sys.stderr)
            return 2
        gpus = torch.cuda.device_count()
        device = f"{gpus} x {torch.cuda.get_device_name(0)}"
    else:
        env["CUDA_VISIBLE_DEVICES"] = ""
        device = "cpu"
    tolerance = args.tolerance if args.tolerance is not None else (1e-5 if dry else 5e-3)
    out = args.out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    steps = []
    for name, cmd, limit in plan(dry, out, gpus):
        s = step(name, cmd, limit * (args.slack if dry else 1), out, env)
        bench = out / f"{name}.json"
        if name.startswith("bench") and s["ok"] and bench.is_file():
            s["bench"] = json.loads(bench.read_text())
        steps.append(s)
    for other in ("run_gpu", "run_ddp"):
        a, b = out / "run_cpu" / "metrics.json", out / other / "metrics.json"
        c = compare(a, b, tolerance) if a.is_file() and b.is_file() else {"ok": False, "max_abs_diff": math.inf,
                                                                         "where": "missing metrics.json",
                                                                         "tolerance": tolerance}
        steps.append({"name": f"compare_{other.removeprefix('run_')}", "ok": c["ok"], "seconds": 0.0, "compare": c})
        print(f"compare_{other.removeprefix('run_'):<8} {'ok' if c['ok'] else 'FAILED'} "
              f"(max |diff| {c['max_abs_diff']:.2e})", flush=True)
    res = {"dry_run": dry, "device": device, "gpus": gpus, "seconds": time.perf_counter() - t0,
           "ok": all(s["ok"] for s in steps), "steps": steps}
    (out / "gpu_check.json").write_text(json.dumps(res, indent=2, default=str) + "\n")
    (out / "summary.md").write_text(summary_md(res))
    print(summary_md(res))
    return 0 if res["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
