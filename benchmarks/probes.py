"""Sketch error against ``exact`` as the probe count grows, for Rademacher and orthogonal probes.

    nice -n 10 python benchmarks/probes.py --segments 4 --json benchmarks/results/probes-minilm.json

On the first ``--segments`` sentences of the wiki corpus (MiniLM, float32), for m = 4, 8, ..., 128
probes per token and both ``attribution.probes_kind``, it computes the sketch's normalised maps and
compares them with ``exact``'s: the mean Jensen-Shannon divergence (bits) over all rows of all heads
and segments, and the largest absolute difference of any entry; both averaged over ``--seeds`` seeds.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import torch  # noqa: E402
from bench_json import save_json  # noqa: E402  (benchmarks/bench_json.py)

from bertstory.attribution import normalise_rows  # noqa: E402
from bertstory.attribution.exact import Exact  # noqa: E402
from bertstory.attribution.sketch import PROBE_KINDS, Sketch  # noqa: E402
from bertstory.data.wiki import read_wiki  # noqa: E402
from bertstory.models import load_encoder  # noqa: E402
from bertstory.stats.formulas import js_bits  # noqa: E402

PROBES = (4, 8, 16, 32, 64, 128)


def segments(tokenizer, count: int, max_length: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    texts, _ = read_wiki(limit=count)
    out = []
    for t in texts[:count]:
        e = tokenizer(t, truncation=True, max_length=max_length, return_tensors="pt")
        out.append((e["input_ids"], e.get("token_type_ids", torch.zeros_like(e["input_ids"]))))
    return out


def curve(model, segs, probes, kinds, seeds: int) -> dict:
    ref = []
    t = time.perf_counter()
    for ids, tt in segs:
        ref.append(normalise_rows(Exact(dtype="float32").scores(model, ids, tt).double())[0])
    res = {"exact_s": time.perf_counter() - t, "curves": {}}
    for kind in kinds:
        rows = []
        for m in probes:
            js, mx, secs = 0.0, 0.0, 0.0
            for seed in range(seeds):
                num, den, worst = 0.0, 0, 0.0
                for (ids, tt), a in zip(segs, ref, strict=True):
                    t = time.perf_counter()
                    s = Sketch(probes=m, seed=seed, probes_kind=kind, dtype="float32").scores(model, ids, tt)
                    secs += time.perf_counter() - t
                    b = normalise_rows(s.double())[0]
                    d = js_bits(a, b)
                    num, den = num + d.sum().item(), den + d.numel()
                    worst = max(worst, (a - b).abs().max().item())
                js, mx = js + num / den / seeds, mx + worst / seeds
            rows.append({"probes": m, "mean_js_bits": js, "max_abs_err": mx, "seconds": secs / seeds})
            print(f"{kind:>10} m={m:4d}: mean JS {js:.2e} bits, max error {mx:.4f}, {secs / seeds:.1f} s", flush=True)
        res["curves"][kind] = rows
    return res


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default="minilm", choices=["minilm", "tiny"])
    p.add_argument("--segments", type=int, default=4)
    p.add_argument("--max-length", type=int, default=128)
    p.add_argument("--seeds", type=int, default=1)
    p.add_argument("--probes", type=int, nargs="+", default=list(PROBES))
    p.add_argument("--json", type=Path, default=None)
    args = p.parse_args(argv)
    if args.model == "tiny":
        from omegaconf import OmegaConf

        sizes = OmegaConf.load(Path(__file__).resolve().parents[1] / "conf" / "model" / "tiny.yaml").config_overrides
        enc = load_encoder("minilm", name="tiny", random_init=True, config_overrides=dict(sizes))
    else:
        enc = load_encoder("minilm")
    segs = segments(enc.tokenizer, args.segments, args.max_length)
    res = {"model": args.model, "segments": len(segs), "tokens": sum(s[0].shape[1] for s in segs),
           "seeds": args.seeds, "threads": torch.get_num_threads(), "loadavg": os.getloadavg(),
           **curve(enc.model, segs, args.probes, PROBE_KINDS, args.seeds)}
    save_json(res, args.json)
    return res


if __name__ == "__main__":
    main()
