"""``mamakit bench [NAME …] [--quick]``: run the benchmarks of a source checkout (bench/)."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from mamakit.errors import InputError

BENCH_DIR = Path(__file__).resolve().parents[2] / "bench"


def add_parser(sub):
    p = sub.add_parser("bench", help="run benchmarks (tables + JSON) from a source checkout",
                       description="Run bench/run_all: every benchmark, or the ones named.")
    p.add_argument("names", nargs="*", help="teacher, student, export, runtime, sam2 (default: all)")
    p.add_argument("--quick", action="store_true", help="smaller sizes and fewer frames")
    p.add_argument("--out", default=None, help="folder for results.json and RESULTS.md (default: bench/)")
    p.set_defaults(func=run)


def run(args) -> int:
    runner = BENCH_DIR / "run_all"
    if not runner.is_file():
        raise InputError("benchmarks live in the source checkout (bench/run_all); clone the repository to run them")
    known = ("teacher", "student", "export", "runtime", "sam2")
    unknown = [n for n in args.names if n not in known]
    if unknown:
        raise InputError(f"unknown benchmark {', '.join(unknown)}: choose from {', '.join(known)}")
    cmd = [sys.executable, str(runner)]
    if args.names:
        cmd += ["--only", ",".join(args.names)]
    if args.quick:
        cmd.append("--quick")
    if args.out:
        cmd += ["--out", args.out]
    return subprocess.call(cmd)
