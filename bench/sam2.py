#!/usr/bin/env python3
"""SAM2-Matte benchmark: per-graph ms/frame on this CPU, the whole tracking loop's FPS, and FPS on
paper for Jetson Orin / an RTX card from the graphs' counted FLOPs.

    python bench/sam2.py [--checkpoint CKPT_OR_FOLDER] [--image-size 512] [--frames 30]
                         [--threads 2] [--sam21 tiny] [--json out.json] [--quick]

1. Exports the checkpoint (default: the committed tiny model, tests/fixtures/sam2_matte_tiny) at
   ``--image-size`` into a temp bundle (with the exporter's own parity check), and with
   ``--sam21 SIZE`` also the official SAM2.1 architecture of that size (random weights: speed only).
2. Runs the runtime session (ONNX Runtime, CPU) over a synthetic clip prompted on frame 0, timing
   every graph call (encoder / memory attention + decoder / memory encoder; the prompt graph runs
   once) and the whole loop (resize in, four graphs, alpha out).
3. Counts FLOPs per graph from the ONNX files (2 x MACs of Conv, ConvTranspose, MatMul and Gemm,
   shapes from ONNX shape inference) and turns them into FPS on paper:
   ``fps = efficiency x peak_fp16_flops / flops_per_frame`` with the peaks below and an assumed
   efficiency of 25 % (small batch-1 convnets/transformers reach 15-40 % of peak in TensorRT).
Prints markdown tables and writes JSON. ``--quick``: image size 256, 8 frames, no SAM2.1.
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

# this file is named like the `sam2` package: keep its folder off the import path
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]

ROOT = Path(__file__).resolve().parents[1]
FIXTURE = ROOT / "tests" / "fixtures" / "sam2_matte_tiny"
#: dense FP16 tensor-core peaks (vendor data sheets), FLOP/s
DEVICES = {
    "Jetson AGX Orin 64GB (GPU, fp16 dense)": 42.5e12,
    "Jetson Orin Nano 8GB (GPU, fp16 dense)": 10.0e12,
    "RTX 4090 (fp16 dense, fp32 accumulate)": 165.2e12,
    "RTX 3090 (fp16 dense, fp32 accumulate)": 71.0e12,
}
EFFICIENCY = 0.25


def count_flops(path: Path) -> float:
    """2 x MACs of Conv / ConvTranspose / MatMul / Gemm in an ONNX graph (static shapes)."""
    import onnx
    from onnx import numpy_helper, shape_inference

    m = shape_inference.infer_shapes(onnx.load(str(path)))
    g = m.graph
    shapes = {}
    for v in list(g.value_info) + list(g.input) + list(g.output):
        dims = [d.dim_value for d in v.type.tensor_type.shape.dim]
        shapes[v.name] = dims
    for init in g.initializer:
        shapes[init.name] = list(numpy_helper.to_array(init).shape)
    total = 0.0
    for node in g.node:
        try:
            if node.op_type in ("Conv", "ConvTranspose"):
                w = shapes[node.input[1]]
                out = shapes[node.output[0]]
                x = shapes[node.input[0]]
                if node.op_type == "Conv":
                    total += 2.0 * np.prod(out) * np.prod(w[1:])
                else:  # each input pixel scatters Cout/groups x k x k
                    total += 2.0 * np.prod(x) * np.prod(w[1:])
            elif node.op_type == "MatMul":
                a, b = shapes[node.input[0]], shapes[node.input[1]]
                out = shapes[node.output[0]]
                total += 2.0 * np.prod(out) * a[-1]
            elif node.op_type == "Gemm":
                a = shapes[node.input[0]]
                out = shapes[node.output[0]]
                total += 2.0 * np.prod(out) * a[-1]
        except (KeyError, IndexError):
            continue
    return float(total)


def bench_bundle(bundle: Path, frames: int, threads: int, seed: int = 4_000_001) -> dict:
    from mamakit.runtime.sessions import open_session
    from mamakit.student.sam2matte.data import synthetic_clip

    sess = open_session(bundle, provider="cpu", threads=threads)
    size = sess.size
    clip, alpha = synthetic_clip(seed, frames, size)
    times: dict[str, list[float]] = {g: [] for g in ("encoder", "prompt", "track", "memory")}
    run = sess._run

    def timed(graph, feeds):
        t = time.perf_counter()
        out = run(graph, feeds)
        times[graph].append(time.perf_counter() - t)
        return out

    sess._run = timed
    ys, xs = np.nonzero(alpha[0] > 0.5)
    sess.set_prompt(box=(xs.min(), ys.min(), xs.max(), ys.max()))
    sess.step(clip[0])  # the prompted frame (+ warm-up)
    loop = []
    for f in clip[1:]:
        t = time.perf_counter()
        sess.step(f)
        loop.append(time.perf_counter() - t)
    ms = {g: 1000 * float(np.median(v)) for g, v in times.items() if v}
    flops = {g: count_flops(sess.bundle.graph_path(g)) for g in times}
    per_frame = flops["encoder"] + flops["track"] + flops["memory"]
    return {"image_size": size, "frames": frames, "threads": threads, "ms": ms,
            "loop_ms": 1000 * float(np.median(loop)), "loop_fps": 1.0 / float(np.median(loop)),
            "gflops": {g: f / 1e9 for g, f in flops.items()}, "gflops_per_tracked_frame": per_frame / 1e9,
            "paper_fps": {d: EFFICIENCY * peak / per_frame for d, peak in DEVICES.items()}}


def export(checkpoint, out: Path, image_size: int) -> Path:
    from mamakit.export.sam2 import export_sam2_matte

    export_sam2_matte(checkpoint, out, image_size=image_size, opset=17)
    return out


def sam21_checkpoint(size: str, image_size: int, folder: Path) -> Path:
    """The official SAM2.1 architecture with random weights (speed only) as a save_pretrained folder."""
    import dataclasses

    import torch

    from mamakit.student.sam2matte import Sam2Matte, sam21_config

    torch.manual_seed(0)
    cfg = dataclasses.replace(sam21_config(size, image_size), refiner=True)
    model = Sam2Matte(cfg)
    with torch.no_grad():  # open the object gate so the loop runs its normal path
        model.sam.sam_mask_decoder.pred_obj_score_head.layers[-1].bias.fill_(5.0)
    model.save_pretrained(folder)
    return folder


def table(rows: list[dict]) -> str:
    lines = ["| model | size | encoder ms | track (mem-attn + decoder) ms | memory enc ms | prompt ms | "
             "loop ms | loop FPS | GFLOPs/frame |", "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        ms = r["ms"]
        lines.append(f"| {r['name']} | {r['image_size']} | {ms['encoder']:.1f} | {ms['track']:.1f} | {ms['memory']:.1f} | "
                     f"{ms['prompt']:.1f} | {r['loop_ms']:.1f} | {r['loop_fps']:.1f} | {r['gflops_per_tracked_frame']:.2f} |")
    lines += ["", f"FPS on paper (tracked frames; {EFFICIENCY:.0%} of the fp16 dense peak):", "",
              "| model | " + " | ".join(DEVICES) + " |", "|---|" + "---|" * len(DEVICES)]
    for r in rows:
        lines.append(f"| {r['name']} @{r['image_size']} | " + " | ".join(f"{v:.0f}" for v in r["paper_fps"].values()) + " |")
    return "\n".join(lines)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--checkpoint", default=str(FIXTURE))
    p.add_argument("--image-size", type=int, default=512)
    p.add_argument("--frames", type=int, default=30)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--sam21", default=None, help="also bench the official SAM2.1 architecture: tiny|small|base_plus|large")
    p.add_argument("--json", default="bench/results/sam2.json")
    p.add_argument("--quick", action="store_true")
    a = p.parse_args(argv)
    if a.quick:
        a.image_size, a.frames, a.sam21 = 256, 8, None
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        b = export(a.checkpoint, tmp / "tiny", a.image_size)
        rows.append({"name": "SAM2-Matte tiny", **bench_bundle(b, a.frames, a.threads)})
        if a.sam21:
            ck = sam21_checkpoint(a.sam21, a.image_size, tmp / "sam21ck")
            b = export(ck, tmp / "sam21", a.image_size)
            rows.append({"name": f"SAM2.1-{a.sam21} arch (random)", **bench_bundle(b, a.frames, a.threads)})
    print(table(rows))
    out = Path(a.json)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"rows": rows, "efficiency": EFFICIENCY, "device_peaks": DEVICES,
                               "cpu_threads": a.threads}, indent=2))
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
