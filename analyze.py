"""Analyse attention versus attribution of every head: ``python analyze.py [overrides]`` (see README)."""

import hydra
from omegaconf import DictConfig

from bertstory.cli import setup_environment, user_errors

setup_environment()


@hydra.main(version_base="1.3", config_path="conf", config_name="analyze")
def main(cfg: DictConfig) -> None:
    from hydra.core.hydra_config import HydraConfig

    from bertstory.analysis import run

    with user_errors():
        run(cfg, HydraConfig.get().runtime.output_dir)


if __name__ == "__main__":
    main()
