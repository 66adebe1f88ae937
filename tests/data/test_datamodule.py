"""The data config group: every option instantiates the data module; required keys."""

from __future__ import annotations

import pytest

from bertstory.data import SegmentDataModule
from tests.conftest import CONF_DIR
from tests.data.conftest import write

# ------------------------------------------------------------------------------------ configs


@pytest.mark.parametrize("group", ["wiki", "text", "pang_lee", "hf"])
def test_hydra_configs_instantiate(group, tokenizer, tmp_path, request):
    from hydra import compose, initialize_config_dir
    from hydra.utils import instantiate

    overrides = [f"+data={group}"]
    if group == "text":
        p = write(tmp_path, "c.txt", "hello world\n")
        overrides.append(f"data.path={p}")
    if group == "hf":
        hf_path, _ = request.getfixturevalue("hf_dir")
        overrides += [f"data.dataset={hf_path}", "data.column=sentence"]
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose(overrides=overrides)
    assert cfg.data.name == group and cfg.data.max_length == 128 and cfg.data.pairs is False
    assert cfg.data.batch_size == 8 and cfg.data.num_workers == 0
    dm = instantiate(cfg.data, tokenizer=tokenizer)
    assert isinstance(dm, SegmentDataModule) and dm.spec.reader == group
    if group == "wiki":
        assert dm.spec.limit == 64
    else:
        dm.setup()
        assert dm.stats["segments"] > 0


def test_hydra_text_config_requires_path(tokenizer):
    from hydra import compose, initialize_config_dir
    from hydra.utils import instantiate
    from omegaconf.errors import MissingMandatoryValue

    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose(overrides=["+data=text"])
    with pytest.raises(MissingMandatoryValue):
        instantiate(cfg.data, tokenizer=tokenizer)
