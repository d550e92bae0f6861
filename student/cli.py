"""``mamakit distill``: train a student with a Lightning recipe (LightningCLI underneath).

    mamakit distill --config student/configs/cpu-demo.yaml [--section.key value ...] [--ckpt_path last]

Unknown arguments are forwarded to LightningCLI (``--trainer.max_steps 100``,
``--data.dataset DIR``, ``--model.lr 1e-3`` ...). Nothing heavy is imported at module level.
"""
from __future__ import annotations

import argparse
import logging
from pathlib import Path

log = logging.getLogger(__name__)


def add_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "distill",
        help="distil the teacher into a fast streaming student (PyTorch Lightning)",
        description="Train a student from a YAML recipe (student/configs/*.yaml). Extra --section.key value "
                    "arguments override the recipe (LightningCLI syntax); the resolved config is saved "
                    "beside the checkpoints.",
    )
    p.add_argument("--config", action="append", metavar="FILE",
                   help="recipe YAML (repeatable; later files override earlier ones)")
    p.add_argument("--ckpt_path", "--ckpt-path", dest="ckpt_path", metavar="PATH",
                   help="resume: a checkpoint file, or 'last' for last.ckpt in the checkpoint folder")
    p.set_defaults(func=run, _accepts_extra=True)
    return p


def _recipe(path: str) -> str:
    """A path, or the name of a recipe shipped in student/configs (e.g. ``cpu-demo``)."""
    p = Path(path)
    if p.is_file():
        return str(p)
    shipped = Path(__file__).parent / "configs" / (path if path.endswith(".yaml") else f"{path}.yaml")
    if not p.suffix and shipped.is_file():
        return str(shipped)
    from mamakit.errors import ConfigError

    if p.exists():
        raise ConfigError(f"config {path} is not a file: pass a YAML recipe")
    raise ConfigError(f"config {path} does not exist: pass a YAML recipe such as student/configs/cpu-demo.yaml")


def run(args: argparse.Namespace) -> int:
    from mamakit.errors import ConfigError, require

    if not args.config:
        raise ConfigError("distill needs --config FILE (e.g. student/configs/cpu-demo.yaml)")
    configs = [_recipe(c) for c in args.config]
    ckpt = args.ckpt_path
    if ckpt and ckpt not in ("last", "best") and not Path(ckpt).is_file():
        raise ConfigError(f"--ckpt_path {ckpt} does not exist: pass a checkpoint file or 'last'")
    require("pytorch_lightning", "train", "distillation")
    require("jsonargparse", "train", "distillation")
    if any(Path(c).name.startswith("sam2-") for c in configs):
        return _run_sam2(configs, ckpt, list(getattr(args, "extra", []) or []))
    from mamakit.student.distill import run_distill

    lightning_args: list[str] = []
    for c in configs:
        lightning_args += ["--config", c]
    lightning_args += list(getattr(args, "extra", []) or [])
    out = run_distill(lightning_args, ckpt_path=ckpt)
    if out.get("last"):
        print(f"student checkpoint: {out['last']}")
        print(f"student folder:     {out['student_dir']}  (step {out['global_step']})")
    return 0


def _run_sam2(configs: list[str], ckpt: str | None, extra: list[str]) -> int:
    """Recipes named ``sam2-*.yaml`` fine-tune SAM2-Matte (LightningCLI over its system)."""
    from mamakit.errors import require

    require("sam2", "sam2", "SAM2-Matte")
    from mamakit.student.sam2matte.__main__ import cli_main

    lightning_args = ["fit"]
    for c in configs:
        lightning_args += ["--config", c]
    if ckpt:
        lightning_args += ["--ckpt_path", ckpt]
    cli_main(lightning_args + extra)
    return 0
