#!/usr/bin/env python3
"""Student benchmark: quality vs the CPU reference teacher and the coarse mask, and speed at 1280x720.

    python bench/student.py --checkpoint /work/artifacts/cpu-default/checkpoints/last.ckpt [--quick] [--json out.json]

Validation set (evaluation only, never used for training or tuning): the alphamatting.com
foregrounds with their ground-truth alpha (``../shared/data/alphamatting``), foreground colour
estimated with pymatting's ``estimate_foreground_ml``, composited over *moving* backgrounds
(photos shipped with scikit-image, panned across the clip) while the foreground also moves;
coarse masks from :func:`mamakit.degrade.degrade_masks` (FIELD_GUIDE §1, fixed seed).

Methods, each on the same clips at the same size:
  * ``mask``        the coarse mask as the alpha (mask-as-is);
  * ``teacher``     the CPU reference teacher (``build_teacher("closed-form")``) on frames + masks;
  * ``student``     the student streamed frame by frame with a mask on every frame;
  * ``student-ff``  the student with only the first frame's mask (its own alpha guides the rest).

At clip sizes other than 1280x720 (``--quick``: 640x360) the student's downsample ratio is scaled
so its trunk is the one it has at 1280x720 — as deployed, where the runtime processes every frame
at the bundle's 1280x720 (``--native-ratio`` keeps the checkpoint's ratio).

Metrics (``mamakit.metrics``): MAD x1e3 and Grad /1e3 (mean over frames), dtSSD x1e2 (per clip).
Speed: per-frame wall time at 1280x720 of the teacher and of the student (PyTorch, eval, no
grad, the process's torch threads), on the same machine in the same run. Targets (issue 4):
student MAD <= 1.25 x teacher MAD and >= 25 % below the mask's; student dtSSD <= teacher's;
student >= 100 x faster per frame.
"""
from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data" / "alphamatting"
log = logging.getLogger("bench.student")


def _backgrounds() -> list[np.ndarray]:
    from skimage import data as skd

    out = []
    for name in ("coffee", "chelsea", "rocket", "astronaut", "hubble_deep_field"):
        try:
            img = getattr(skd, name)()
        except Exception:  # a photo missing from this scikit-image build
            continue
        if img.ndim == 2:
            img = np.repeat(img[..., None], 3, axis=2)
        out.append(np.ascontiguousarray(img[..., :3]))
    if not out:
        raise SystemExit("no scikit-image photos available for backgrounds")
    return out


def make_clips(n_clips: int, frames: int, size: tuple[int, int], seed: int = 0):
    """Composite alphamatting foregrounds over panning backgrounds. Returns a list of dicts."""
    import cv2
    from pymatting import estimate_foreground_ml

    from mamakit.degrade import degrade_masks
    from mamakit.io import read_alpha, read_image

    W, H = size
    rng = np.random.default_rng(seed)
    names = sorted(p.name for p in (SHARED / "gt_training_lowres").glob("GT*.png"))
    if not names:
        raise SystemExit(f"no alphamatting images in {SHARED}: the bench needs ../shared/data")
    pick = [names[int(i)] for i in np.linspace(0, len(names) - 1, n_clips).round()]
    bgs = _backgrounds()
    clips = []
    for k, name in enumerate(pick):
        img = read_image(SHARED / "input_training_lowres" / name).astype(np.float64) / 255.0
        alpha = read_alpha(SHARED / "gt_training_lowres" / name).astype(np.float64)
        fg = estimate_foreground_ml(img, alpha)
        h0, w0 = alpha.shape
        s = min(0.85 * H / h0, 0.6 * W / w0)
        bg_src = bgs[k % len(bgs)]
        bg_big = cv2.resize(bg_src, (int(W * 1.4), int(H * 1.4)), interpolation=cv2.INTER_LINEAR).astype(np.float32)
        v = rng.uniform(-1, 1, 2) * np.array([0.02 * W, 0.01 * H])
        b0 = np.array([rng.uniform(0, 0.4 * W - 1), rng.uniform(0, 0.4 * H - 1)])
        bv = rng.uniform(-1, 1, 2) * 0.015 * W
        fr, al = [], []
        for t in range(frames):
            cx = W / 2 + v[0] * (t - frames / 2)
            cy = H / 2 + v[1] * (t - frames / 2)
            M = np.array([[s, 0, cx - s * w0 / 2], [0, s, cy - s * h0 / 2]], np.float64)
            a = cv2.warpAffine(alpha.astype(np.float32), M, (W, H), flags=cv2.INTER_LINEAR, borderValue=0)
            f = cv2.warpAffine(fg.astype(np.float32), M, (W, H), flags=cv2.INTER_LINEAR, borderValue=0)
            bx, by = np.clip(b0 + bv * t, 0, [0.4 * W - 1, 0.4 * H - 1]).astype(int)
            bg = bg_big[by:by + H, bx:bx + W] / 255.0
            a = np.clip(a, 0, 1)
            a = np.round(a * 255) / 255  # 8-bit GT, exact composite
            comp = a[..., None] * f + (1 - a[..., None]) * bg
            fr.append(np.clip(comp * 255 + 0.5, 0, 255).astype(np.uint8))
            al.append(a.astype(np.float32))
        alpha_seq = np.stack(al)
        masks, ops = degrade_masks(alpha_seq, np.random.default_rng([seed, k]), return_ops=True)
        clips.append({"name": name, "frames": np.stack(fr), "alpha": alpha_seq, "masks": masks.astype(np.float32),
                      "ops": ops})
    return clips


def make_synthetic_clips(n_clips: int, frames: int, size: tuple[int, int], seed: int = 910000):
    """Held-out *synthetic* clips (``mamakit.synth``, seeds ``seed``.. — far from the training seeds)
    with masks degraded from their GT alpha exactly as :func:`make_clips` degrades the
    alphamatting ones: the set for choosing between candidates (ratios, runs) so that the
    alphamatting clips stay evaluation-only."""
    from mamakit.degrade import degrade_masks
    from mamakit.synth import make_clip

    clips = []
    for k in range(n_clips):
        c = make_clip(seed + k, frames, size)
        alpha = np.asarray(c.alpha, np.float32)
        masks, ops = degrade_masks(alpha, np.random.default_rng([seed, k]), return_ops=True)
        clips.append({"name": f"synth-{seed + k}", "frames": np.asarray(c.frames), "alpha": alpha,
                      "masks": masks.astype(np.float32), "ops": ops})
    return clips


def run_student(model, frames: np.ndarray, masks: np.ndarray, first_frame_only: bool = False) -> np.ndarray:
    """The student streamed over a clip as the runtime runs it (:func:`mamakit.student.stream`)."""
    from mamakit.student import stream

    return stream(model, frames, masks, first_frame_only=first_frame_only)


def score(pred: np.ndarray, gt: np.ndarray) -> dict[str, float]:
    from mamakit import metrics as M

    return {"mad": float(np.mean([M.mad(p, g) for p, g in zip(pred, gt)])),
            "grad": float(np.mean([M.grad(p, g) for p, g in zip(pred, gt)])),
            "dtssd": float(M.dtssd(list(pred), list(gt)))}


#: per-frame mask conditions of :func:`breakdown`, in table order
CONDITIONS = ("normal", "glitch", "after glitch", "box clip")


def frame_conditions(ops: dict, frames: int) -> list[str]:
    """What the coarse mask of each frame is (from ``degrade_masks(..., return_ops=True)``): a box clip,
    the frame with the clip's temporal corruption (occlude / empty / full / erode / dilate), the frame
    right after it (a streaming model must recover), or a normal per-frame degradation."""
    if ops.get("box"):
        return ["box clip"] * frames
    out = ["normal"] * frames
    if ops.get("temporal"):
        t = int(ops["temporal"][0])
        out[t] = "glitch"
        if t + 1 < frames:
            out[t + 1] = "after glitch"
    return out


def breakdown(preds: list[np.ndarray], clips: list[dict]) -> dict[str, dict[str, float]]:
    """Mean per-frame MAD (x1e3) and dtSSD (x1e2, frame vs the previous one; frame 0 excluded) of one
    method's predictions, split by :func:`frame_conditions`: where a method wins or loses."""
    from mamakit import metrics as M

    acc: dict[str, dict[str, list[float]]] = {c: {"mad": [], "dtssd": []} for c in CONDITIONS}
    for pred, c in zip(preds, clips):
        gt = c["alpha"]
        for t, cond in enumerate(frame_conditions(c["ops"], len(gt))):
            acc[cond]["mad"].append(M.mad(pred[t], gt[t]))
            if t:
                acc[cond]["dtssd"].append(M.dtssd_frame(pred[t], pred[t - 1], gt[t], gt[t - 1]))
    return {c: {"frames": len(v["mad"]), "mad": float(np.mean(v["mad"])) if v["mad"] else None,
                "dtssd": float(np.mean(v["dtssd"])) if v["dtssd"] else None} for c, v in acc.items()}


#: pixel regions of :func:`region_breakdown`, in table order
REGIONS = ("soft", "edge", "far")


def gt_regions(gt: np.ndarray, band: int = 5) -> dict[str, np.ndarray]:
    """Boolean masks of one GT alpha: ``soft`` (0.02 < alpha < 0.98: hair, blur, transparency), ``edge``
    (opaque or empty pixels within ``band`` px of the binarised GT's boundary) and ``far`` (the rest:
    interiors and background, where a mistake is a hole or a spill rather than a misplaced edge)."""
    import cv2

    soft = (gt > 0.02) & (gt < 0.98)
    hard = (gt > 0.5).astype(np.uint8)
    k = np.ones((2 * band + 1, 2 * band + 1), np.uint8)
    edge = (cv2.dilate(hard, k) != cv2.erode(hard, k)) & ~soft
    return {"soft": soft, "edge": edge, "far": ~soft & ~edge}


def region_breakdown(preds: list[np.ndarray], clips: list[dict]) -> dict[str, dict[str, float]]:
    """On the normal frames (after frame 0): each region's share of the per-frame MAD (x1e3, the parts
    add up to the frame's MAD) and of the squared dtSSD (x1e4, the parts add up to dtSSD**2) — whether a
    method loses on edges, on soft detail, or on holes and spill away from the edges."""
    acc = {r: {"mad": [], "dtssd2": []} for r in REGIONS}
    for pred, c in zip(preds, clips):
        gt = c["alpha"]
        for t, cond in enumerate(frame_conditions(c["ops"], len(gt))):
            if cond != "normal" or t == 0:
                continue
            err = pred[t].astype(np.float64) - gt[t]
            d = (pred[t].astype(np.float64) - pred[t - 1]) - (gt[t].astype(np.float64) - gt[t - 1])
            for r, m in gt_regions(gt[t]).items():
                acc[r]["mad"].append(float(np.abs(err[m]).sum()) / err.size * 1e3)
                acc[r]["dtssd2"].append(float((d[m] ** 2).sum()) / d.size * 1e4)
    return {r: {k: (float(np.mean(v)) if v else None) for k, v in a.items()} for r, a in acc.items()}


def _num(x: float | None) -> str:
    return "-" if x is None else f"{x:.2f}"  # None: no such frames (dtSSD: only frame 0)


def time_per_frame(fn, reps: int) -> float:
    """Median seconds per call over ``reps`` calls after a warm-up: a short measurement, so robust to
    a neighbour's burst on this shared machine (the teacher's figure is the mean over every frame of
    the minutes-long quality run)."""
    fn()  # warm-up
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return float(np.median(times))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--checkpoint", help="student .ckpt or save_pretrained folder (default: random-weight small)")
    ap.add_argument("--bundle", default=str(Path(__file__).resolve().parents[1] / "runtime" / "bundles" / "default"),
                    help="also time this exported bundle in ONNX Runtime (default: the shipped default bundle)")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", dest="student_set",
                    help="a deployment setting of the student, as `mamakit export onnx --set` (e.g. refiner_smooth=1)")
    ap.add_argument("--json", help="write the numbers here")
    ap.add_argument("--quick", action="store_true", help="2 clips x 3 frames at 640x360 (smoke run)")
    ap.add_argument("--clips", type=int, help="number of clips (default 6, quick 2)")
    ap.add_argument("--frames", type=int, help="frames per clip (default 6, quick 3)")
    ap.add_argument("--size", default=None, help="WxH of the quality clips (default 1280x720, quick 640x360)")
    ap.add_argument("--native-ratio", action="store_true",
                    help="keep the checkpoint's downsample ratio at clip sizes other than 1280x720 (default: scale it "
                         "so the trunk matches the one at 1280x720, as the runtime does by processing at that size)")
    ap.add_argument("--synthetic", action="store_true",
                    help="held-out synthetic clips (mamakit.synth seeds 910000..) instead of the alphamatting "
                         "foregrounds: the set to choose on (the alphamatting clips stay evaluation-only)")
    ap.add_argument("--threads", type=int, default=1, help="torch threads for the student (default 1: fastest on a busy 2-core box)")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")

    import torch

    from mamakit.student import load_student
    from mamakit.student.models import StudentConfig, StudentNet, count_flops, count_parameters
    from mamakit.teacher import build_teacher

    threads = args.threads or torch.get_num_threads()
    torch.set_num_threads(threads)
    n_clips = args.clips or (2 if args.quick else 6)
    n_frames = args.frames or (3 if args.quick else 6)
    W, H = map(int, (args.size or ("640x360" if args.quick else "1280x720")).lower().split("x"))
    if args.checkpoint:
        model = model_720 = load_student(args.checkpoint)
        which = str(args.checkpoint)
        if args.student_set:
            from mamakit.export.student import apply_student_settings

            apply_student_settings(model, args.student_set)
            which += " (" + ", ".join(args.student_set) + ")"
        if (W, H) != (1280, 720) and not args.native_ratio:
            # as deployed: the runtime feeds every frame at the bundle's processing size (1280x720),
            # so the trunk is ratio x 720 pixels tall whatever the clip size — keep that trunk here
            import copy

            r = min(1.0, model.config.downsample_ratio * 720.0 / H)
            model = copy.deepcopy(model).reconfigure(downsample_ratio=r).eval()
            which += f" (ratio {r:g} at {W}x{H}: the trunk it has at 1280x720)"
    else:
        torch.manual_seed(0)
        model = model_720 = StudentNet(StudentConfig.preset("small")).eval()
        which = "random-weight small (no --checkpoint)"
    teacher = build_teacher("closed-form")

    log.info("building %d clips x %d frames at %dx%d ...", n_clips, n_frames, W, H)
    clips = (make_synthetic_clips if args.synthetic else make_clips)(n_clips, n_frames, (W, H))
    rows: dict[str, list[dict]] = {"mask": [], "teacher": [], "student": [], "student-ff": []}
    preds: dict[str, list[np.ndarray]] = {k: [] for k in rows}
    teacher_time = 0.0
    teacher_frames = 0
    for c in clips:
        t0 = time.perf_counter()
        preds["teacher"].append(teacher(c["frames"], c["masks"]).alpha)
        teacher_time += time.perf_counter() - t0
        teacher_frames += len(c["frames"])
        torch.set_num_threads(threads)  # the teacher may change torch's thread count
        preds["mask"].append(c["masks"])
        preds["student"].append(run_student(model, c["frames"], c["masks"]))
        preds["student-ff"].append(run_student(model, c["frames"], c["masks"], True))
        for k in rows:
            rows[k].append(score(preds[k][-1], c["alpha"]))
        log.info("  %s: mask %.1f teacher %.1f student %.1f (MAD)", c["name"], rows["mask"][-1]["mad"],
                 rows["teacher"][-1]["mad"], rows["student"][-1]["mad"])
    quality = {k: {m: float(np.mean([r[m] for r in v])) for m in ("mad", "grad", "dtssd")} for k, v in rows.items()}
    by_condition = {k: breakdown(preds[k], clips) for k in ("mask", "teacher", "student")}
    by_region = {k: region_breakdown(preds[k], clips) for k in ("mask", "teacher", "student")}

    # ---- speed at 1280x720 (same machine, same run)
    sw, sh = 1280, 720
    if (W, H) == (sw, sh):
        t_teacher = teacher_time / max(1, teacher_frames)  # every frame of the quality run (minutes: bursts average out)
        speed_clip = clips[0]
    else:
        speed_clip = (make_synthetic_clips(1, 2, (sw, sh)) if args.synthetic else make_clips(1, 2, (sw, sh), seed=1))[0]
        t0 = time.perf_counter()
        teacher(speed_clip["frames"], speed_clip["masks"])
        t_teacher = (time.perf_counter() - t0) / len(speed_clip["frames"])
    torch.set_num_threads(threads)
    src = torch.from_numpy(speed_clip["frames"][0]).permute(2, 0, 1)[None].float() / 255.0
    guide = torch.from_numpy(speed_clip["masks"][0])[None, None]
    state = model_720.initial_state(1, sh, sw)

    def step():
        with torch.no_grad():
            model_720(src, guide, *state)

    t_student = time_per_frame(step, 3 if args.quick else 10)
    t_bundle = None
    bundle = Path(args.bundle) if args.bundle else None
    t_graph = None
    if bundle is not None and (bundle / "bundle.json").is_file():
        # the deployed form: the bundle in the runtime's ONNX Runtime session, 1 thread like the teacher.
        # Timed: StudentSession.prepare + infer on two alternating frames = the frame's conversion to
        # the graph's input (and the stabiliser's look at it), the graph call and the carry of any
        # flow-carried state (optical flow and warp) - everything per frame but decoding; the graph
        # call alone is reported beside it.
        import onnxruntime as ort

        from mamakit.runtime.sessions import open_session

        session = open_session(bundle, provider="cpu", threads=1, spin=False)  # as `mamakit run` opens it
        pairs = list(zip(speed_clip["frames"][:2], speed_clip["masks"][:2]))
        slot = session.new_slot()
        turn = [0]

        def deployed():
            frame, mask = pairs[turn[0] % 2]
            session.infer(session.prepare(frame, mask, slot))
            turn[0] += 1

        t_bundle = time_per_frame(deployed, 5 if args.quick else 40)
        session.close()
        so = ort.SessionOptions()
        so.intra_op_num_threads, so.inter_op_num_threads = 1, 1
        sess = ort.InferenceSession(str(bundle / "main.onnx"), so, providers=["CPUExecutionProvider"])
        feed = {i.name: np.zeros([d if isinstance(d, int) else 1 for d in i.shape], np.float32)
                for i in sess.get_inputs()}
        feed["src"] = np.random.default_rng(0).random(feed["src"].shape, dtype=np.float32)
        t_graph = time_per_frame(lambda: sess.run(None, feed), 5 if args.quick else 40)
    result = {
        "checkpoint": which,
        "set": "synthetic (held-out seeds)" if args.synthetic else "alphamatting",
        "clips": [c["name"] for c in clips], "frames": n_frames, "size": [W, H],
        "quality": quality,
        "per_clip_mad": {k: {c["name"]: r["mad"] for c, r in zip(clips, v)} for k, v in rows.items()},
        "by_mask_condition": by_condition,
        "normal_frames_by_region": by_region,
        "speed_1280x720": {"teacher_s_per_frame": t_teacher, "student_s_per_frame": t_student,
                           "speedup": t_teacher / t_student, "student_threads": torch.get_num_threads(),
                           "bundle": str(bundle) if t_bundle else None,
                           "bundle_s_per_frame_ort_1thread": t_bundle,
                           "bundle_graph_only_s_per_frame_ort_1thread": t_graph,
                           "bundle_speedup": t_teacher / t_bundle if t_bundle else None},
        "student": {"params": count_parameters(model_720), "gflops_1280x720": count_flops(model_720, 720, 1280) / 1e9,
                    "flops_note": "FLOPs = 2 x MACs (torch FlopCounterMode)", "config": model_720.config.to_dict()},
    }
    q = quality
    ratios = {
        "student_mad_over_teacher": q["student"]["mad"] / max(1e-9, q["teacher"]["mad"]),
        "student_mad_below_mask": 1 - q["student"]["mad"] / max(1e-9, q["mask"]["mad"]),
        "student_dtssd_over_teacher": q["student"]["dtssd"] / max(1e-9, q["teacher"]["dtssd"]),
        "speedup": max(result["speed_1280x720"]["speedup"], result["speed_1280x720"]["bundle_speedup"] or 0),
    }
    result["ratios"] = ratios
    result["targets"] = {
        "mad_le_1.25x_teacher": ratios["student_mad_over_teacher"] <= 1.25,
        "mad_25pct_below_mask": ratios["student_mad_below_mask"] >= 0.25,
        "dtssd_le_teacher": ratios["student_dtssd_over_teacher"] <= 1.0,
        "speedup_ge_100x": ratios["speedup"] >= 100,
    }

    print(f"\n### Student vs CPU teacher ({which})\n")
    print(f"{n_clips} {'held-out synthetic clips' if args.synthetic else 'alphamatting foregrounds'} x {n_frames} frames at {W}x{H}, moving backgrounds, degraded masks\n")
    print("| method | MAD x1e3 | Grad /1e3 | dtSSD x1e2 |")
    print("|---|---:|---:|---:|")
    for k, v in quality.items():
        print(f"| {k} | {v['mad']:.2f} | {v['grad']:.2f} | {v['dtssd']:.2f} |")
    print("\nBy mask condition (mean per frame; dtSSD of a frame vs the previous one):\n")
    print("| frames | n | " + " | ".join(f"{k} MAD" for k in by_condition) + " | "
          + " | ".join(f"{k} dtSSD" for k in by_condition) + " |")
    print("|---|---:|" + "---:|" * (2 * len(by_condition)))
    for cond in CONDITIONS:
        n = by_condition["mask"][cond]["frames"]
        if n:
            print(f"| {cond} | {n} | " + " | ".join(_num(v[cond]["mad"]) for v in by_condition.values()) + " | "
                  + " | ".join(_num(v[cond]["dtssd"]) for v in by_condition.values()) + " |")
    print("\nNormal frames by region (soft: 0.02 < GT < 0.98; edge: within 5 px of the GT boundary; far: the rest) -"
          " each region's part of the MAD and of dtSSD squared:\n")
    print("| region | " + " | ".join(f"{k} MAD part" for k in by_region) + " | "
          + " | ".join(f"{k} dtSSD² part" for k in by_region) + " |")
    print("|---|" + "---:|" * (2 * len(by_region)))
    for reg in REGIONS:
        print(f"| {reg} | " + " | ".join(_num(v[reg]["mad"]) for v in by_region.values()) + " | "
              + " | ".join(_num(v[reg]["dtssd2"]) for v in by_region.values()) + " |")
    sp = result["speed_1280x720"]
    print(f"\nPer frame at 1280x720: teacher {sp['teacher_s_per_frame'] * 1e3:.0f} ms, student "
          f"{sp['student_s_per_frame'] * 1e3:.1f} ms (PyTorch, {sp['student_threads']} threads) -> "
          f"{sp['speedup']:.0f}x faster")
    if sp["bundle_s_per_frame_ort_1thread"]:
        print(f"Deployed bundle {sp['bundle']} (ONNX Runtime, 1 thread): "
              f"{sp['bundle_s_per_frame_ort_1thread'] * 1e3:.1f} ms per frame with the runtime's input conversion and state carry "
              f"(graph alone {sp['bundle_graph_only_s_per_frame_ort_1thread'] * 1e3:.1f} ms) -> "
              f"{sp['bundle_speedup']:.0f}x faster than the teacher")
    st = result["student"]
    print(f"Student: {st['params'] / 1e6:.2f} M params, {st['gflops_1280x720']:.2f} GFLOPs per 1280x720 frame "
          "(FLOPs = 2 x MACs)\n")
    print("| target | value | met |")
    print("|---|---:|:---:|")
    print(f"| student MAD <= 1.25 x teacher | {ratios['student_mad_over_teacher']:.2f} x | "
          f"{'yes' if result['targets']['mad_le_1.25x_teacher'] else 'no'} |")
    print(f"| student MAD >= 25 % below mask | {ratios['student_mad_below_mask'] * 100:.1f} % | "
          f"{'yes' if result['targets']['mad_25pct_below_mask'] else 'no'} |")
    print(f"| student dtSSD <= teacher | {ratios['student_dtssd_over_teacher']:.2f} x | "
          f"{'yes' if result['targets']['dtssd_le_teacher'] else 'no'} |")
    print(f"| student >= 100 x faster | {ratios['speedup']:.0f} x | "
          f"{'yes' if result['targets']['speedup_ge_100x'] else 'no'} |")
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
