"""``python -m mamakit.student.sam2matte fit --config student/configs/sam2-tiny.yaml``: LightningCLI
over :class:`Sam2MatteSystem` + :class:`Sam2MatteData` (resume with ``--ckpt_path``)."""
from __future__ import annotations


def cli_main(args=None):
    from pytorch_lightning.cli import LightningCLI

    from .data import Sam2MatteData
    from .system import Sam2MatteSystem

    return LightningCLI(Sam2MatteSystem, Sam2MatteData, args=args, save_config_kwargs={"overwrite": True})


if __name__ == "__main__":
    cli_main()
