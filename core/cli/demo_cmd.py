"""``mamakit demo [--out DIR] [--quick]``: the whole mission on this CPU, no weights, no network.

synthetic clips -> CPU reference teacher labels -> Lightning distillation (cpu-demo.yaml) ->
fp32 + int8 bundles (parity-checked, `export check`) -> the torch-free runtime on a held-out
clip -> ``DIR/report.html`` (pictures, training curve, quality-vs-speed plot, metrics table).

Every stage runs through the same ``mamakit`` subcommands a user would type, so the demo shows
(and tests) the real commands; the commands are printed as they run.
"""
from __future__ import annotations

import logging
import shutil
import subprocess
import sys
import time
from pathlib import Path

from mamakit.errors import InputError, WorkError

log = logging.getLogger(__name__)
CONFIG_DIR = Path(__file__).resolve().parents[2] / "student" / "configs"


def add_parser(sub):
    p = sub.add_parser("demo", help="run the whole pipeline on synthetic clips and write an HTML report",
                       description=__doc__.split("\n\n")[0])
    p.add_argument("--out", default="demo-out", help="output folder (default: demo-out)")
    p.add_argument("--quick", action="store_true", help="smaller, faster run (generated clips only, ~3 min)")
    p.add_argument("--seed", type=int, default=0, help="random seed for data and training")
    p.add_argument("--max-train-seconds", type=float, default=None, help="cap the distillation time")
    p.set_defaults(func=run)


def run(args) -> int:
    from mamakit.demo import Demo

    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise InputError(f"--out {out} is a file: give a folder for the demo's outputs")
    parent = out.resolve().parent
    if not parent.is_dir():
        raise InputError(f"--out parent folder {parent} does not exist: create it first")
    demo = Demo(out, quick=args.quick, seed=args.seed, max_train_seconds=args.max_train_seconds)
    report = demo.run()
    print(f"report: {report}")
    return 0
