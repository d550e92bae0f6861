"""SAM2-Matte: SAM2's video model fine-tuned into a promptable video matting model.

Every call into the ``sam2`` package goes through :mod:`.adapter`. Public API:
:class:`Sam2MatteConfig`, :func:`tiny_config`, :func:`sam21_config`, :class:`Sam2Matte`,
:func:`load_sam2_matte`, :func:`read_checkpoint`. Training: ``python -m mamakit.student.sam2matte fit
--config student/configs/sam2-tiny.yaml`` (Lightning system in :mod:`.system`, data in :mod:`.data`).
"""
from .config import Sam2MatteConfig, sam21_config, tiny_config


def __getattr__(name):  # torch-heavy parts load on first use
    if name == "Sam2Matte":
        from .model import Sam2Matte

        return Sam2Matte
    if name in ("load_sam2_matte", "read_checkpoint"):
        from . import io

        return getattr(io, name)
    raise AttributeError(name)


__all__ = ["Sam2MatteConfig", "tiny_config", "sam21_config", "Sam2Matte", "load_sam2_matte", "read_checkpoint"]
