"""The ``viewer`` config block: defaults, overrides and one-line errors for bad values."""

import pytest
from omegaconf import OmegaConf

from bertstory.errors import BertstoryError
from bertstory.viewer import ViewerOptions
from tests.conftest import CONF_DIR


def test_defaults_come_from_analyze_yaml():
    cfg = OmegaConf.load(CONF_DIR / "analyze.yaml")
    options = ViewerOptions.from_config(cfg)
    assert (options.enabled, options.max_segments, options.dtype) == (True, 32, "float16")
    assert ViewerOptions.from_config(None) == options


def test_overrides_are_read():
    cfg = OmegaConf.create({"viewer": {"enabled": False, "max_segments": 5, "dtype": "uint8"}})
    assert ViewerOptions.from_config(cfg) == ViewerOptions(False, 5, "uint8")


@pytest.mark.parametrize("block,needle", [({"dtype": "float64"}, "viewer.dtype=float64"),
                                          ({"max_segments": -1}, "viewer.max_segments=-1")])
def test_bad_values_name_the_key(block, needle):
    with pytest.raises(BertstoryError, match=needle.replace(".", r"\.")):
        ViewerOptions.from_config(OmegaConf.create({"viewer": block}))


def test_a_run_resumes_whatever_its_viewer_block():
    """The viewer only reports a run: resume=true accepts another viewer block (or none, from before it)."""
    from bertstory.run.resume import comparable_config, config_differences

    old = OmegaConf.load(CONF_DIR / "analyze.yaml")
    new = OmegaConf.merge(old, {"viewer": {"max_segments": 3, "dtype": "uint8"}})
    del old["viewer"]
    assert config_differences(comparable_config(old), comparable_config(new)) == []
    changed = OmegaConf.merge(new, {"writer": {"max_segments": 3}})
    assert config_differences(comparable_config(new), comparable_config(changed)) == ["writer.max_segments: 64 -> 3"]
