"""Analyse attention versus attribution of every head: ``python analyze.py [overrides]`` (see README)."""

from pathlib import Path

import hydra
from omegaconf import DictConfig

from bertstory.cli import check_overrides, setup_environment, user_errors

CONF = str(Path(__file__).resolve().parent / "conf")


@hydra.main(version_base="1.3", config_path=CONF, config_name="analyze")
def main(cfg: DictConfig) -> None:
    from hydra.core.hydra_config import HydraConfig

    from bertstory.run.analysis import run

    with user_errors():
        run(cfg, HydraConfig.get().runtime.output_dir)


if __name__ == "__main__":
    setup_environment()
    check_overrides(CONF, "analyze")
    main()
