"""Attribution speed: the exact method against the naive loop and the machine's matmul limit.

    python benchmarks/attribution.py [--model minilm|mpnet|tiny|bert_base_random] [--tokens N]
                                     [--device cpu|cuda] [--json OUT] [--no-bf16] [--generic]

Side by side in one process, on one segment of N tokens cut from the wiki corpus, it times

- ``exact`` (all layers, all heads) in float32: wall time and peak memory;
- ``exact`` with bfloat16 tangents (float32 accumulation): time, mean Jensen-Shannon divergence
  (bits) and largest absolute difference of the normalised maps against float32;
- the naive loop, one backward pass per head-output coordinate (``L*n*d`` passes): a random
  sample of ``--naive-samples`` passes is timed and extrapolated (``naive_extrapolated``);
- ``torch.autograd.functional.jacobian(vectorize=True)`` of the head outputs, or null when its
  memory estimate does not fit;
- with ``--generic``, ``exact`` on the generic forward-mode path over the HF modules (``engine=jvp``,
  what DeBERTa-v2 and ModernBERT use) against the fast engine on the same model: time, max relative difference;
- ``sketch`` (32 probes): time and mean JS against exact; ``grad_sum``; one attention-only forward;
- the matmul rate of a large ``torch.mm`` in float32 (TF32 on a GPU when ``--tf32``) and bfloat16,
  measured at the start and at the end of the run (the larger counts);
- ``exact_flops``: n*d tangents times the FLOPs of one tangent through Q, K, V of every layer,
  the output projection and both feed-forward matrices of layers 1..L-1, and the attention
  products (4 n^2 d per layer), 2 FLOPs per multiply-add; and
  ``flop_efficiency = exact_flops / exact_s / matmul_flops_per_s``.

Repeated measurements report the median. The table goes to stdout, everything to ``--json``.

With ``--mixing`` it times instead, on the same segment in float32, ``exact`` beside the context-mixing
methods (``attention_norm``, ``globenc``, ``alti``, ``value_zeroing``, ``rollout``; global scope, median
of ``--repeats``) and one attention-only forward, with each method's time as a fraction of exact's.
"""

from __future__ import annotations

import argparse
import gc
import os
import platform
import random
import statistics
import sys
import threading
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch  # noqa: E402
from torch import Tensor  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_json import save_json  # noqa: E402  (benchmarks/bench_json.py)

from bertstory.attribution import normalise_rows  # noqa: E402
from bertstory.attribution.exact import Exact  # noqa: E402
from bertstory.attribution.grad_sum import GradSum  # noqa: E402
from bertstory.attribution.memory import auto_chunk  # noqa: E402
from bertstory.attribution.sketch import Sketch  # noqa: E402
from bertstory.data.wiki import read_wiki  # noqa: E402
from bertstory.models import (  # noqa: E402
    attention_maps,
    embed,
    family_of,
    head_outputs,
    load_encoder,
)
from bertstory.stats.formulas import js_bits  # noqa: E402


def tiny_sizes() -> dict:
    """The ``tiny`` model's sizes, from its config (``conf/model/tiny.yaml``)."""
    from omegaconf import OmegaConf

    conf = Path(__file__).resolve().parents[1] / "conf" / "model" / "tiny.yaml"
    return dict(OmegaConf.to_container(OmegaConf.load(conf).config_overrides))


MODELS = {
    "minilm": dict(),
    "mpnet": dict(name_or_path="mpnet"),  # all-mpnet-base-v2, the mpnet extra
    "tiny": dict(random_init=True, config_overrides=tiny_sizes()),
    "bert_base_random": dict(
        random_init=True,
        config_overrides=dict(num_hidden_layers=12, num_attention_heads=12, hidden_size=768, intermediate_size=3072),
    ),
}

KEYS = (
    "model",
    "tokens",
    "exact_s",
    "exact_bf16_s",
    "exact_bf16_js",
    "exact_bf16_max_err",
    "exact_generic_s",
    "generic_max_rel_err",
    "naive_s",
    "naive_extrapolated",
    "jacobian_s",
    "sketch_s",
    "sketch_js",
    "grad_sum_s",
    "forward_s",
    "exact_flops",
    "matmul_flops_per_s",
    "matmul_bf16_flops_per_s",
    "flop_efficiency",
    "speedup_vs_naive",
    "speedup_bf16_vs_naive",
    "peak_mem_mb",
)


# --------------------------------------------------------------------------- helpers


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(fn, device: torch.device):
    """``(seconds, result)`` of one call."""
    sync(device)
    t = time.perf_counter()
    out = fn()
    sync(device)
    return time.perf_counter() - t, out


def median_time(fn, device: torch.device, repeats: int, warmup: int = 1) -> float:
    for _ in range(warmup):
        fn()
    return statistics.median(timed(fn, device)[0] for _ in range(repeats))


def matmul_rate(dtype: torch.dtype, device: torch.device, size: int, repeats: int) -> float:
    """FLOP/s of ``torch.mm`` on two ``size x size`` matrices (median of ``repeats``)."""
    a = torch.randn(size, size, device=device).to(dtype)
    b = torch.randn(size, size, device=device).to(dtype)
    t = median_time(lambda: torch.mm(a, b), device, repeats)
    return 2 * size**3 / t


def exact_flops(L: int, n: int, d: int, d_ff: int) -> int:
    """Reference FLOPs of ``exact``: n*d tangents, each through Q, K, V of every layer, W_O and the
    feed-forward of layers 1..L-1 and the attention products (4 n^2 d per layer); 2 per multiply-add."""
    per_tangent = L * 3 * 2 * n * d * d + (L - 1) * (2 * n * d * d + 2 * 2 * n * d * d_ff) + L * 4 * n * n * d
    return n * d * per_tangent


def engine_flops(L: int, H: int, n: int, d: int, d_ff: int, tangents: int | None = None) -> int:
    """FLOPs the fast engine itself runs for ``tangents`` one-row tangents (n*d by default): its
    matmuls per layer (see bertstory.attribution.engine) plus the per-token residual maps."""
    from bertstory.attribution.engine import fold_scores

    tangents = n * d if tangents is None else tangents
    rows = 0  # multiply-adds per tangent
    rows += 3 * d * d + 2 * n * d  # layer 0: one-row Q, K, V and the closed form
    scores = 2 * H * n * d + d * d if fold_scores(H, n, d) else 3 * d * d + 2 * n * d
    rows += (L - 1) * n * (scores + 3 * n * d)  # layers 1..L-1: score parts, V; A dv, two score contractions
    rows += (L - 1) * n * 2 * d * d  # W_O and the per-token map N_i in layers 0..L-2
    maps = (L - 1) * n * d * d * d_ff  # N_i = P1 (I + W_1^T diag(g_i) W_2^T) P2
    return 2 * (tangents * rows + maps)


class PeakMemory:
    """Peak memory of a block: CUDA ``max_memory_allocated``, or on Linux the process's peak RSS
    (``VmHWM``, reset through ``/proc/self/clear_refs``), else a sampling thread. ``mb`` is the
    peak above the memory in use when the block started; ``absolute_mb`` the peak itself."""

    def __init__(self, device: torch.device):
        self.device = device
        self.mb = self.absolute_mb = None

    @staticmethod
    def _status(key: str) -> float | None:
        try:
            with open("/proc/self/status") as f:
                for line in f:
                    if line.startswith(key + ":"):
                        return int(line.split()[1]) / 1024
        except OSError:
            return None
        return None

    def __enter__(self):
        gc.collect()
        if self.device.type == "cuda":
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats(self.device)
            self.base = torch.cuda.memory_allocated(self.device) / 2**20
            return self
        self.base = self._status("VmRSS")
        self.hwm = False
        try:
            with open("/proc/self/clear_refs", "w") as f:
                f.write("5")
            self.hwm = True
        except OSError:
            self.peak = self.base or 0.0
            self.stop = threading.Event()
            self.thread = threading.Thread(target=self._sample, daemon=True)
            self.thread.start()
        return self

    def _sample(self):
        while not self.stop.wait(0.005):
            self.peak = max(self.peak, self._status("VmRSS") or 0.0)

    def __exit__(self, *exc):
        if self.device.type == "cuda":
            peak = torch.cuda.max_memory_allocated(self.device) / 2**20
        elif self.hwm:
            peak = self._status("VmHWM")
        else:
            self.stop.set()
            self.thread.join()
            peak = self.peak
        if peak is not None and self.base is not None:
            self.absolute_mb = peak
            self.mb = max(0.0, peak - self.base)
        return False


def available_mb(device: torch.device) -> float:
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return free / 2**20
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return float("inf")


def jacobian_mb(L: int, H: int, n: int, d: int, d_ff: int, itemsize: int) -> float:
    """Memory estimate of ``jacobian(vectorize=True)``: every one of the L*n*d output coordinates
    back-propagates at once, so each backward intermediate of a layer (about n*(d_ff + 4d) + 2*H*n^2
    values) is held L*n*d times, plus the (L*n*d, n*d) result; measured peaks are twice that count
    (MiniLM, 6 and 10 tokens: 2.4 and 6.5 GB against 1.1 and 3.2 GB counted)."""
    batch = L * n * d
    per_sample = n * (d_ff + 4 * d) + 2 * H * n * n
    return 2 * itemsize * batch * (per_sample + n * d) / 2**20


def find_segment(tokenizer, n: int, limit: int = 3000) -> tuple[torch.Tensor, torch.Tensor, str]:
    """input_ids and token_type_ids (1, n) of the first wiki sentence with at least n tokens, truncated to n."""
    texts, _ = read_wiki(limit=limit)
    text = next((t for t in texts if len(tokenizer(t)["input_ids"]) >= n), None)
    if text is None:  # no sentence that long: consecutive sentences joined
        text = ""
        for t in texts:
            text = f"{text} {t}".strip()
            if len(tokenizer(text)["input_ids"]) >= n:
                break
    enc = tokenizer(text, truncation=True, max_length=n, return_tensors="pt")
    if enc["input_ids"].shape[1] != n:
        raise SystemExit(f"could not build a {n}-token segment from the wiki corpus")
    tt = enc.get("token_type_ids", torch.zeros_like(enc["input_ids"]))
    return enc["input_ids"], tt, text


def normalised(s: torch.Tensor) -> torch.Tensor:
    return normalise_rows(s.double())[0]


def naive_loop(model, ids, tt, samples: int, seed: int, device: torch.device) -> tuple[float, int, int, bool, Tensor]:
    """One backward pass per head-output coordinate, as a plain-autograd user writes it.

    One forward pass keeps every layer's context vectors (the head outputs, heads concatenated);
    then ``torch.autograd.grad`` of one coordinate ``o^{l,h}_i[c]`` w.r.t. the input vectors per
    pass (``retain_graph``; autograd only walks layers 0..l), and the squared per-token norms of
    the gradient are added into ``s^2``. Returns ``(seconds for all L*n*d passes, passes timed,
    L*n*d, extrapolated, s^2 of the timed passes)``: a seeded random sample of ``samples``
    coordinates (all when there are fewer) is timed, forward pass included, and the mean time per
    pass is scaled to L*n*d.
    """
    with torch.no_grad():
        x, _ = embed(model, ids, tt)
    x = x.detach().requires_grad_(True)
    fam = family_of(model)
    seg = fam.segment(x, torch.ones_like(ids))
    L, n, d = fam.L, ids.shape[1], fam.d
    total = L * n * d
    rng = random.Random(seed)
    coords = list(range(total)) if samples >= total else rng.sample(range(total), samples)

    def run(coords):
        S2 = torch.zeros(L, fam.H, n, n, dtype=x.dtype, device=x.device)
        d_h = fam.d_h
        with torch.enable_grad():
            contexts, h = [], x
            for l in range(L):
                layer_run = fam.run_layer(l, h, seg)
                contexts.append(layer_run.context[0])  # (n, H*d_h)
                h = layer_run.out
            for flat in coords:
                l, rest = divmod(flat, n * d)
                i, col = divmod(rest, d)
                (g,) = torch.autograd.grad(contexts[l][i, col], x, retain_graph=True)
                S2[l, col // d_h, i] += g[0].pow(2).sum(-1)
        return S2

    run(coords[:8])  # warm-up
    seconds, S2 = timed(lambda: run(coords), device)
    return seconds / len(coords) * total, len(coords), total, len(coords) < total, S2


def jacobian_time(model, ids, tt, device: torch.device) -> float:
    with torch.no_grad():
        x, _ = embed(model, ids, tt)
    mask = torch.ones_like(ids)

    def f(z):
        return head_outputs(model, z, mask, "context")[0]

    seconds, J = timed(lambda: torch.autograd.functional.jacobian(f, x, vectorize=True), device)
    del J
    return seconds


# --------------------------------------------------------------------------- main


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", choices=sorted(MODELS), default="minilm")
    p.add_argument("--tokens", type=int, default=24, help="segment length n ([CLS] and [SEP] included)")
    p.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    p.add_argument("--json", type=Path, default=None, help="write the results here")
    p.add_argument("--naive-samples", type=int, default=256, help="backward passes timed (>= 200 for reporting)")
    p.add_argument("--probes", type=int, default=32, help="sketch probes")
    p.add_argument("--repeats", type=int, default=3, help="repeats of the cheap measurements (median)")
    p.add_argument("--exact-repeats", type=int, default=1, help="repeats of each exact run (median)")
    p.add_argument("--matmul-size", type=int, default=4096)
    p.add_argument("--tf32", action="store_true", help="on a GPU, allow TF32 for the float32 runs and matmul rate")
    p.add_argument("--no-jacobian", action="store_true", help="skip torch.autograd.functional.jacobian")
    p.add_argument("--no-bf16", action="store_true",
                   help="skip exact with bfloat16 tangents (slow on CPUs without bf16 units)")
    p.add_argument("--generic", action="store_true",
                   help="also time exact on the generic forward-mode path (engine=jvp) against the fast engine")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--mixing", action="store_true", help="time exact beside the context-mixing methods only")
    return p.parse_args(argv)


def run(args) -> dict:
    device = torch.device(args.device)
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = args.tf32
        torch.backends.cudnn.allow_tf32 = args.tf32
    torch.manual_seed(args.seed)
    spec = dict(MODELS[args.model])
    enc = load_encoder(spec.pop("name_or_path", "minilm"), name=args.model, **spec)
    model = enc.model.to(device)
    fam = family_of(model)
    L, H, d, d_ff, n = fam.L, fam.H, fam.d, fam.d_ff, args.tokens
    ids, tt, text = find_segment(enc.tokenizer, n)
    ids, tt = ids.to(device), tt.to(device)
    res: dict = {"model": args.model, "tokens": n}
    load0 = os.getloadavg() if hasattr(os, "getloadavg") else None

    # machine limits (measured again at the end; the larger rate counts)
    rates = {dt: [matmul_rate(dt, device, args.matmul_size, 5)] for dt in (torch.float32, torch.bfloat16)}

    # exact, float32 (memory measured around the first run)
    exact = Exact(dtype="float32")
    chunk = auto_chunk(n, fam, torch.float32, exact.memory_mb, device)
    Exact(dtype="float32").scores(model, ids[:, : min(n, 4)], tt[:, : min(n, 4)])  # warm-up
    times = []
    for r in range(args.exact_repeats):
        if r == 0:
            with PeakMemory(device) as mem:
                t, s32 = timed(lambda: Exact(dtype="float32").scores(model, ids, tt), device)
        else:
            t, s32 = timed(lambda: Exact(dtype="float32").scores(model, ids, tt), device)
        times.append(t)
    res["exact_s"] = statistics.median(times)
    a32 = normalised(s32)

    # exact, bfloat16 tangents
    res["exact_bf16_s"] = res["exact_bf16_js"] = res["exact_bf16_max_err"] = None
    if not args.no_bf16:
        times = []
        for _ in range(args.exact_repeats):
            t, s16 = timed(lambda: Exact(dtype="bfloat16").scores(model, ids, tt), device)
            times.append(t)
        res["exact_bf16_s"] = statistics.median(times)
        a16 = normalised(s16)
        res["exact_bf16_js"] = js_bits(a32, a16).mean().item()
        res["exact_bf16_max_err"] = (a32 - a16).abs().max().item()

    # exact on the generic forward-mode path over the HF modules (what DeBERTa-v2 and ModernBERT use)
    res["exact_generic_s"] = res["generic_max_rel_err"] = None
    if args.generic:
        t, sg = timed(lambda: Exact(dtype="float32", engine="jvp").scores(model, ids, tt), device)
        res["exact_generic_s"] = t
        res["generic_max_rel_err"] = ((sg - s32).abs().max() / s32.abs().max()).item()

    # sketch
    times = []
    for _ in range(args.repeats):
        sketch = Sketch(probes=args.probes, seed=args.seed, dtype="float32")
        t, ssk = timed(lambda m=sketch: m.scores(model, ids, tt), device)
        times.append(t)
    res["sketch_s"] = statistics.median(times)
    res["sketch_js"] = js_bits(a32, normalised(ssk)).mean().item()

    # grad_sum and one attention-only forward
    gs = GradSum(dtype="float32")
    res["grad_sum_s"] = median_time(lambda: gs.scores(model, ids, tt), device, args.repeats, warmup=0)
    mask = torch.ones_like(ids)
    with torch.no_grad():
        res["forward_s"] = median_time(lambda: attention_maps(model, ids, mask, tt), device, max(5, args.repeats))

    # naive loop
    naive_s, sampled, passes, extrapolated, naive_S2 = naive_loop(model, ids, tt, args.naive_samples, args.seed, device)
    res["naive_s"] = naive_s
    res["naive_extrapolated"] = extrapolated
    # all passes ran (small models): the naive scores must equal exact's
    naive_err = None if extrapolated else ((naive_S2.sqrt() - s32).abs().max() / s32.abs().max()).item()

    # torch.autograd.functional.jacobian, when it fits
    need = jacobian_mb(L, H, n, d, d_ff, 4)
    avail = available_mb(device)
    res["jacobian_s"] = None
    jac_note = f"skipped: needs about {need / 1024:.1f} GiB, {avail / 1024:.1f} GiB available"
    if args.no_jacobian:
        jac_note = "skipped (--no-jacobian)"
    elif need < 0.7 * avail:
        res["jacobian_s"] = jacobian_time(model, ids, tt, device)
        jac_note = f"ran (estimate {need / 1024:.2f} GiB)"

    for dt, r in rates.items():
        r.append(matmul_rate(dt, device, args.matmul_size, 5))
    res["matmul_flops_per_s"] = max(rates[torch.float32])
    res["matmul_bf16_flops_per_s"] = max(rates[torch.bfloat16])

    # derived
    flops = exact_flops(L, n, d, d_ff)
    res["exact_flops"] = flops
    res["flop_efficiency"] = flops / res["exact_s"] / res["matmul_flops_per_s"]
    res["speedup_vs_naive"] = res["naive_s"] / res["exact_s"]
    res["speedup_bf16_vs_naive"] = res["naive_s"] / res["exact_bf16_s"] if res["exact_bf16_s"] else None
    res["peak_mem_mb"] = mem.mb
    eflops = engine_flops(L, H, n, d, d_ff)
    # context
    res["details"] = {
        "layers": L,
        "heads": H,
        "hidden": d,
        "intermediate": d_ff,
        "segment": enc.tokenizer.decode(ids[0]),
        "source_sentence": text,
        "device": device.type,
        "device_name": torch.cuda.get_device_name(device)
        if device.type == "cuda"
        else platform.processor() or platform.machine(),
        "threads": torch.get_num_threads(),
        "cpu_count": os.cpu_count(),
        "torch": torch.__version__,
        "tf32": bool(args.tf32) if device.type == "cuda" else None,
        "exact_chunk_size": chunk,
        "exact_repeats": args.exact_repeats,
        "repeats": args.repeats,
        "peak_rss_mb": mem.absolute_mb,
        "naive_passes_timed": sampled,
        "naive_passes_total": passes,
        "naive_s_per_pass": naive_s / passes,
        "naive_vs_exact_max_rel_err": naive_err,
        "jacobian": jac_note,
        "jacobian_estimate_mb": need,
        "bf16_flop_efficiency": flops / res["exact_bf16_s"] / res["matmul_bf16_flops_per_s"]
        if res["exact_bf16_s"] else None,
        "engine_flops": eflops,
        "engine_matmul_efficiency": eflops / res["exact_s"] / res["matmul_flops_per_s"],
        "engine_matmul_efficiency_bf16": eflops / res["exact_bf16_s"] / res["matmul_bf16_flops_per_s"]
        if res["exact_bf16_s"] else None,
        "sketch_speedup_vs_exact": res["exact_s"] / res["sketch_s"],
        "sketch_probes": args.probes,
        "matmul_flops_per_s_start_end": rates[torch.float32],
        "matmul_bf16_flops_per_s_start_end": rates[torch.bfloat16],
        "loadavg_start": load0,
        "loadavg_end": os.getloadavg() if hasattr(os, "getloadavg") else None,
    }
    return res


MIXING = ("attention_norm", "globenc", "alti", "value_zeroing", "rollout")


def run_mixing(args) -> dict:
    """``exact`` (float32) and every context-mixing method on one segment: seconds per segment (median)."""
    from bertstory.attribution.norms import Alti, AttentionNorm, GlobEnc
    from bertstory.attribution.rollout import Rollout
    from bertstory.attribution.value_zeroing import ValueZeroing

    device = torch.device(args.device)
    torch.manual_seed(args.seed)
    enc = load_encoder("minilm", name=args.model, **MODELS[args.model])
    model = enc.model.to(device)
    ids, tt, _ = find_segment(enc.tokenizer, args.tokens)
    ids, tt = ids.to(device), tt.to(device)
    res: dict = {"model": args.model, "tokens": args.tokens, "threads": torch.get_num_threads(),
                 "loadavg_start": os.getloadavg() if hasattr(os, "getloadavg") else None}
    Exact(dtype="float32").scores(model, ids[:, :4], tt[:, :4])  # warm-up
    res["exact_s"] = median_time(lambda: Exact(dtype="float32").scores(model, ids, tt), device, args.exact_repeats,
                                 warmup=0)
    methods = {"attention_norm": AttentionNorm, "globenc": GlobEnc, "alti": Alti, "value_zeroing": ValueZeroing,
               "rollout": Rollout}
    for name in MIXING:
        method = methods[name](dtype="float32")
        res[f"{name}_s"] = median_time(lambda m=method: m.scores(model, ids, tt), device, args.repeats)
        res[f"{name}_vs_exact"] = res[f"{name}_s"] / res["exact_s"]
    mask = torch.ones_like(ids)
    with torch.no_grad():
        res["forward_s"] = median_time(lambda: attention_maps(model, ids, mask, tt), device, max(5, args.repeats))
    res["loadavg_end"] = os.getloadavg() if hasattr(os, "getloadavg") else None
    return res


def mixing_table(res: dict) -> str:
    rows = [("model / tokens", f"{res['model']} / {res['tokens']} ({res['threads']} threads)"),
            ("exact float32", fmt(res["exact_s"], " s"))]
    rows += [(name, f"{fmt(res[f'{name}_s'], ' s')}  ({fmt(res[f'{name}_vs_exact'])} of exact)") for name in MIXING]
    rows.append(("attention forward", fmt(res["forward_s"], " s")))
    w = max(len(k) for k, _ in rows)
    return "\n".join(f"{k:<{w}}  {v}" for k, v in rows)


def fmt(x, unit: str = "") -> str:
    if x is None:
        return "null"
    if isinstance(x, bool):
        return str(x).lower()
    if isinstance(x, float) and (x == 0 or 1e-3 <= abs(x) < 1e5):
        return f"{x:.4g}{unit}"
    if isinstance(x, (int, float)):
        return f"{x:.3e}{unit}" if not isinstance(x, int) or abs(x) >= 1e6 else f"{x}{unit}"
    return str(x)


def table(res: dict) -> str:
    det = res["details"]
    rows = [
        ("model / tokens", f"{res['model']} ({det['layers']}x{det['heads']}, d={det['hidden']}) / {res['tokens']}"),
        ("device / threads", f"{det['device_name']} / {det['threads']}"),
        ("exact float32", f"{fmt(res['exact_s'], ' s')}  ({fmt(res['speedup_vs_naive'])}x naive)"),
        (
            "exact bfloat16",
            f"{fmt(res['exact_bf16_s'], ' s')}  ({fmt(res['speedup_bf16_vs_naive'])}x naive; "
            f"JS {fmt(res['exact_bf16_js'])} bits, max err {fmt(res['exact_bf16_max_err'])})",
        ),
        (
            "exact generic path",
            f"{fmt(res['exact_generic_s'], ' s')}  (engine=jvp; max rel. difference to the fast engine "
            f"{fmt(res['generic_max_rel_err'])})",
        ),
        (
            "naive loop",
            f"{fmt(res['naive_s'], ' s')}"
            + (
                f"  (extrapolated from {det['naive_passes_timed']} of {det['naive_passes_total']} passes)"
                if res["naive_extrapolated"]
                else "  (all passes)"
            ),
        ),
        ("autograd jacobian", f"{fmt(res['jacobian_s'], ' s')}  ({det['jacobian']})"),
        (
            f"sketch {det['sketch_probes']} probes",
            f"{fmt(res['sketch_s'], ' s')}  ({fmt(det['sketch_speedup_vs_exact'])}x faster than exact; "
            f"JS {fmt(res['sketch_js'])} bits)",
        ),
        ("grad_sum", fmt(res["grad_sum_s"], " s")),
        ("attention forward", fmt(res["forward_s"], " s")),
        ("exact_flops", fmt(float(res["exact_flops"]))),
        ("matmul float32", fmt(res["matmul_flops_per_s"] / 1e9, " GFLOP/s")),
        ("matmul bfloat16", fmt(res["matmul_bf16_flops_per_s"] / 1e9, " GFLOP/s")),
        ("flop_efficiency", f"{fmt(res['flop_efficiency'])}  (bf16: {fmt(det['bf16_flop_efficiency'])})"),
        (
            "engine's own FLOPs",
            f"{fmt(float(det['engine_flops']))}  (at {fmt(det['engine_matmul_efficiency'])} of the float32 matmul "
            f"rate; bf16 {fmt(det['engine_matmul_efficiency_bf16'])})",
        ),
        ("peak memory exact", f"{fmt(res['peak_mem_mb'], ' MB')}  (process peak {fmt(det['peak_rss_mb'], ' MB')})"),
        ("exact chunk size", str(det["exact_chunk_size"])),
    ]
    w = max(len(k) for k, _ in rows)
    return "\n".join(f"{k:<{w}}  {v}" for k, v in rows)


def main(argv=None) -> dict:
    args = parse_args(argv)
    if args.mixing:
        res = run_mixing(args)
        print(mixing_table(res))
    else:
        res = run(args)
        missing = [k for k in KEYS if k not in res]
        assert not missing, missing
        print(table(res))
    save_json(res, args.json)
    return res


if __name__ == "__main__":
    main()
