"""Write a tiny random-weight VideoMaMa teacher in the official on-disk layout.

    python -m mamakit.teacher.make_tiny OUT [--seed 0] [--in-channels 12] [--fp16-variant]

writes ``OUT/base/vae/`` (an SVD-style base folder) and ``OUT/videomama/unet/`` (a VideoMaMa
folder), each ``config.json`` + ``diffusion_pytorch_model[.fp16].safetensors``; then

    mamakit label --teacher videomama --base-model OUT/base --unet OUT/videomama ...

runs end to end (random weights: the alpha is meaningless, the plumbing is real).
"""
from __future__ import annotations

import argparse
import logging
import shutil
import sys
from pathlib import Path

from mamakit.errors import ConfigError, MamakitError
from mamakit.fsutil import atomic_path, check_writable_dir

log = logging.getLogger(__name__)


def make_tiny(out, seed: int = 0, in_channels: int = 12, fp16_variant: bool = False) -> dict:
    """Write the tiny teacher folders under ``out``; returns ``{"base_model": ..., "unet": ...}``."""
    import torch

    from mamakit.teacher.videomama.teacher import build_tiny_models

    out = Path(out)
    check_writable_dir(out, "output")
    if out.exists() and any(out.iterdir()):
        raise ConfigError(f"{out} exists and is not empty: choose a new folder")
    unet, vae = build_tiny_models(seed, in_channels)
    out.mkdir(parents=True, exist_ok=True)
    variant = "fp16" if fp16_variant else None
    dtype = torch.float16 if fp16_variant else torch.float32
    for model, final in ((vae, out / "base" / "vae"), (unet, out / "videomama" / "unet")):
        final.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(final) as tmp:
            if dtype != torch.float32:
                model = model.to(dtype)
            model.save_pretrained(tmp, safe_serialization=True, variant=variant)
    return {"base_model": str(out / "base"), "unet": str(out / "videomama")}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m mamakit.teacher.make_tiny", description=__doc__.splitlines()[0])
    p.add_argument("out")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--in-channels", type=int, default=12, choices=[12, 9])
    p.add_argument("--fp16-variant", action="store_true", help="save fp16 weights as the .fp16 variant")
    args = p.parse_args(argv)
    try:
        paths = make_tiny(args.out, args.seed, args.in_channels, args.fp16_variant)
    except MamakitError as exc:
        print(f"error: {' '.join(str(exc).split())}", file=sys.stderr)
        return exc.exit_code
    print(f"tiny random VideoMaMa teacher written:\n  --base-model {paths['base_model']}\n  --unet {paths['unet']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
