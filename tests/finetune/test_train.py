"""train.py: configs, labelled data and splits, GLUE tasks, optimiser schedule, metrics, the classifier,
and end to end on ``tiny``: fine-tune, analyse before and after, compare."""

from __future__ import annotations

import csv
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_dir
from hypothesis import given, settings
from hypothesis import strategies as st

from bertstory.errors import BertstoryError
from bertstory.finetune.data import ClassificationDataModule, stratified_split
from bertstory.finetune.glue import GLUE, glue_task
from bertstory.finetune.module import build_classifier, decay_groups, linear_warmup_decay, task_metrics
from tests.conftest import CONF_DIR, ROOT, TINY


def train(*overrides: str, cwd: Path = ROOT) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(ROOT / "train.py"), *overrides], cwd=cwd, capture_output=True,
                          text=True, env=dict(os.environ), timeout=600)


def one_error_line(r: subprocess.CompletedProcess) -> str:
    assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr[-3000:]
    lines = [line for line in r.stderr.splitlines() if line.startswith("error:")]
    assert len(lines) == 1, r.stderr[-3000:]
    return lines[0]


@pytest.fixture(scope="session")
def tokenizer():
    from transformers import AutoTokenizer

    from bertstory.models import minilm_path

    return AutoTokenizer.from_pretrained(minilm_path())


def datamodule(tokenizer, **kw) -> ClassificationDataModule:
    kw = {"name": "pang_lee", "reader": "pang_lee", **kw}
    dm = ClassificationDataModule(tokenizer, **kw)
    dm.prepare_texts()
    return dm


# ------------------------------------------------------------------------------------------------ configs


def compose_train(*overrides: str):
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        return compose(config_name="train", overrides=list(overrides))


@pytest.mark.parametrize("trainer", ["cpu", "gpu", "ddp"])
def test_train_config_composes_with_training_settings(trainer):
    cfg = compose_train(f"trainer={trainer}")
    assert cfg.model.name_or_path == "minilm" and cfg.data.reader == "pang_lee"
    assert cfg.data._target_ == "bertstory.finetune.data.ClassificationDataModule"
    t = cfg.trainer
    assert t.use_distributed_sampler is True and t.enable_checkpointing is True and t.inference_mode is True
    assert t.max_epochs >= 1 and cfg.optim.lr > 0 and 0 <= cfg.optim.warmup < 1


def test_train_config_hf_task_needs_no_dataset():
    cfg = compose_train("data=hf", "data.task=sst2")
    assert cfg.data.task == "sst2" and cfg.data.dataset is None and cfg.data.split == "train"


def test_analyze_config_keeps_the_analysis_data_module():
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose(config_name="analyze", overrides=["data=pang_lee"])
    assert cfg.data._target_ == "bertstory.data.datamodule.SegmentDataModule" and "val_fraction" not in cfg.data


# ------------------------------------------------------------------------------------------------ GLUE


def test_glue_tasks():
    assert set(GLUE) == {"cola", "sst2", "mrpc", "qqp", "mnli", "qnli", "rte", "wnli"}
    assert glue_task("SST-2") is GLUE["sst2"] and GLUE["sst2"].column_b is None
    assert (GLUE["mrpc"].column, GLUE["mrpc"].column_b, GLUE["mrpc"].metric) == ("sentence1", "sentence2", "f1")
    assert GLUE["cola"].metric == "mcc" and GLUE["qqp"].metric == "f1" and GLUE["rte"].metric == "acc"
    assert GLUE["mnli"].num_labels == 3 and GLUE["mnli"].val_split == "validation_matched"
    assert all(len(t.labels) == t.num_labels for t in GLUE.values())
    with pytest.raises(BertstoryError, match="regression"):
        glue_task("stsb")
    with pytest.raises(BertstoryError, match="unknown GLUE task"):
        glue_task("squad")


# ------------------------------------------------------------------------------------------------ splits


@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(0, 3), min_size=2, max_size=80), st.floats(0.05, 0.95), st.integers(0, 10**6))
def test_stratified_split_partitions_with_per_label_quota(labels, fraction, seed):
    quota = {y: round(fraction * labels.count(y)) for y in set(labels)}
    if sum(quota.values()) in (0, len(labels)):
        with pytest.raises(BertstoryError, match="val_fraction"):
            stratified_split(labels, fraction, seed)
        return
    train, val = stratified_split(labels, fraction, seed)
    assert sorted(train + val) == list(range(len(labels)))
    for y, q in quota.items():
        assert sum(labels[i] == y for i in val) == q
    assert (train, val) == stratified_split(labels, fraction, seed)


def test_stratified_split_is_seeded():
    labels = [0] * 50 + [1] * 50
    assert stratified_split(labels, 0.2, 0) != stratified_split(labels, 0.2, 1)
    with pytest.raises(BertstoryError, match="val_fraction"):
        stratified_split(labels, 1.0, 0)


# ------------------------------------------------------------------------------------------------ data


def test_pang_lee_split(tokenizer):
    from bertstory.data.pang_lee import read_pang_lee

    corpus = read_pang_lee()
    dm = datamodule(tokenizer)
    assert dm.task.name == "pang_lee" and dm.task.num_labels == 2 and dm.task.labels == ("neg", "pos")
    s = dm.stats
    assert (s["train"], s["validation"]) == (160, 40)
    assert s["train_label_counts"] == [80, 80] and s["validation_label_counts"] == [20, 20]
    # every sentence is in exactly one split, with its own label and tokenisation
    by_ids = {}
    for split in (dm.train, dm.val):
        for ids, y in zip(split.input_ids, split.labels, strict=True):
            by_ids.setdefault(tuple(ids), []).append(y)
    expected = {}
    for text, y in corpus:
        expected.setdefault(tuple(tokenizer(text, truncation=True, max_length=128)["input_ids"]), []).append(y)
    assert {k: sorted(v) for k, v in by_ids.items()} == {k: sorted(v) for k, v in expected.items()}
    # limit caps the training examples only, and still takes both labels
    small = datamodule(tokenizer, limit=20, val_limit=10, seed=0)
    assert len(small.train.labels) == 20 and 0 < sum(small.train.labels) < 20 and len(small.val.labels) == 10
    assert small.train.input_ids == dm.train.input_ids[:20]
    assert datamodule(tokenizer, seed=1).val.input_ids != dm.val.input_ids


def test_batches_carry_labels(tokenizer):
    dm = datamodule(tokenizer, batch_size=16)
    seen = []
    for batch in dm.val_dataloader():
        assert set(batch) == {"index", "input_ids", "attention_mask", "token_type_ids", "labels"}
        for row, k in enumerate(batch["index"].tolist()):
            n = int(batch["attention_mask"][row].sum())
            assert batch["input_ids"][row, :n].tolist() == dm.val.input_ids[k]
            assert batch["labels"][row] == dm.val.labels[k]
        seen += batch["index"].tolist()
    assert sorted(seen) == list(range(40))
    train_seen = sorted(k for b in dm.train_dataloader() for k in b["index"].tolist())
    assert train_seen == list(range(160))


@pytest.fixture(scope="module")
def glue_dir(tmp_path_factory):
    """A local save_to_disk copy in GLUE MRPC's layout: train, validation, test (labels -1)."""
    import datasets

    features = datasets.Features({
        "sentence1": datasets.Value("string"), "sentence2": datasets.Value("string"),
        "label": datasets.ClassLabel(names=["not_equivalent", "equivalent"]), "idx": datasets.Value("int32"),
    })

    def rows(n, first, labelled=True):
        return {"sentence1": [f"Sentence number {i} is here." for i in range(first, first + n)],
                "sentence2": [f"Here is sentence {i}." for i in range(first, first + n)],
                "label": [(i % 2 if labelled else -1) for i in range(first, first + n)],
                "idx": list(range(n))}

    train_rows = rows(24, 0)
    train_rows["sentence2"][3] = "   "  # a blank second text: skipped
    dd = datasets.DatasetDict({
        "train": datasets.Dataset.from_dict(train_rows, features=features),
        "validation": datasets.Dataset.from_dict(rows(8, 100), features=features),
        "test": datasets.Dataset.from_dict(rows(6, 200, labelled=False), features=features),
    })
    path = tmp_path_factory.mktemp("glue") / "mrpc"
    dd.save_to_disk(str(path))
    return path


def test_hf_glue_task_from_a_local_copy(tokenizer, glue_dir):
    dm = datamodule(tokenizer, name="hf", reader="hf", task="mrpc", dataset=str(glue_dir))
    assert dm.task.metric == "f1" and dm.task.labels == ("not_equivalent", "equivalent")
    assert (dm.stats["train"], dm.stats["validation"], dm.stats["skipped"]) == (23, 8, 1)
    assert dm.stats["validation_from"] == "split validation"
    first = tokenizer("Sentence number 0 is here.", "Here is sentence 0.", truncation="longest_first",
                      max_length=128)
    assert dm.train.input_ids[0] == first["input_ids"]
    assert list(dm.train.token_type_ids[0]) == first["token_type_ids"]
    batch = next(iter(dm.val_dataloader()))
    assert batch["token_type_ids"].max() == 1 and batch["labels"].tolist() == [i % 2 for i in range(100, 108)]


def test_hf_unlabelled_test_split_gives_no_examples(tokenizer, glue_dir):
    """GLUE test splits carry label -1: their rows are skipped, which leaves nothing to train or validate on."""
    for kw, which in (({"split": "test"}, "training"), ({"val_split": "test"}, "validation")):
        with pytest.raises(BertstoryError, match=f"no {which} examples"):
            datamodule(tokenizer, name="hf", reader="hf", task="mrpc", dataset=str(glue_dir), **kw)


def test_hf_single_dataset_without_class_names(tokenizer, tmp_path):
    import datasets

    texts = [f"example {i}" for i in range(30)]
    data = {"sentence": texts, "y": [i % 3 for i in range(30)]}
    datasets.Dataset.from_dict(data).save_to_disk(str(tmp_path / "d"))
    dm = datamodule(tokenizer, name="hf", reader="hf", dataset=str(tmp_path / "d"), column="sentence",
                    label_column="y", val_fraction=0.2)
    assert dm.task.num_labels == 3 and dm.task.labels == ("0", "1", "2") and dm.task.metric == "acc"
    assert (dm.stats["train"], dm.stats["validation"]) == (24, 6)
    assert dm.stats["validation_label_counts"] == [2, 2, 2]
    with pytest.raises(BertstoryError, match="3 labels, GLUE sst2 has 2"):
        datamodule(tokenizer, name="hf", reader="hf", dataset=str(tmp_path / "d"), task="sst2",
                   label_column="y")


@pytest.mark.parametrize("kw,needle", [
    ({"label_column": "nope"}, "no column 'nope'"),
    ({"val_split": "dev"}, "no split 'dev'"),
    ({"split": "nope"}, "no split 'nope'"),
    ({"task": "mnli"}, "no column 'premise'.*data.task=mnli"),  # MRPC's layout is not MNLI's
])
def test_hf_errors(tokenizer, glue_dir, kw, needle):
    with pytest.raises(BertstoryError, match=needle):
        datamodule(tokenizer, name="hf", reader="hf", dataset=str(glue_dir), **{"task": "mrpc", **kw})


def test_real_valued_labels_are_refused(tokenizer, tmp_path):
    import datasets

    datasets.Dataset.from_dict({"text": ["a b", "c d"], "label": [0.5, 3.2]}).save_to_disk(str(tmp_path / "d"))
    with pytest.raises(BertstoryError, match="real values"):
        datamodule(tokenizer, name="hf", reader="hf", dataset=str(tmp_path / "d"))


@pytest.mark.parametrize("kw,needle", [
    ({"reader": "wiki", "name": "wiki"}, "no labels"),
    ({"pairs": True}, "data.pairs"),
    ({"task": "sst2"}, "needs data=hf"),
    ({"reader": "hf", "name": "hf"}, "data.task"),
    ({"limit": 0}, "data.limit"),
])
def test_data_option_errors(tokenizer, kw, needle):
    with pytest.raises(BertstoryError, match=needle):
        datamodule(tokenizer, **kw)


# ------------------------------------------------------------------------------------------------ optimiser


def test_linear_warmup_decay_matches_transformers():
    from transformers import get_linear_schedule_with_warmup

    for warmup, total in [(0, 10), (3, 20), (10, 10), (1, 1)]:
        opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
        reference = get_linear_schedule_with_warmup(opt, warmup, total).lr_lambdas[0]
        ours = linear_warmup_decay(warmup, total)
        for step in range(total + 3):
            assert ours(step) == pytest.approx(reference(step), abs=1e-12), (warmup, total, step)
    f = linear_warmup_decay(4, 12)
    assert [f(s) for s in (0, 2, 4, 8, 12)] == [0.0, 0.5, 1.0, 0.5, 0.0]


def test_no_weight_decay_on_biases_and_layer_norms(tiny32):
    model = build_classifier(tiny32, 2)
    decay, no_decay = decay_groups(model, 0.01)
    names = {id(p): n for n, p in model.named_parameters()}
    assert decay["weight_decay"] == 0.01 and no_decay["weight_decay"] == 0.0
    assert all(names[id(p)].endswith("bias") or "LayerNorm" in names[id(p)] for p in no_decay["params"])
    assert any(names[id(p)].endswith("classifier.weight") for p in decay["params"])
    assert len(decay["params"]) + len(no_decay["params"]) == len(list(model.parameters()))


# ------------------------------------------------------------------------------------------------ metrics


def test_task_metrics_against_hand_computed_values():
    preds = torch.tensor([1, 1, 0, 0, 1, 0, 1, 1])
    target = torch.tensor([1, 0, 0, 1, 1, 0, 1, 0])
    tp, fp, fn, tn = 3, 2, 1, 2
    m = task_metrics(2)
    m.update(preds[:5], target[:5])
    m.update(preds[5:], target[5:])
    out = {k: float(v) for k, v in m.compute().items()}
    f1 = 2 * tp / (2 * tp + fp + fn)
    mcc = (tp * tn - fp * fn) / math.sqrt((tp + fp) * (tp + fn) * (tn + fp) * (tn + fn))
    assert out == pytest.approx({"val/acc": 5 / 8, "val/f1": f1, "val/mcc": mcc}, abs=1e-6)

    preds3, target3 = torch.tensor([0, 1, 2, 2, 1, 0]), torch.tensor([0, 2, 2, 1, 1, 0])
    m3 = task_metrics(3)
    m3.update(preds3, target3)
    per_class_f1 = [1.0, 0.5, 0.5]  # class 0: tp 2; class 1: tp 1 fp 1 fn 1; class 2: tp 1 fp 1 fn 1
    out3 = {k: float(v) for k, v in m3.compute().items()}
    assert out3["val/acc"] == pytest.approx(4 / 6) and out3["val/f1"] == pytest.approx(sum(per_class_f1) / 3)


# ------------------------------------------------------------------------------------------------ classifier


@pytest.fixture(scope="module")
def tiny32():
    from bertstory.models import load_encoder

    return load_encoder("minilm", name="tiny", random_init=True, seed=0, config_overrides=TINY)


def test_classifier_holds_the_encoder_and_saves_an_analysable_folder(tiny32, tmp_path):
    from transformers import AutoModelForSequenceClassification

    from bertstory.models import attention_maps, load_encoder

    model = build_classifier(tiny32, 3, ["a", "b", "c"], seed=0).eval()
    for name, value in tiny32.model.state_dict().items():
        assert torch.equal(model.base_model.state_dict()[name], value), name
    assert model.config.id2label == {0: "a", 1: "b", 2: "c"} and model.config._attn_implementation == "eager"
    model.save_pretrained(tmp_path)
    tiny32.tokenizer.save_pretrained(tmp_path)

    again = load_encoder(str(tmp_path), name="after")
    assert type(again.model).__name__ == "BertModel"
    ids = torch.tensor([tiny32.tokenizer("A short test sentence.")["input_ids"]])
    mask = torch.ones_like(ids)
    torch.testing.assert_close(attention_maps(again.model, ids, mask), attention_maps(tiny32.model, ids, mask))
    clf = AutoModelForSequenceClassification.from_pretrained(tmp_path).eval()
    with torch.no_grad():
        torch.testing.assert_close(clf(input_ids=ids).logits, model(input_ids=ids).logits)


# ------------------------------------------------------------------------------------------------ end to end


def epoch_losses(run_dir: Path) -> list[float]:
    """Mean training loss of each epoch, from the CSV logger."""
    (path,) = run_dir.rglob("metrics.csv")
    with open(path) as f:
        rows = [r for r in csv.DictReader(f) if r.get("train/loss_epoch")]
    return [float(r["train/loss_epoch"]) for r in sorted(rows, key=lambda r: int(r["epoch"]))]


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    # The random tiny model sits on a plateau near ln 2 for its first epochs (its [CLS] output barely
    # depends on the input yet); a high learning rate makes its first-epoch loss overshoot, and the
    # second epoch lowers it. Learning proper is checked on MiniLM below.
    out = tmp_path_factory.mktemp("ft")
    r = train("model=tiny", "logger=csv", "trainer.max_epochs=2", "optim.lr=1e-2", "optim.warmup=0",
              "data.batch_size=8", "trainer.enable_progress_bar=false", f"hydra.run.dir={out}")
    assert r.returncode == 0, r.stderr[-3000:]
    return out, r


@pytest.mark.slow
def test_two_epochs_lower_the_training_loss(tiny_run):
    out, _ = tiny_run
    losses = epoch_losses(out)
    assert len(losses) == 2 and losses[1] < losses[0]


@pytest.mark.slow
def test_run_leaves_checkpoint_model_and_metrics(tiny_run, tokenizer):
    from transformers import AutoModelForSequenceClassification
    from transformers import AutoTokenizer as Tok

    out, r = tiny_run
    m = json.loads((out / "metrics.json").read_text())
    assert m["kind"] == "finetune" and m["task"] == {"name": "pang_lee", "num_labels": 2, "labels": ["neg", "pos"],
                                                      "metric": "acc"}
    assert (m["data"]["train"], m["data"]["validation"], m["epochs"]) == (160, 40, 2)
    assert [row["epoch"] for row in m["history"]] == [0, 1]
    assert [row["train/loss"] for row in m["history"]] == pytest.approx(epoch_losses(out))
    ckpt_path = out / m["best"]["checkpoint"]
    assert ckpt_path.is_file() and ckpt_path.parent.name == "checkpoints"
    assert m["best"]["score"] == pytest.approx(m["validation"]["acc"])
    assert "kept epoch" in r.stdout and "model.name_or_path=" in r.stdout

    # model/ holds the kept checkpoint's weights ...
    clf = AutoModelForSequenceClassification.from_pretrained(out / "model").eval()
    state = torch.load(ckpt_path, map_location="cpu", weights_only=True)["state_dict"]
    for name, value in clf.state_dict().items():
        assert torch.equal(state["model." + name], value), name
    # ... and its validation accuracy, F1 and MCC are the ones in metrics.json
    dm = datamodule(Tok.from_pretrained(out / "model"), seed=0)
    preds = []
    with torch.no_grad():
        for batch in dm.val_dataloader():
            logits = clf(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
            preds += logits.argmax(-1).tolist()
    y = dm.val.labels
    tp = sum(p == 1 and t == 1 for p, t in zip(preds, y, strict=True))
    fp = sum(p == 1 and t == 0 for p, t in zip(preds, y, strict=True))
    fn = sum(p == 0 and t == 1 for p, t in zip(preds, y, strict=True))
    assert m["validation"]["acc"] == pytest.approx(sum(p == t for p, t in zip(preds, y, strict=True)) / len(y))
    assert m["validation"]["f1"] == pytest.approx(2 * tp / (2 * tp + fp + fn) if tp else 0.0)


@pytest.mark.slow
def test_analyse_before_and_after_then_compare(tiny_run, tmp_path):
    from bertstory.results.compare import main as compare_main
    from tests.conftest import analyze

    out, _ = tiny_run
    common = ["attribution=exact", "data=pang_lee", "data.limit=6", "logger=none", "report.enabled=false"]
    before = analyze("model=tiny", *common, f"hydra.run.dir={tmp_path / 'before'}")
    assert before.returncode == 0, before.stderr[-3000:]
    after = analyze("model=hf", f"model.name_or_path={out / 'model'}", *common, f"hydra.run.dir={tmp_path / 'after'}")
    assert after.returncode == 0, after.stderr[-3000:]
    m = json.loads((tmp_path / "after" / "metrics.json").read_text())
    assert (m["model"]["layers"], m["model"]["heads"], m["data"]["segments"]) == (2, 4, 6)

    compare_main([str(tmp_path / "before"), str(tmp_path / "after"), "--out", str(tmp_path / "cmp")])
    diff = json.loads((tmp_path / "cmp" / "differences.json").read_text())
    js = diff["differences"]["discrepancy/js"]
    assert len(js) == 2 and all(len(row) == 4 for row in js)
    assert any(abs(v) > 1e-6 for row in js for v in row), "fine-tuning changed nothing"
    assert (tmp_path / "cmp" / "discrepancy_js.png").is_file()


@pytest.mark.slow
def test_minilm_learns_pang_lee(tmp_path):
    """Two epochs of the real MiniLM on 8 sentences (one step each) clearly lower the training loss."""
    r = train("logger=csv", "data.limit=8", "data.val_limit=8", "data.batch_size=8", "optim.lr=2e-4",
              "optim.warmup=0", "trainer.max_epochs=2", "trainer.enable_progress_bar=false",
              "trainer.enable_model_summary=false", f"hydra.run.dir={tmp_path}")
    assert r.returncode == 0, r.stderr[-3000:]
    losses = epoch_losses(tmp_path)
    assert len(losses) == 2 and losses[1] < losses[0] - 0.02, losses


def test_resume_checkpoint_of_the_wrong_kind(tiny32, tmp_path):
    from bertstory.finetune.module import FineTuneModule
    from bertstory.finetune.run import check_checkpoint

    two, three = (FineTuneModule(build_classifier(tiny32, n), n) for n in (2, 3))
    good = tmp_path / "two.ckpt"
    torch.save({"epoch": 0, "state_dict": two.state_dict()}, good)
    assert check_checkpoint(str(good), two) == str(good)
    mismatch = r"another model or task \(model.classifier.bias: shape \(2,\) there, shape \(3,\) here"
    with pytest.raises(BertstoryError, match=mismatch):
        check_checkpoint(str(good), three)
    (tmp_path / "junk.ckpt").write_bytes(b"not a checkpoint")
    torch.save({"weights": torch.zeros(2)}, tmp_path / "weights.pt")
    (tmp_path / "run" / "checkpoints").mkdir(parents=True)
    (tmp_path / "run" / "checkpoints" / "best-epoch00.ckpt").write_bytes(b"")
    for path, needle in [(tmp_path / "junk.ckpt", "not a Lightning checkpoint"),
                         (tmp_path / "weights.pt", "no state_dict"),
                         (tmp_path / "run", "is a folder.*best-epoch00.ckpt"),
                         (tmp_path / "missing.ckpt", "no checkpoint at")]:
        with pytest.raises(BertstoryError, match=needle):
            check_checkpoint(str(path), two)


@pytest.mark.slow
def test_resume_from_a_model_folder_is_one_line(tiny_run, tmp_path):
    out, _ = tiny_run
    r = train("model=tiny", "logger=none", f"resume={out / 'model' / 'model.safetensors'}", f"hydra.run.dir={tmp_path}")
    assert "not a Lightning checkpoint" in one_error_line(r)


@pytest.mark.slow
def test_bad_training_data_is_one_line(tmp_path):
    r = train("model=tiny", "logger=none", "data=hf", "data.task=stsb", f"hydra.run.dir={tmp_path}")
    assert "regression" in one_error_line(r)


@pytest.mark.slow
def test_two_cpu_processes_with_ddp(tmp_path):
    """trainer=ddp: the second process joins the same Hydra job; rank 0 alone writes model/ and metrics.json."""
    r = train("model=tiny", "logger=none", "trainer=ddp", "trainer.accelerator=cpu", "trainer.devices=2",
              "trainer.max_epochs=1", "trainer.enable_progress_bar=false", f"hydra.run.dir={tmp_path}")
    assert r.returncode == 0, r.stderr[-3000:]
    m = json.loads((tmp_path / "metrics.json").read_text())
    assert m["epochs"] == 1 and (tmp_path / "model" / "config.json").is_file()
    assert (tmp_path / "train_rank1.log").is_file() and len(list((tmp_path / "checkpoints").glob("*.ckpt"))) == 1
