"""Fine-tune an encoder for sequence classification: ``python train.py [overrides]`` (see docs/finetune.md)."""

from pathlib import Path

import hydra
from omegaconf import DictConfig

from bertstory.cli import check_overrides, setup_environment, user_errors

CONF = str(Path(__file__).resolve().parent / "conf")


@hydra.main(version_base="1.3", config_path=CONF, config_name="train")
def main(cfg: DictConfig) -> None:
    from hydra.core.hydra_config import HydraConfig

    from bertstory.finetune.run import run

    with user_errors():
        run(cfg, HydraConfig.get().runtime.output_dir)


if __name__ == "__main__":
    setup_environment()
    check_overrides(CONF, "train")
    main()
