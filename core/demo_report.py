"""Quality/speed measurements and ``report.html`` for ``mamakit demo``."""
from __future__ import annotations

import csv
import json
import logging
import sys
import time
from pathlib import Path

import cv2
import numpy as np

from mamakit.report import Report, markdown_table

log = logging.getLogger(__name__)


def _read_alpha_dir(folder: Path) -> np.ndarray:
    from mamakit.io import list_images, read_alpha

    return np.stack([read_alpha(p) for p in list_images(folder)])


def _score(pred: np.ndarray, gt: np.ndarray) -> dict:
    from mamakit.metrics import evaluate

    r = evaluate(list(pred), list(gt))
    return {"mad": r["mad"], "grad": r["grad"], "dtssd": r["dtssd"]}


def _training_curve(run_dir: Path) -> list[tuple[int, float]]:
    """(step, train loss) pairs from the Lightning logs (CSV or TensorBoard), best effort."""
    pts: list[tuple[int, float]] = []
    for f in sorted(run_dir.rglob("metrics.csv")):
        with open(f) as fh:
            for row in csv.DictReader(fh):
                for key in ("train/loss", "train_loss", "loss", "train/loss_step"):
                    if row.get(key):
                        pts.append((int(float(row.get("step") or len(pts))), float(row[key])))
                        break
    if pts:
        return pts
    try:
        from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    except ImportError:
        return pts
    for ev in sorted(run_dir.rglob("events.out.tfevents.*")):
        acc = EventAccumulator(str(ev.parent), size_guidance={"scalars": 0})
        acc.Reload()
        tags = acc.Tags().get("scalars", [])
        tag = next((t for t in ("train/loss", "train/loss_step", "train_loss", "loss") if t in tags),
                   next((t for t in tags if "loss" in t and "val" not in t), None))
        if tag:
            pts = [(e.step, e.value) for e in acc.Scalars(tag)]
            if pts:
                return pts
    return pts


def _plot_curve(pts, path: Path) -> bool:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.2), dpi=100)
    if pts:
        steps, vals = zip(*pts)
        ax.plot(steps, vals, lw=1.2)
    else:
        ax.text(0.5, 0.5, "no training log found", ha="center", va="center", transform=ax.transAxes)
    ax.set_xlabel("step")
    ax.set_ylabel("training loss")
    ax.set_title("distillation")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return bool(pts)


def _plot_quality_speed(rows, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.6), dpi=100)
    for name, m, ms in rows:
        if ms is None:
            ax.axhline(m["mad"], ls="--", color="gray", lw=1)
            ax.text(0.01, m["mad"], f" {name}", transform=ax.get_yaxis_transform(), va="bottom", fontsize=8, color="gray")
            continue
        ax.scatter([ms], [m["mad"]], s=40)
        ax.annotate(name, (ms, m["mad"]), textcoords="offset points", xytext=(5, 5), fontsize=8)
    ax.set_xscale("log")
    ax.set_xlabel("ms per frame (log, this CPU)")
    ax.set_ylabel("MAD ×1e3 (lower is better)")
    ax.set_title("quality vs speed on the held-out clip")
    ax.grid(alpha=0.3, which="both")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def _rgb_png(path: Path, rgb: np.ndarray) -> Path:
    cv2.imwrite(str(path), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    return path


def _gray_png(path: Path, a: np.ndarray) -> Path:
    cv2.imwrite(str(path), np.clip(a * 255 + 0.5, 0, 255).astype(np.uint8))
    return path


def write_report(demo, clip, runs: dict, run_dir: Path) -> Path:
    from mamakit.teacher import build_teacher

    out = demo.out
    pics = out / "report_files"
    pics.mkdir(parents=True, exist_ok=True)
    frames, gt, masks = clip.frames(), clip.alpha(), clip.masks()

    print("  closed-form teacher on the held-out clip …", file=sys.stderr, flush=True)
    teacher = build_teacher("closed-form")
    t0 = time.perf_counter()
    teacher_alpha = teacher(frames, masks).alpha
    teacher_ms = (time.perf_counter() - t0) * 1000 / len(frames)

    preds = {name: _read_alpha_dir(r["alpha_dir"]) for name, r in runs.items()}
    rows = [("mask as-is", _score(masks, gt), None), ("teacher (closed-form)", _score(teacher_alpha, gt), teacher_ms)]
    for name, r in runs.items():
        st = r["stats"]
        ms = _model_ms(st)
        rows.append((f"student {name}", _score(preds[name], gt), ms))

    t = len(frames) // 2
    comp = _composite_green(frames[t], preds["fp32"][t])
    items = [
        (_rgb_png(pics / "frame.png", frames[t]), "frame"),
        (_gray_png(pics / "mask.png", masks[t]), "coarse mask"),
        (_gray_png(pics / "teacher.png", teacher_alpha[t]), "teacher (closed-form)"),
        (_gray_png(pics / "student.png", preds["fp32"][t]), "student fp32"),
        (_gray_png(pics / "student_int8.png", preds["int8"][t]), "student int8"),
        (_gray_png(pics / "gt.png", gt[t]), "ground truth"),
        (_rgb_png(pics / "composite.png", comp), "composite (student)"),
    ]
    curve = _training_curve(run_dir)
    _plot_curve(curve, pics / "training_curve.png")
    _plot_quality_speed(rows, pics / "quality_speed.png")

    header = ["", "MAD ×1e3", "Grad ÷1e3", "dtSSD ×1e2", "ms/frame"]
    table = [[n, m["mad"], m["grad"], m["dtssd"], ms] for n, m, ms in rows]
    rep = Report("mamakit demo", f"teacher → distillation → export → runtime, on this CPU "
                 f"({'quick' if demo.quick else 'full'} run)")
    rep.heading(f"Held-out synthetic clip ({frames.shape[2]}×{frames.shape[1]}, {len(frames)} frames), frame {t}")
    rep.images(items, out)
    rep.heading("Metrics on the held-out clip (exact ground truth)")
    rep.table(header, table, fmt="{:.2f}")
    rep.text("ms/frame: the teacher is timed in-process on the whole clip; students are the runtime's "
             "model-only time (ONNX Runtime, CPU) from `mamakit run --stats`. Measured on this machine in this run.")
    rep.plot(str(pics / "quality_speed.png"), "quality vs speed", out)
    rep.heading("Training")
    rep.plot(str(pics / "training_curve.png"), "training loss (Lightning logs)", out)
    real = out / "runtime" / "real" / "stats.json"
    if real.exists():
        rep.heading("Shipped default student on real frames (videomama_example)")
        rep.pre(json.dumps(json.loads(real.read_text()), indent=1)[:3000])
    rep.heading("Step timings (s)")
    rep.table(["step", "seconds"], [[k, v] for k, v in demo.timings.items()], fmt="{:.1f}")
    path = rep.write(out / "report.html")
    summary = {"metrics": {n: {**m, "ms_per_frame": ms} for n, m, ms in rows}, "timings": demo.timings,
               "training_curve_points": len(curve)}
    (out / "report.json").write_text(json.dumps(summary, indent=2) + "\n")
    print(markdown_table(header, table, fmt="{:.2f}"), file=sys.stderr)
    return path


def _model_ms(stats: dict) -> float | None:
    """The model-only ms/frame from a runtime stats JSON (whatever the exact key layout)."""
    stages = stats.get("stages") or stats.get("stage_ms") or {}
    for key in ("infer", "inference", "model"):
        v = stages.get(key)
        if isinstance(v, dict):
            v = v.get("mean_ms") or v.get("mean") or v.get("p50_ms") or v.get("p50")
        if isinstance(v, (int, float)):
            return float(v)
    return None


def _composite_green(rgb: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    a = alpha[..., None].astype(np.float32)
    green = np.array([0, 177, 64], np.float32)
    return np.clip(rgb * a + green * (1 - a), 0, 255).astype(np.uint8)
