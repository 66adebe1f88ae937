"""The results API against the shards and metrics.json of a real (tiny) run."""

import json
import shutil

import pytest
import torch
from omegaconf import DictConfig, OmegaConf

from bertstory.errors import BertstoryError
from bertstory.results import load
from tests.conftest import run_once, shard_maps


@pytest.fixture(scope="module")
def exact_run(tmp_path_factory):
    return run_once(tmp_path_factory, "exact")


@pytest.mark.slow
def test_metrics_and_config(exact_run):
    run = load(exact_run)
    assert run.metrics.raw == json.loads((exact_run / "metrics.json").read_text())
    assert isinstance(run.config, DictConfig)
    assert run.config == OmegaConf.load(exact_run / ".hydra" / "config.yaml")
    assert run.config.model.name == "tiny" and run.config.attribution.name == "exact"
    assert OmegaConf.to_container(run.config.report.heads) == [[1, 2]]
    assert (run.layers, run.heads) == (2, 4)


@pytest.mark.slow
def test_segments_equal_the_shards(exact_run):
    maps = shard_maps(exact_run)
    run = load(exact_run)
    segments = list(run.segments())
    assert sorted(s.index for s in segments) == sorted(maps) == run.indices() == list(range(5))
    for seg in segments:
        saved = maps[seg.index]
        assert torch.equal(seg.input_ids, saved["input_ids"])
        assert torch.equal(seg.attention, saved["attention"]) and torch.equal(seg.attribution, saved["attribution"])
        n = len(seg.input_ids)
        assert seg.attention.shape == seg.attribution.shape == (2, 4, n, n)
        assert seg.metadata["model"] == "tiny" and seg.metadata["method"] == "exact"


@pytest.mark.slow
def test_segments_agree_with_metrics_json(exact_run, tiny64):
    """Token-weighted means over the saved maps (all segments saved, float32) give metrics.json's numbers."""
    run = load(exact_run)
    segments = list(run.segments())
    tokens = sum(len(s.input_ids) for s in segments)
    assert tokens == run.metrics["data"]["tokens"]
    att_self = sum(s.attention.double().diagonal(dim1=-2, dim2=-1).sum(-1) for s in segments) / tokens
    own = sum(s.attribution.double().diagonal(dim1=-2, dim2=-1).sum(-1) for s in segments) / tokens
    m = run.metrics
    torch.testing.assert_close(att_self, torch.tensor(m["attention"]["patterns"]["self"], dtype=torch.float64),
                               atol=1e-6, rtol=0)
    torch.testing.assert_close(own, torch.tensor(m["attribution"]["self"], dtype=torch.float64), atol=1e-6, rtol=0)
    cls_id = tiny64.tokenizer.cls_token_id
    cls_mass = sum((s.attention.double() * (s.input_ids == cls_id)).sum((-1, -2)) for s in segments) / tokens
    torch.testing.assert_close(cls_mass, torch.tensor(run.metrics["attention"]["patterns"]["cls"],
                                                      dtype=torch.float64), atol=1e-6, rtol=0)


@pytest.mark.slow
def test_tokens_come_from_the_runs_tokenizer(exact_run, tiny64):
    for seg in load(exact_run).segments():
        assert seg.tokens == tiny64.tokenizer.convert_ids_to_tokens(seg.input_ids.tolist())
        assert seg.tokens[0] == "[CLS]" and seg.tokens[-1] == "[SEP]"


@pytest.mark.slow
def test_tokens_are_ids_when_the_tokenizer_cannot_be_loaded(exact_run, tmp_path):
    shutil.copy(exact_run / "metrics.json", tmp_path)
    shutil.copytree(exact_run / "maps", tmp_path / "maps")
    (tmp_path / ".hydra").mkdir()
    cfg = OmegaConf.load(exact_run / ".hydra" / "config.yaml")
    cfg.model.name_or_path = str(tmp_path / "no-such-model")
    OmegaConf.save(cfg, tmp_path / ".hydra" / "config.yaml")
    seg = next(load(tmp_path).segments())
    assert seg.tokens == seg.input_ids.tolist() and all(isinstance(t, int) for t in seg.tokens)


@pytest.mark.slow
def test_segments_by_index_stop_early(exact_run):
    run = load(exact_run)
    assert [s.index for s in run.segments([3])] == [3]
    assert sorted(s.index for s in run.segments([4, 0])) == [0, 4]
    assert list(run.segments([99])) == []


def test_load_needs_metrics_json(tmp_path):
    with pytest.raises(BertstoryError, match="metrics.json"):
        load(tmp_path)
