"""Reliability (issue 8): bad input ends in one line, interrupted runs resume to the same numbers,
runs are deterministic, numerical faults stop with the segment, weights load safely.

End-to-end cases run ``analyze.py`` in a subprocess; the rest call the pieces in-process.
"""

from __future__ import annotations

import json
import math
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf
from safetensors import safe_open
from safetensors.torch import save_file

from bertstory.errors import BertstoryError
from tests.conftest import ROOT, TINY, analyze

# --------------------------------------------------------------------------- helpers


def one_line_error(r: subprocess.CompletedProcess) -> str:
    """The single ``error:`` line of a failed run (asserting exit code, no traceback, exactly one line)."""
    assert r.returncode != 0, r.stdout[-2000:]
    assert "Traceback" not in r.stderr, r.stderr[-3000:]
    lines = [line for line in r.stderr.splitlines() if line.startswith("error:")]
    assert len(lines) == 1, r.stderr[-3000:]
    return lines[0]


def minilm_config() -> dict:
    from bertstory.models import minilm_path

    return json.loads((Path(minilm_path()) / "config.json").read_text())


def tiny_config() -> dict:
    return {**minilm_config(), **TINY}


def write_corpus(path: Path, lines: list[str]) -> Path:
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


WORDS = ("the cat sat on a mat while dogs ran quickly across green fields , and birds sang loudly ! ? "
         "Anna met Bob in Paris ; they spoke ( briefly ) about 42 things .").split()


def story_lines(count: int, seed: int = 0) -> list[str]:
    """``count`` non-blank lines of 2 to 14 words, with a blank line every 13 lines (skipped and counted)."""
    import random

    rng = random.Random(seed)
    lines = []
    for i in range(count):
        lines.append(" ".join(rng.choice(WORDS) for _ in range(rng.randint(2, 14))))
        if i % 13 == 0:
            lines.append("")
    return lines


# --------------------------------------------------------------------------- bad input: one line, no traceback


@pytest.fixture(scope="module")
def bad_inputs(tmp_path_factory) -> dict[str, Path]:
    """Corpora and model folders that are wrong in one way each."""
    tmp = tmp_path_factory.mktemp("bad")
    (tmp / "cp1252.txt").write_bytes(b"a good line\nanother one\ncaf\xe9 au lait\n")
    (tmp / "a_file").write_text("not a folder\n")
    (tmp / "corpus_dir").mkdir()
    not_model = tmp / "not_model"
    not_model.mkdir()
    (not_model / "notes.txt").write_text("no model here\n")
    # a BERT config.json with a safetensors file of random tensors that are not its weights
    random_st = tmp / "random_safetensors"
    random_st.mkdir()
    (random_st / "config.json").write_text(json.dumps(tiny_config()))
    save_file({"foo": torch.randn(3, 4), "bar.weight": torch.randn(5)}, str(random_st / "model.safetensors"))
    # a pytorch_model.bin whose pickle would run a command when unpickled without weights_only
    evil = tmp / "evil_pickle"
    evil.mkdir()
    (evil / "config.json").write_text(json.dumps(tiny_config()))
    marker = tmp / "PWNED"

    class RunsCode:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    torch.save({"embeddings.word_embeddings.weight": RunsCode()}, evil / "pytorch_model.bin")
    return {"dir": tmp, "marker": marker}


CASES = {
    "non_utf8": (["data=text", "data.path=DIR/cp1252.txt"], ["DIR/cp1252.txt", "not UTF-8", "line 3"]),
    "corpus_is_dir": (["data=text", "data.path=DIR/corpus_dir"], ["DIR/corpus_dir", "directory"]),
    "unknown_hub_id": (["model=hf", "model.name_or_path=no-such-org/no-such-model"], ["no-such-org/no-such-model"]),
    "unknown_method": (["attribution.name=nonsense"], ["nonsense", "exact"]),
    "unknown_option": (["attribution=exact", "+attribution.chunksize=8"], ["attribution.chunksize", "chunk_size"]),
    "not_a_model": (["model=hf", "model.name_or_path=DIR/not_model"], ["DIR/not_model"]),
    "random_weights": (["model=hf", "model.name_or_path=DIR/random_safetensors"], ["lacks", "encoder weights"]),
    "pickle_runs_code": (["model=hf", "model.name_or_path=DIR/evil_pickle"], ["pickle", "safetensors"]),
    "run_dir_under_file": (["hydra.run.dir=DIR/a_file/run"], ["DIR/a_file", "hydra.run.dir"]),
}


@pytest.mark.slow
@pytest.mark.parametrize("case", list(CASES))
def test_bad_input_ends_in_one_line(case, bad_inputs, tmp_path):
    overrides, needles = CASES[case]
    tmp = str(bad_inputs["dir"])
    overrides = [o.replace("DIR", tmp) for o in overrides]
    if not any(o.startswith("hydra.run.dir") for o in overrides):
        overrides.append(f"hydra.run.dir={tmp_path / 'run'}")
    r = analyze("model=tiny", "logger=none", "data.limit=4", *overrides)
    line = one_line_error(r)
    for needle in needles:
        assert needle.replace("DIR", tmp) in line, line
    if case == "pickle_runs_code":
        assert not bad_inputs["marker"].exists(), "the checkpoint's pickle ran code"


def test_unreadable_corpus_names_the_file(tmp_path, monkeypatch):
    """A read permission error (not reproducible as root with chmod) becomes a one-line error."""
    import builtins

    from bertstory.data.text import read_text

    corpus = write_corpus(tmp_path / "c.txt", ["hello"])
    real_open = builtins.open

    def deny(file, *args, **kwargs):
        if os.fspath(file) == str(corpus):
            raise PermissionError(13, "Permission denied", str(corpus))
        return real_open(file, *args, **kwargs)

    monkeypatch.setattr(builtins, "open", deny)
    with pytest.raises(BertstoryError, match=r"cannot read corpus file .*c\.txt \(Permission denied\)"):
        read_text(corpus)


def test_checkpoint_with_wrong_shapes_or_a_damaged_file(tmp_path):
    from bertstory.models import load_encoder, minilm_path

    mismatch = tmp_path / "mismatch"  # tiny's config.json next to MiniLM's (384-wide) weights
    mismatch.mkdir()
    (mismatch / "config.json").write_text(json.dumps(tiny_config()))
    shutil.copy(Path(minilm_path()) / "model.safetensors", mismatch / "model.safetensors")
    with pytest.raises(BertstoryError, match="do not have the shapes its config.json describes"):
        load_encoder(str(mismatch))
    damaged = tmp_path / "damaged"
    damaged.mkdir()
    (damaged / "config.json").write_text(json.dumps(tiny_config()))
    (damaged / "model.safetensors").write_bytes(b"\x00" * 64 + b"not safetensors")
    with pytest.raises(BertstoryError, match="cannot load model"):
        load_encoder(str(damaged))


def test_task_head_checkpoints_still_load(tmp_path):
    """A fine-tuned checkpoint (task head, no pooler) is not 'the wrong kind': its encoder weights are all there."""
    from transformers import BertConfig, BertForMaskedLM

    from bertstory.models import load_encoder

    torch.manual_seed(0)
    model = BertForMaskedLM(BertConfig(**tiny_config()))
    model.save_pretrained(tmp_path / "mlm")
    encoder = load_encoder(str(tmp_path / "mlm"), tokenizer="minilm")
    want = model.bert.encoder.layer[1].attention.self.value.weight
    assert torch.equal(encoder.model.encoder.layer[1].attention.self.value.weight, want)


def test_trust_remote_code_is_off_in_every_model_config():
    for path in sorted((ROOT / "conf" / "model").glob("*.yaml")):
        assert OmegaConf.load(path).trust_remote_code is False, path.name


def test_weights_load_without_unpickling_code(monkeypatch, tmp_path):
    """load_encoder asks transformers for safetensors-or-weights_only loading, explicitly."""
    import transformers

    from bertstory.models import load_encoder

    seen = {}
    real = transformers.AutoModel.from_pretrained

    def spy(*args, **kwargs):
        seen.update(kwargs)
        return real(*args, **kwargs)

    monkeypatch.setattr(transformers.AutoModel, "from_pretrained", spy)
    load_encoder("minilm")
    assert seen["weights_only"] is True and seen["trust_remote_code"] is False


# --------------------------------------------------------------------------- numerical guards


@pytest.fixture(scope="module")
def tiny32():
    from bertstory.models import load_encoder

    return load_encoder("minilm", name="tiny", random_init=True, seed=0, config_overrides=TINY)


def batch_of(tokenizer, texts: list[str], indices: list[int]) -> dict[str, torch.Tensor]:
    from bertstory.data import SegmentCollator

    items = [(k, tokenizer(t)["input_ids"], None) for k, t in zip(indices, texts, strict=True)]
    return SegmentCollator(tokenizer.pad_token_id)(items)


def test_nan_in_maps_stops_with_the_segment_index(tiny32):
    """A NaN word embedding poisons only the segments that use the word; the error names the first one."""
    import copy

    from bertstory.models import Encoder
    from bertstory.run.module import AnalysisModule
    from tests.conftest import make_method

    model = copy.deepcopy(tiny32.model)
    cat = tiny32.tokenizer.convert_tokens_to_ids("cat")
    model.embeddings.word_embeddings.weight.data[cat] = float("nan")
    encoder = Encoder(model=model, tokenizer=tiny32.tokenizer, name="tiny")
    batch = batch_of(tiny32.tokenizer, ["a dog runs home", "the cat sat"], [3, 8])
    for method in ("none", "rollout"):
        module = AnalysisModule(encoder, make_method(method))
        with pytest.raises(BertstoryError, match=r"non-finite attention in segment 8\b"):
            module.predict_step(batch)
    clean = batch_of(tiny32.tokenizer, ["a dog runs home"], [3])
    AnalysisModule(encoder, make_method("rollout")).predict_step(clean)  # the clean segment is fine


def test_zero_attribution_rows_become_uniform_and_are_counted(tiny32):
    """A dead head (value weights and bias zero) has all-zero exact attribution rows: uniform rule, counted."""
    import copy

    from bertstory.models import Encoder
    from bertstory.run.module import AnalysisModule
    from tests.conftest import make_method

    model = copy.deepcopy(tiny32.model)
    d_h = TINY["hidden_size"] // TINY["num_attention_heads"]
    value = model.encoder.layer[0].attention.self.value
    value.weight.data[:d_h] = 0.0
    value.bias.data[:d_h] = 0.0
    method = make_method("exact")
    module = AnalysisModule(Encoder(model=model, tokenizer=tiny32.tokenizer, name="tiny"), method)
    batch = batch_of(tiny32.tokenizer, ["the cat sat on the mat", "hello"], [0, 1])
    out = module.predict_step(batch)
    lengths = batch["attention_mask"].sum(-1).tolist()
    assert method.attribute(module.encoder, batch["input_ids"], batch["attention_mask"]).zero_rows == sum(lengths)
    assert module.metrics.zero_row_count == sum(lengths) == int(out["metric_state"]["zero_rows.rows"])
    for b, n in enumerate(lengths):
        head = out["attribution"][b, 0, 0, :n, :n]
        torch.testing.assert_close(head, torch.full((n, n), 1.0 / n))
        assert not torch.allclose(out["attribution"][b, 0, 1, :n, :n], torch.full((n, n), 1.0 / n))


# --------------------------------------------------------------------------- resume: pieces


def test_delta_states_add_up_to_the_running_metrics(tiny32):
    """The per-batch deltas saved in shards sum (in batch order) to the very same float64 states."""
    from bertstory.run.module import AnalysisModule
    from bertstory.stats.collection import AnalysisMetrics, merge_metric_state, metric_state
    from tests.conftest import make_method

    module = AnalysisModule(tiny32, make_method("rollout"))
    texts = ["The cat sat.", "A dog, barking loudly, ran away!", "Short.", "Anna met Bob in Paris."]
    deltas = [module.predict_step(batch_of(tiny32.tokenizer, [t], [k]))["metric_state"] for k, t in enumerate(texts)]
    deltas = [{k: v.clone() for k, v in d.items()} for d in deltas]
    seeded = AnalysisMetrics(2, 4, with_attribution=True)
    merge_metric_state(seeded, deltas[0])
    merge_metric_state(seeded, deltas[1])
    for d in deltas[2:]:
        merge_metric_state(seeded, d)
    running = metric_state(module.metrics)
    assert running.keys() == metric_state(seeded).keys()
    for key, value in metric_state(seeded).items():
        assert torch.equal(value, running[key]), key
    assert seeded.compute_block() == module.metrics.compute_block()


def test_sampler_batches_only_the_remaining_segments():
    from bertstory.data import CostBalancedBatchSampler

    lengths = [5, 9, 3, 7, 7, 2, 8, 4]
    full = CostBalancedBatchSampler(lengths, 2).batches
    done = set(full[0]) | set(full[2])
    rest = CostBalancedBatchSampler(lengths, 2, indices=[k for k in range(8) if k not in done]).batches
    assert sorted(map(sorted, rest)) == sorted(sorted(b) for i, b in enumerate(full) if i not in (0, 2))
    for ranks in (1, 3):
        seen = [k for r in range(ranks) for b in CostBalancedBatchSampler(lengths, 2, r, ranks, indices=[1, 4, 6])
                for k in b]
        assert sorted(seen) == [1, 4, 6]


def test_config_differences_and_ignored_keys():
    from bertstory.run.resume import comparable_config, config_differences

    a = OmegaConf.create({"resume": False, "seed": 0, "data": {"limit": 10, "num_workers": 0},
                          "trainer": {"devices": 1, "precision": "32-true"}, "logger": {"name": "x"}})
    b = OmegaConf.create({"resume": True, "seed": 0, "data": {"limit": 20, "num_workers": 4},
                          "trainer": {"devices": 4, "precision": "bf16-mixed"}, "logger": None})
    assert config_differences(comparable_config(a), comparable_config(b)) == [
        "data.limit: 10 -> 20", "trainer.precision: 32-true -> bf16-mixed"]
    assert config_differences(comparable_config(a), comparable_config(a)) == []


def test_data_fingerprint_sees_any_change():
    from bertstory.run.resume import data_fingerprint

    base = data_fingerprint([[101, 7, 102], [101, 8, 9, 102]])
    assert base == data_fingerprint([[101, 7, 102], [101, 8, 9, 102]])
    assert base != data_fingerprint([[101, 7, 102, 101], [8, 9, 102]])  # same tokens, other boundary
    assert base != data_fingerprint([[101, 7, 102], [101, 8, 10, 102]])
    assert base != data_fingerprint([[101, 7, 102], [101, 8, 9, 102]], [bytes(3), bytes([0, 0, 1, 1])])


def fake_shard(path: Path, done: list[int], state: dict[str, torch.Tensor] | None = None) -> None:
    from bertstory.results.shards import progress_tensors, save_shard

    prediction = {"done": torch.tensor(done), "metric_state": state or {"m.s": torch.ones(2)}}
    save_shard(progress_tensors(prediction), path, {})


def test_read_progress_sums_progress_and_refuses_damage(tmp_path):
    from bertstory.results.shards import read_progress

    fake_shard(tmp_path / "maps" / "rank0-batch000000.safetensors", [4, 5], {"m.s": torch.tensor([1.0, 2.0])})
    fake_shard(tmp_path / "maps" / "rank0-batch000003.safetensors", [0], {"m.s": torch.tensor([0.5, 0.25])})
    fake_shard(tmp_path / "maps" / "rank2-batch000001.safetensors", [7], {"m.s": torch.tensor([1.0, 1.0])})
    (tmp_path / "maps" / "rank0-batch000004.safetensors.tmp").write_bytes(b"half a file")  # killed mid-write
    prev = read_progress(tmp_path)
    assert prev.done == {0, 4, 5, 7} and prev.shards == 3
    assert prev.next_batch == {0: 4, 2: 2}
    assert torch.equal(prev.state["m.s"], torch.tensor([2.5, 3.25], dtype=torch.float64))
    fake_shard(tmp_path / "maps" / "rank1-batch000000.safetensors", [5, 6])
    with pytest.raises(BertstoryError, match="segment 5 is in two shards"):
        read_progress(tmp_path)
    (tmp_path / "maps" / "rank1-batch000000.safetensors").write_bytes(b"\x08" + bytes(20))
    with pytest.raises(BertstoryError, match="cannot read shard .*rank1-batch000000"):
        read_progress(tmp_path)


def test_iter_maps_skips_progress_records(tmp_path):
    from bertstory.results.shards import iter_maps, shard_tensors

    prediction = {
        "index": torch.tensor([2]), "input_ids": torch.tensor([[101, 5, 102, 0]]),
        "attention_mask": torch.tensor([[1, 1, 1, 0]]), "attention": torch.rand(1, 2, 4, 4, 4),
        "attribution": None, "done": torch.tensor([2, 9]), "metric_state": {"m.s": torch.ones(1)},
    }
    (tmp_path / "maps").mkdir()
    save_file(shard_tensors(prediction, torch.float32), str(tmp_path / "maps" / "rank0-batch000000.safetensors"))
    got = list(iter_maps(tmp_path))
    assert [k for k, _, _ in got] == [2] and set(got[0][1]) == {"input_ids", "attention"}
    assert got[0][1]["attention"].shape == (2, 4, 3, 3)


# --------------------------------------------------------------------------- resume: end to end


SEGMENTS = 60
KEEP = 10  # writer.max_segments


def resume_overrides(corpus: Path, run: Path) -> list[str]:
    return ["model=tiny", "attribution=exact", "data=text", f"data.path={corpus}", "data.batch_size=4",
            "data.max_length=16", f"writer.max_segments={KEEP}", "logger=none", f"hydra.run.dir={run}"]


def start_and_kill(overrides: list[str], maps: Path, shards: int, timeout: float = 300) -> None:
    """Run analyze.py and SIGKILL it (its whole process group) once ``shards`` shards exist."""
    proc = subprocess.Popen([sys.executable, str(ROOT / "analyze.py"), *overrides], cwd=ROOT, start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + timeout
    try:
        while len(list(maps.glob("*.safetensors"))) < shards:
            assert proc.poll() is None, f"the run ended before it could be killed: {proc.stderr.read()[-2000:]}"
            assert time.monotonic() < deadline, "no shards appeared"
            time.sleep(0.02)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        proc.stderr.close()


@pytest.fixture(scope="module")
def resumed(tmp_path_factory):
    """An uninterrupted run and a run killed after 3 shards, then resumed with resume=true."""
    tmp = tmp_path_factory.mktemp("resume")
    corpus = write_corpus(tmp / "corpus.txt", story_lines(SEGMENTS))
    full = analyze(*resume_overrides(corpus, tmp / "full"))
    assert full.returncode == 0, full.stderr[-3000:]
    killed = tmp / "killed"
    start_and_kill(resume_overrides(corpus, killed), killed / "maps", shards=3)
    before = sorted(p.name for p in (killed / "maps").glob("*.safetensors"))
    assert not (killed / "metrics.json").exists()
    again = analyze(*resume_overrides(corpus, killed), "resume=true")
    assert again.returncode == 0, again.stderr[-3000:]
    return {"tmp": tmp, "corpus": corpus, "full": tmp / "full", "killed": killed, "before": before, "log": again}


def metrics_close(a, b, path: str = "", rel: float = 1e-12) -> list[str]:
    """Where two metrics.json trees differ: structure, counts and strings exactly, floats beyond ``rel``."""
    if isinstance(a, dict):
        if a.keys() != b.keys():
            return [f"{path}: keys differ"]
        return [d for k in a for d in metrics_close(a[k], b[k], f"{path}/{k}", rel)]
    if isinstance(a, list):
        if len(a) != len(b):
            return [f"{path}: lengths differ"]
        return [d for i, (x, y) in enumerate(zip(a, b, strict=True)) for d in metrics_close(x, y, f"{path}[{i}]", rel)]
    if isinstance(a, float) and isinstance(b, float):
        return [] if math.isclose(a, b, rel_tol=rel, abs_tol=1e-300) else [f"{path}: {a!r} != {b!r}"]
    return [] if a == b and type(a) is type(b) else [f"{path}: {a!r} != {b!r}"]


@pytest.mark.slow
def test_killed_run_resumes_to_the_uninterrupted_metrics(resumed):
    killed = resumed["killed"]
    assert 3 <= len(resumed["before"]) < SEGMENTS // 4, "the run was killed midway"
    a = json.loads((resumed["full"] / "metrics.json").read_text())
    b = json.loads((killed / "metrics.json").read_text())
    assert a["data"] == b["data"] and a["method"] == b["method"]
    differences = metrics_close(a, b)
    assert not differences, differences[:10]
    output = resumed["log"].stdout + resumed["log"].stderr
    found = re.search(r"resuming .*: (\d+) segments already analysed in (\d+) shards", output)
    assert found and int(found.group(2)) == len(resumed["before"]) and int(found.group(1)) == 4 * int(found.group(2))


@pytest.mark.slow
def test_resumed_shards_hold_every_segment_once_and_the_kept_maps(resumed):
    from bertstory.results.shards import iter_maps

    killed = resumed["killed"]
    names = sorted(p.name for p in (killed / "maps").glob("*.safetensors"))
    assert set(resumed["before"]) < set(names), "the old shards are kept and new ones added"
    assert not list((killed / "maps").glob("*.tmp"))
    done = []
    for path in (killed / "maps").glob("*.safetensors"):
        with safe_open(str(path), framework="pt") as f:
            done += f.get_tensor("__done__").tolist()
    assert sorted(done) == list(range(SEGMENTS))
    full = {k: fields for k, fields, _ in iter_maps(resumed["full"])}
    again = {k: fields for k, fields, _ in iter_maps(killed)}
    assert sorted(again) == sorted(full) == list(range(KEEP))
    for k in full:
        assert torch.equal(full[k]["input_ids"], again[k]["input_ids"])
        torch.testing.assert_close(full[k]["attribution"], again[k]["attribution"], atol=1e-3, rtol=0)


@pytest.mark.slow
def test_resume_with_another_config_or_a_fresh_run_into_used_dir_is_refused(resumed):
    base = resume_overrides(resumed["corpus"], resumed["killed"])
    other = analyze(*[o.replace("data.max_length=16", "data.max_length=12") for o in base], "resume=true")
    line = one_line_error(other)
    assert "different config" in line and "data.max_length: 16 -> 12" in line
    fresh = analyze(*base)
    assert "already holds the shards" in one_line_error(fresh) and "resume=true" in one_line_error(fresh)


@pytest.mark.slow
def test_resume_refuses_a_changed_corpus(resumed, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(resumed["killed"], run)
    write_corpus(resumed["tmp"] / "corpus.txt", story_lines(SEGMENTS, seed=1))  # same path, other text
    try:
        r = analyze(*resume_overrides(resumed["corpus"], run), "resume=true")
    finally:
        write_corpus(resumed["tmp"] / "corpus.txt", story_lines(SEGMENTS))
    assert "corpus changed" in one_line_error(r)


# --------------------------------------------------------------------------- determinism and counts


@pytest.mark.slow
def test_same_config_and_seed_give_identical_bytes_and_nothing_is_dropped_silently(tmp_path):
    """Two runs (sketch: seeded random probes) write byte-identical metrics.json; truncated and skipped lines
    are counted in metrics.json and in the log."""
    long_line = " ".join(["word"] * 40)
    corpus = write_corpus(tmp_path / "c.txt", ["The cat sat on the mat.", "", "  ", long_line, "Short.", long_line,
                                               "Anna met Bob (briefly) in Paris."])
    common = ["model=tiny", "attribution=sketch", "attribution.probes=4", "data=text", f"data.path={corpus}",
              "data.max_length=16", "data.batch_size=2", "logger=none"]
    runs = [analyze(*common, f"hydra.run.dir={tmp_path / name}") for name in ("a", "b")]
    for r in runs:
        assert r.returncode == 0, r.stderr[-3000:]
    a, b = ((tmp_path / name / "metrics.json").read_bytes() for name in ("a", "b"))
    assert a == b
    m = json.loads(a)
    assert m["data"]["segments"] == 5 and m["data"]["skipped"] == 2 and m["data"]["truncated"] == 2
    assert m["method"]["zero_rows"] == 0
    log = (tmp_path / "a" / "analyze.log").read_text()
    assert "data text: 5 segments" in log and "2 truncated to 16 tokens, 2 skipped" in log
