#!/usr/bin/env python3
"""Runtime benchmark: model-only FPS, per-stage times, end-to-end `mamakit run` FPS, RVM side by side, soak.

    python bench/runtime.py [--bundle B] [--bundle-int8 B8] [--rvm RVM.onnx] [--threads 2]
                            [--sizes 512x288,1280x720,1920x1080] [--frames 60] [--soak 10000]
                            [--json out.json] [--quick]

In one run, on this machine, with the same thread count everywhere:

1. **model-only**: the bundle's ``main`` graph in plain ONNX Runtime at its processing size
   (fp32 and int8), and RVM (``../shared/models/rvm_mobilenetv3_fp32.onnx``) at each size with
   its recommended ``downsample_ratio``;
2. **end-to-end**: the whole ``mamakit run --source in.mp4 --masks first.png --composite out.mp4``
   command timed from process start to exit (start-up included), on generated mp4s at each size;
   the same command's per-stage times (``--stats``) and the check that the pipeline's frame time
   is at most 1.1 × the sum of its stage times;
3. RVM **through our runtime**, via an adapter bundle built here in a temp dir (guide input added
   and ignored, ``downsample_ratio`` baked in, states sized) — never committed;
4. **soak**: ``--soak N`` frames from a generated stream through the threaded pipeline with
   compositing: resident memory growth after warm-up (< 5 %) and NaN frames (0).

Without ``--bundle``, the default bundle is used when installed, else a random-weight student
(the shipped architecture, speed only) is exported here (fp32 + static int8 calibrated on a
synthetic set). Prints markdown tables and writes JSON.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_RVM = ROOT.parent / "shared" / "models" / "rvm_mobilenetv3_fp32.onnx"
DEFAULT_BUNDLE = ROOT / "runtime" / "bundles" / "default"


def parse_sizes(text: str) -> list[tuple[int, int]]:
    out = []
    for part in text.split(","):
        w, h = part.lower().split("x")
        out.append((int(w), int(h)))
    return out


def rvm_ratio(w: int, h: int) -> float:
    """RVM's recommended downsample ratio: keep the downsampled long side around 256-512."""
    return {(512, 288): 1.0, (1280, 720): 0.375, (1920, 1080): 0.25}.get((w, h), min(1.0, 480.0 / max(w, h)))


def rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


# -------------------------------------------------------------------------------------- inputs
def make_clip(path: Path, size: tuple[int, int], frames: int, fps: int = 30) -> Path:
    """A moving textured subject on a textured background + its first-frame mask (PNG)."""
    import cv2

    from mamakit.io import VideoWriter

    w, h = size
    rng = np.random.default_rng(0)
    bg = cv2.resize(rng.integers(0, 256, (h // 8 + 1, w // 8 + 1, 3), dtype=np.uint8), (w, h))
    tex = cv2.resize(rng.integers(60, 256, (h // 16 + 1, w // 16 + 1, 3), dtype=np.uint8), (w, h))
    yy, xx = np.mgrid[0:h, 0:w]
    with VideoWriter(path, fps, size) as vw:
        for i in range(frames):
            cx, cy = w * (0.35 + 0.3 * np.sin(i / 15)), h * 0.55
            m = ((((xx - cx) / (w * 0.15)) ** 2 + ((yy - cy) / (h * 0.35)) ** 2) <= 1).astype(np.float32)
            m = cv2.GaussianBlur(m, (0, 0), 2)
            f = (bg * (1 - m[..., None]) + tex * m[..., None]).astype(np.uint8)
            vw.write(f)
            if i == 0:
                cv2.imwrite(str(path.with_suffix(".png")), (m * 255).astype(np.uint8))
    return path


def build_student_bundles(work: Path, threads: int) -> tuple[Path, Path | None]:
    """Random-weight default-architecture student -> fp32 and int8 bundles (speed only)."""
    import torch

    from mamakit.student.models import StudentConfig, StudentNet

    torch.manual_seed(0)
    ckpt = work / "student_ckpt"
    StudentNet(StudentConfig.preset("small")).save_pretrained(ckpt)
    py = [sys.executable, "-m", "mamakit"]
    subprocess.run(py + ["-q", "export", "onnx", "--checkpoint", str(ckpt), "--out", str(work / "b_fp32"),
                         "--parity-frames", "4", "--threads", str(threads)], check=True)
    subprocess.run(py + ["-q", "synth", "--out", str(work / "calib"), "--clips", "4", "--frames", "4",
                         "--size", "1280x720"], check=True)
    r = subprocess.run(py + ["-q", "export", "onnx", "--checkpoint", str(ckpt), "--out", str(work / "b_int8"),
                             "--precision", "int8", "--int8-scheme", "cpu", "--calib", str(work / "calib"),
                             "--calib-frames", "16", "--parity-frames", "4", "--threads", str(threads)])
    return work / "b_fp32", (work / "b_int8" if r.returncode == 0 else None)


def build_rvm_adapter(rvm: Path, out: Path, size: tuple[int, int], threads: int) -> Path:
    """RVM as a student-contract bundle: + ``guide`` input (unused), ratio baked in, states sized."""
    import onnx
    import onnxruntime as ort
    from onnx import TensorProto, helper, numpy_helper

    from mamakit.bundle import StateSpec, TensorSpec, new_manifest, write_manifest

    w, h = size
    ratio = rvm_ratio(w, h)
    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    s = ort.InferenceSession(str(rvm), so, providers=["CPUExecutionProvider"])
    z = np.zeros((1, 1, 1, 1), np.float32)
    res = s.run(None, {"src": np.zeros((1, 3, h, w), np.float32), "r1i": z, "r2i": z, "r3i": z, "r4i": z,
                       "downsample_ratio": np.array([ratio], np.float32)})
    shapes = {o.name: list(r.shape) for o, r in zip(s.get_outputs(), res)}
    m = onnx.load(str(rvm))
    g = m.graph
    keep = [i for i in g.input if i.name != "downsample_ratio"]
    del g.input[:]
    g.input.extend(keep)
    g.initializer.append(numpy_helper.from_array(np.array([ratio], np.float32), "downsample_ratio"))
    g.input.append(helper.make_tensor_value_info("guide", TensorProto.FLOAT, [1, 1, h, w]))
    out.mkdir(parents=True, exist_ok=True)
    onnx.save(m, str(out / "main.onnx"))
    man = new_manifest("student", processing_size=(w, h), precision="fp32", guide_optional=True,
                       note="RVM adapter built by bench/runtime.py for speed comparison only (GPL-3.0 weights)")
    man["graphs"]["main"] = {
        "file": "main.onnx",
        "inputs": [TensorSpec("src", [1, 3, h, w]).to_dict(), TensorSpec("guide", [1, 1, h, w]).to_dict()]
        + [TensorSpec(f"r{k}i", shapes[f"r{k}o"]).to_dict() for k in range(1, 5)],
        "outputs": [TensorSpec("pha", shapes["pha"]).to_dict(), TensorSpec("fgr", shapes["fgr"]).to_dict()]
        + [TensorSpec(f"r{k}o", shapes[f"r{k}o"]).to_dict() for k in range(1, 5)],
        "state": [StateSpec(f"r{k}i", f"r{k}o", shapes[f"r{k}o"]).to_dict() for k in range(1, 5)],
    }
    write_manifest(out, man)
    return out


# -------------------------------------------------------------------------------------- measures
def ort_session(path: Path, threads: int):
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    return ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])


def _time(fn, frames: int, warmup: int = 3) -> float:
    for _ in range(warmup):
        fn()
    t = time.perf_counter()
    for _ in range(frames):
        fn()
    return frames / (time.perf_counter() - t)


def model_only_bundle(bundle: Path, threads: int, frames: int) -> dict:
    from mamakit.bundle import load_bundle

    b = load_bundle(bundle)
    s = ort_session(b.graph_path("main"), threads)
    w, h = b.processing_size
    feeds = {"src": np.random.default_rng(0).random((1, 3, h, w), np.float32),
             "guide": np.zeros((1, 1, h, w), np.float32)}
    for st in b.state("main"):
        feeds[st.input] = np.zeros([d if isinstance(d, int) else 1 for d in st.shape], np.float32)
    names = [st.output for st in b.state("main")]

    def step():
        outs = s.run(None, feeds)
        res = dict(zip([o.name for o in s.get_outputs()], outs))
        for st in b.state("main"):
            feeds[st.input] = res[st.output]

    return {"size": f"{w}x{h}", "fps": _time(step, frames), "precision": b.precision, "states": len(names)}


def model_only_rvm(rvm: Path, size, threads: int, frames: int) -> dict:
    s = ort_session(rvm, threads)
    w, h = size
    z = np.zeros((1, 1, 1, 1), np.float32)
    feeds = {"src": np.random.default_rng(0).random((1, 3, h, w), np.float32), "r1i": z, "r2i": z, "r3i": z,
             "r4i": z, "downsample_ratio": np.array([rvm_ratio(w, h)], np.float32)}
    names = [o.name for o in s.get_outputs()]

    def step():
        res = dict(zip(names, s.run(None, feeds)))
        for k in range(1, 5):
            feeds[f"r{k}i"] = res[f"r{k}o"]

    return {"size": f"{w}x{h}", "ratio": rvm_ratio(w, h), "fps": _time(step, frames)}


def end_to_end(bundle: Path, clip: Path, frames: int, threads: int, work: Path, tag: str) -> dict:
    out = work / f"out_{tag}.mp4"
    stats = work / f"stats_{tag}.json"
    cmd = [sys.executable, "-m", "mamakit", "-q", "run", "--bundle", str(bundle), "--source", str(clip),
           "--masks", str(clip.with_suffix(".png")), "--composite", str(out), "--threads", str(threads),
           "--stats", str(stats)]
    t = time.perf_counter()
    p = subprocess.run(cmd, capture_output=True, text=True)
    wall = time.perf_counter() - t
    if p.returncode != 0:
        return {"error": p.stderr.strip().splitlines()[-1] if p.stderr.strip() else f"exit {p.returncode}"}
    st = json.loads(stats.read_text())
    return {"e2e_fps": frames / wall, "command_s": wall, "pipeline_fps": st["fps"], "frame_ms": st["frame_ms"],
            "stage_ms": st["stage_ms"], "stage_sum_ms": st["stage_sum_ms"], "latency_ms": st["latency_ms"],
            "startup_s": st.get("startup_s"), "frames": st["frames"],
            "frame_le_1.1x_stage_sum": st["frame_ms"] <= 1.1 * st["stage_sum_ms"]}


def soak(bundle: Path, n: int, threads: int, size=(512, 288)) -> dict:
    import cv2

    from mamakit.runtime import Matter
    from mamakit.runtime.composite import Compositor, parse_background

    m = Matter.load(bundle, threads=threads, announce=False)
    comp = Compositor(parse_background("blur"))
    w, h = size
    rng = np.random.default_rng(0)
    base = cv2.resize(rng.integers(0, 256, (h // 8, w // 8, 3), dtype=np.uint8), (w, h))
    yy, xx = np.mgrid[0:h, 0:w]

    def frames():
        for i in range(n):
            f = base.copy()
            cx = int(w * (0.5 + 0.3 * np.sin(i / 20)))
            cv2.circle(f, (cx, h // 2), h // 4, (200, 170, 150), -1)
            if i % 997 == 500:  # an occasional hard cut
                f = 255 - f
            yield f

    warm = max(50, n // 20)
    samples, nan = [], 0
    pipe = m.pipeline(frames(), None, live=False,
                      post=lambda r: setattr(r, "composite", comp(r.frame, r.alpha, r.index)))
    t = time.perf_counter()
    rss_warm = None
    for r in pipe:
        if not np.isfinite(r.alpha).all():
            nan += 1
        if r.index == warm:
            rss_warm = rss_mb()
        if r.index % 500 == 0:
            samples.append((r.index, round(rss_mb(), 1)))
    secs = time.perf_counter() - t
    rss_end = rss_mb()
    growth = (rss_end - rss_warm) / rss_warm * 100 if rss_warm else float("nan")
    return {"frames": n, "size": f"{w}x{h}", "seconds": round(secs, 1), "fps": round(n / secs, 2),
            "rss_warm_mb": round(rss_warm or 0, 1), "rss_end_mb": round(rss_end, 1), "rss_growth_pct": round(growth, 2),
            "nan_frames": nan, "rss_samples": samples, "resets": pipe.stats.resets,
            "passed": growth < 5.0 and nan == 0}


# -------------------------------------------------------------------------------------- main
def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bundle", help="fp32 student bundle (default: the shipped default bundle, else one exported here)")
    ap.add_argument("--bundle-int8", help="int8 student bundle")
    ap.add_argument("--rvm", default=str(DEFAULT_RVM), help="RVM MobileNetV3 fp32 ONNX")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--sizes", default="512x288,1280x720,1920x1080")
    ap.add_argument("--frames", type=int, default=60, help="frames per end-to-end clip / model-only loop")
    ap.add_argument("--soak", type=int, default=10000, help="soak frames (0 = skip)")
    ap.add_argument("--soak-bundle", help="bundle for the soak (default: the int8 bundle, else fp32)")
    ap.add_argument("--skip-e2e", action="store_true", help="only model-only and soak")
    ap.add_argument("--json", default="runtime_bench.json")
    ap.add_argument("--quick", action="store_true", help="300-frame soak (the 60-frame clips stay: shorter clips "
                                                        "would mostly time the process start-up)")
    args = ap.parse_args()
    if args.quick:
        args.soak = min(args.soak, 300)
    sizes = parse_sizes(args.sizes)
    work = Path(tempfile.mkdtemp(prefix="mamakit-bench-runtime-"))
    res: dict = {"threads": args.threads, "frames": args.frames, "sizes": [f"{w}x{h}" for w, h in sizes]}
    fp32 = Path(args.bundle) if args.bundle else (DEFAULT_BUNDLE if (DEFAULT_BUNDLE / "bundle.json").exists() else None)
    int8 = Path(args.bundle_int8) if args.bundle_int8 else None
    if fp32 is None:
        print("(no --bundle and no default bundle: exporting a random-weight student here, speed only)", file=sys.stderr)
        fp32, int8 = build_student_bundles(work, args.threads)
        res["bundle_note"] = "random-weight 'small' student exported at bench time (speed only)"
    bundles = {"fp32": fp32, **({"int8": int8} if int8 else {})}
    res["bundles"] = {k: str(v) for k, v in bundles.items()}
    rvm = Path(args.rvm)

    # 1. model-only (ours at the processing size; RVM per size, measured right before that size's
    #    end-to-end runs so that the ratio compares numbers taken under the same machine load)
    mo = {k: model_only_bundle(b, args.threads, args.frames) for k, b in bundles.items()}
    mo_rvm: dict = {}
    e2e: dict = {}
    for w, h in sizes:
        key = f"{w}x{h}"
        if rvm.exists():
            mo_rvm[key] = model_only_rvm(rvm, (w, h), args.threads, args.frames)
        if args.skip_e2e:
            continue
        clip = make_clip(work / f"in_{key}.mp4", (w, h), args.frames)
        row = {name: end_to_end(b, clip, args.frames, args.threads, work, f"{name}_{key}") for name, b in bundles.items()}
        if rvm.exists():
            adapter = build_rvm_adapter(rvm, work / f"rvm_adapter_{key}", (w, h), args.threads)
            row["rvm_adapter"] = end_to_end(adapter, clip, args.frames, args.threads, work, f"rvm_{key}")
        e2e[key] = row
    res["model_only"] = {"ours": mo, "rvm": mo_rvm}
    res["end_to_end"] = e2e
    # ratios at each size: our e2e FPS / RVM model-only FPS
    ratios = {}
    for key, row in e2e.items():
        if key in mo_rvm:
            ratios[key] = {name: round(r["e2e_fps"] / mo_rvm[key]["fps"], 3) for name, r in row.items() if "e2e_fps" in r}
    res["ratio_e2e_over_rvm_model_only"] = ratios
    if "1280x720" in ratios:
        best = max(v for k, v in ratios["1280x720"].items() if k != "rvm_adapter")
        res["target_720p_e2e_ge_1.5x_rvm_model_only"] = {"best_ratio": best, "passed": best >= 1.5}
    # 4. soak
    if args.soak:
        sb = Path(args.soak_bundle) if args.soak_bundle else (bundles.get("int8") or bundles["fp32"])
        res["soak"] = soak(sb, args.soak, args.threads)
        res["soak"]["bundle"] = str(sb)

    # ---- tables
    print(f"### Runtime (threads={args.threads}, {args.frames} frames per clip; CPU: {os.cpu_count()} cores)\n")
    print("Model only (plain ONNX Runtime, CPUExecutionProvider):\n")
    print("| model | size | FPS |\n|---|---|---|")
    for k, r in mo.items():
        print(f"| ours {k} (bundle) | {r['size']} (processing) | {r['fps']:.1f} |")
    for k, r in mo_rvm.items():
        print(f"| RVM mbv3 fp32 (ratio {r['ratio']}) | {k} | {r['fps']:.1f} |")
    print("\nEnd to end: `mamakit run --source in.mp4 --masks first.png --composite out.mp4` timed as a command "
          "(start-up included):\n")
    print("| source | model | e2e FPS | ÷ RVM model-only | pipeline FPS | frame ms | stage sum ms | ≤1.1× | "
          "decode/pre/infer/post/sink ms | latency p50/p95/p99 ms |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for key, row in e2e.items():
        for name, r in row.items():
            if "error" in r:
                print(f"| {key} | {name} | error: {r['error']} | | | | | | | |")
                continue
            st, lat = r["stage_ms"], r["latency_ms"]
            ratio = ratios.get(key, {}).get(name)
            print(f"| {key} | {name} | {r['e2e_fps']:.2f} | {ratio if ratio is not None else '-'} | "
                  f"{r['pipeline_fps']:.2f} | {r['frame_ms']:.1f} | {r['stage_sum_ms']:.1f} | "
                  f"{'yes' if r['frame_le_1.1x_stage_sum'] else 'NO'} | "
                  f"{st['decode']:.1f}/{st['pre']:.1f}/{st['infer']:.1f}/{st['post']:.1f}/{st['sink']:.1f} | "
                  f"{lat['p50']:.0f}/{lat['p95']:.0f}/{lat['p99']:.0f} |")
    if "target_720p_e2e_ge_1.5x_rvm_model_only" in res:
        t = res["target_720p_e2e_ge_1.5x_rvm_model_only"]
        print(f"\nTarget 1280x720 e2e ≥ 1.5× RVM model-only: best ratio {t['best_ratio']:.2f} → "
              f"{'PASS' if t['passed'] else 'FAIL'}")
    if "soak" in res:
        s = res["soak"]
        print(f"\nSoak: {s['frames']} frames {s['size']} in {s['seconds']} s ({s['fps']} FPS): RSS {s['rss_warm_mb']} → "
              f"{s['rss_end_mb']} MB after warm-up ({s['rss_growth_pct']:+.2f} %), NaN frames {s['nan_frames']} → "
              f"{'PASS' if s['passed'] else 'FAIL'}")
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps(res, indent=2, default=float) + "\n")
    print(f"\n(JSON: {args.json}; inputs and adapters in {work})", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
