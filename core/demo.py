"""The demo pipeline behind ``mamakit demo`` (see :mod:`mamakit.cli.demo_cmd`).

Each step calls the same ``mamakit`` subcommand a user would type (in a subprocess, printed
before it runs), so the demo exercises the real tools end to end. Steps whose output already
exists are skipped, so an interrupted demo resumes.
"""
from __future__ import annotations

import json
import logging
import os
import shlex
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from mamakit.errors import WorkError

log = logging.getLogger(__name__)
REPO = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class DemoSizes:
    train_clips: int
    train_frames: int
    size: tuple[int, int]
    heldout_frames: int
    heldout_size: tuple[int, int]
    export_size: tuple[int, int]
    max_train_seconds: float
    max_steps: int


QUICK = DemoSizes(train_clips=6, train_frames=8, size=(160, 96), heldout_frames=16, heldout_size=(320, 192),
                  export_size=(320, 192), max_train_seconds=50, max_steps=120)
FULL = DemoSizes(train_clips=24, train_frames=12, size=(256, 144), heldout_frames=24, heldout_size=(512, 288),
                 export_size=(512, 288), max_train_seconds=240, max_steps=1500)


@dataclass
class Demo:
    out: Path
    quick: bool = False
    seed: int = 0
    max_train_seconds: float | None = None
    timings: dict = field(default_factory=dict)

    def __post_init__(self):
        self.out = Path(self.out)
        self.sizes = QUICK if self.quick else FULL
        self.n_steps = 9 if not self.quick else 8
        self.step_no = 0

    # ------------------------------------------------------------------ helpers
    def _say(self, text: str) -> None:
        self.step_no += 1
        print(f"\n[{self.step_no}/{self.n_steps}] {text}", file=sys.stderr, flush=True)

    def _mamakit(self, *args, what: str) -> float:
        cmd = [sys.executable, "-m", "mamakit", *map(str, args)]
        shown = "mamakit " + " ".join(shlex.quote(str(a)) for a in args)
        print(f"$ {shown}", file=sys.stderr, flush=True)
        t0 = time.perf_counter()
        proc = subprocess.run(cmd, cwd=os.getcwd())
        secs = time.perf_counter() - t0
        self.timings[what] = round(secs, 1)
        if proc.returncode != 0:
            raise WorkError(f"demo step '{what}' failed (exit {proc.returncode}): {shown}")
        return secs

    # ------------------------------------------------------------------ steps
    def run(self) -> Path:
        t_start = time.perf_counter()
        s = self.sizes
        out = self.out
        out.mkdir(parents=True, exist_ok=True)
        data, held = out / "data" / "train", out / "data" / "heldout"
        labels = out / "data" / "train-labelled"
        (out / "data").mkdir(exist_ok=True)

        self._say(f"synthesising {s.train_clips} training clips ({s.train_frames} frames, {s.size[0]}x{s.size[1]}) "
                  "and one held-out clip with exact ground truth")
        self._mamakit("synth", "--out", data, "--clips", s.train_clips, "--frames", s.train_frames,
                      "--size", f"{s.size[0]}x{s.size[1]}", "--seed", self.seed, what="synth")
        self._heldout(held)

        self._say("labelling the training clips with the CPU reference teacher (closed-form matting)")
        self._mamakit("label", "--teacher", "closed-form", "--source", data, "--out", labels, what="label")

        self._say("distilling the student with PyTorch Lightning (student/configs/cpu-demo.yaml)")
        run_dir = out / "train"
        ckpt = self._distill(labels, run_dir)

        self._say("exporting fp32 and int8 ONNX bundles (parity measured at export time)")
        b32, b8 = out / "bundles" / "student-fp32", out / "bundles" / "student-int8"
        wh = f"{s.export_size[0]}x{s.export_size[1]}"
        b32.parent.mkdir(parents=True, exist_ok=True)
        if not (b32 / "bundle.json").exists():
            self._mamakit("export", "onnx", "--checkpoint", ckpt, "--out", b32, "--size", wh, "--precision", "fp32",
                          what="export-fp32")
        if not (b8 / "bundle.json").exists():
            self._mamakit("export", "onnx", "--checkpoint", ckpt, "--out", b8, "--size", wh, "--precision", "int8",
                          "--calib", labels, what="export-int8")

        self._say("checking both bundles anywhere: checksums + reference sample through ONNX Runtime")
        self._mamakit("export", "check", b32, what="check-fp32")
        self._mamakit("export", "check", b8, what="check-int8")

        self._say("running the torch-free runtime on the held-out clip (fp32 and int8)")
        from mamakit.dataset import Dataset

        clip = next(iter(Dataset(held)))
        runs = {}
        for name, bundle in (("fp32", b32), ("int8", b8)):
            rdir = out / "runtime" / name
            rdir.mkdir(parents=True, exist_ok=True)
            stats = rdir / "stats.json"
            self._mamakit("run", "--bundle", bundle, "--source", clip.root / "frames", "--masks", clip.root / "masks",
                          "--alpha", rdir / "alpha", "--composite", rdir / "composite.mp4", "--background", "green",
                          "--stats", stats, what=f"run-{name}")
            runs[name] = {"alpha_dir": rdir / "alpha", "stats": json.loads(stats.read_text())}

        if not self.quick:
            self._say("running the shipped default student on real frames (../shared/data/videomama_example)")
            self._real_frames()

        self._say("measuring quality and speed, writing the report")
        from mamakit.demo_report import write_report

        report = write_report(self, clip, runs, run_dir)
        total = time.perf_counter() - t_start
        print(f"\ndemo finished in {total:.0f} s", file=sys.stderr)
        return report

    def _heldout(self, held: Path) -> None:
        """One held-out clip with exact GT; its coarse masks are downsampled/polygon-simplified
        per frame (no whole-clip bounding box), the usual case the student is meant for."""
        from mamakit.dataset import DatasetWriter
        from mamakit.degrade import DegradeConfig
        from mamakit.synth import make_clip

        t0 = time.perf_counter()
        with DatasetWriter(held) as dw:
            if "heldout" not in dw:
                s = self.sizes
                clip = make_clip(np.random.default_rng([self.seed, 1000]), s.heldout_frames, s.heldout_size,
                                 degrade_cfg=DegradeConfig(p_box=0.0))
                dw.write_clip("heldout", clip.frames, clip.alpha, clip.masks, clip.fgr, source="synth",
                              alpha_origin="gt", extra={"synth": {"seed": self.seed, "heldout": True, **clip.info}})
        self.timings["synth-heldout"] = round(time.perf_counter() - t0, 1)

    def _distill(self, labels: Path, run_dir: Path) -> Path:
        s = self.sizes
        ckpt = run_dir / "checkpoints" / "last.ckpt"
        if ckpt.exists() and (run_dir / "done").exists():
            return ckpt
        secs = self.max_train_seconds or s.max_train_seconds
        cfg = REPO / "student" / "configs" / "cpu-demo.yaml"
        self._mamakit("distill", "--config", cfg, "--data.root", labels, "--trainer.default_root_dir", run_dir,
                      "--trainer.max_steps", s.max_steps, "--trainer.max_time", _max_time(secs),
                      "--trainer.log_every_n_steps", 2,
                      "--seed_everything", self.seed, what="distill")
        if not ckpt.exists():
            found = sorted(run_dir.rglob("*.ckpt"))
            if not found:
                raise WorkError(f"distillation wrote no checkpoint under {run_dir}")
            ckpt = found[-1]
        (run_dir / "done").write_text("ok\n")
        return ckpt

    def _real_frames(self) -> None:
        shared = REPO.parent / "shared" / "data" / "videomama_example"
        default = REPO / "runtime" / "bundles" / "default"
        if not (shared / "image" / "0000").is_dir() or not (default / "bundle.json").exists():
            print("  skipped: ../shared/data/videomama_example or the default bundle is absent", file=sys.stderr)
            self.timings["real-frames"] = None
            return
        rdir = self.out / "runtime" / "real"
        rdir.mkdir(parents=True, exist_ok=True)
        self._mamakit("run", "--source", shared / "image" / "0000", "--masks", shared / "mask" / "0000",
                      "--alpha", rdir / "alpha", "--composite", rdir / "composite.mp4", "--background", "blur",
                      "--stats", rdir / "stats.json", what="real-frames")


def _max_time(seconds: float) -> str:
    s = int(seconds)
    return f"00:{s // 3600:02d}:{(s % 3600) // 60:02d}:{s % 60:02d}"
