"""Each private API that bertstory/compat.py leans on still behaves as it expects in the installed libraries.

A failure here names the library change to adapt to; it does not mean bertstory's numbers are wrong.
"""

from __future__ import annotations

import inspect
import warnings

import pytest
import torch
from hydra import compose, initialize_config_dir

from bertstory import compat
from tests.conftest import CONF_DIR, TINY


def test_transformers_config_takes_the_eager_kernel_and_the_model_returns_attention():
    from transformers import BertConfig, BertModel

    config = BertConfig(**TINY, vocab_size=50)
    compat.use_eager_attention(config)
    assert compat.attention_implementation(config) == "eager"
    model = BertModel(config).eval()
    out = model(torch.tensor([[1, 2, 3]]), output_attentions=True)
    assert out.attentions is not None and out.attentions[0].shape == (1, TINY["num_attention_heads"], 3, 3)


def test_lightning_launcher_calls_the_hydra_command_hook():
    from lightning.pytorch.strategies.launchers import subprocess_script

    assert hasattr(subprocess_script, "_hydra_subprocess_cmd"), "Lightning renamed _hydra_subprocess_cmd"
    source = inspect.getsource(subprocess_script._SubprocessScriptLauncher._call_children_scripts)
    assert "_hydra_subprocess_cmd(" in source, "Lightning's launcher no longer calls _hydra_subprocess_cmd"
    original = subprocess_script._hydra_subprocess_cmd

    def command(local_rank):
        return ["echo", str(local_rank)], "/"

    with compat.hydra_subprocess_command(command) as installed:
        assert installed and subprocess_script._hydra_subprocess_cmd is command
    assert subprocess_script._hydra_subprocess_cmd is original


def test_torchmetrics_merged_state_counts_as_an_update():
    from torchmetrics.aggregation import SumMetric

    metric = SumMetric()
    metric.update(torch.tensor(2.0))
    first = metric.compute()
    fresh = SumMetric()
    fresh.merge_state({"sum_value": torch.tensor(5.0)})
    compat.count_merged_update(fresh)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # "compute before update" would be a warning
        assert float(fresh.compute()) == 5.0
    metric.merge_state({"sum_value": torch.tensor(1.0)})
    compat.count_merged_update(metric)  # the cached 2.0 is dropped
    assert float(first) == 2.0 and float(metric.compute()) == 3.0


def test_wandb_logger_keeps_its_run_in_experiment(tmp_path, monkeypatch):
    from lightning.pytorch.loggers import WandbLogger

    monkeypatch.setenv("WANDB_MODE", "offline")
    logger = WandbLogger(project="compat-test", save_dir=str(tmp_path), offline=True)
    assert not compat.wandb_run_started(logger)
    run = logger.experiment
    try:
        assert compat.wandb_run_started(logger)
    finally:
        run.finish()


@pytest.mark.parametrize(
    "override, kind, said",
    [("model=nope", "option", ("model", "nope")), ("data.nope=1", "key", ("data.nope",))],
)
def test_hydra_error_text_is_still_understood(override, kind, said):
    with pytest.raises(Exception) as info, initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        compose(config_name="analyze", overrides=[override])
    assert compat.hydra_override_error(str(info.value)) == (kind, said)
