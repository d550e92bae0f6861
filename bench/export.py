#!/usr/bin/env python3
"""Export benchmark: every precision of the student through ONNX Runtime CPU, RVM side by side.

    python bench/export.py [--checkpoint CKPT] [--sizes 512x288,1280x720] [--threads 2]
                           [--frames 30] [--rounds 30] [--rvm RVM.onnx] [--json export_bench.json] [--quick]

For each processing size, in one run, on this machine:

1. exports the student with ``mamakit.export.export_student`` to fp32, fp16, int8 static QDQ in both
   schemes (``trt``: symmetric int8, the default; ``cpu``: u8s8 for ONNX Runtime only) with the
   default conv selection (``spatial``: standard kxk convs only), ``cpu`` with the whole trunk int8
   (``--int8-convs trunk``: every op but the refiner), plus ``trt`` with every Conv
   quantised (``--int8-convs all``, the previous default, for comparison), each with its export-time
   parity report (``--frames`` frames of a ``mamakit.synth`` clip, state
   carried); int8 is calibrated on a synthetic dataset generated here (never on alphamatting);
2. builds int8 **dynamic** from the fp32 graph (measured, not shipped) and measures its parity the
   same way (max |Δα| vs PyTorch, MAD vs GT);
3. times every graph and RVM MobileNetV3 fp32 (``../shared/models``, read in place, never copied)
   with the **same** ``SessionOptions`` (``--threads`` intra-op threads, 1 inter-op, all graph
   optimisations, CPU provider), interleaved round-robin so load from other processes hits all
   models alike, state carried frame to frame. RVM gets ``r1i..r4i`` zeros ``[1,1,1,1]`` and
   ``downsample_ratio`` 0.4 at 1280x720 (its trunk 512x288, like the student's 0.4) and 1.0 at
   512x288 (the student at 512x288 still uses its own ratio 0.4 — the shipped configuration).

Without ``--checkpoint`` a random-weight student of the shipped ``small`` configuration is used:
speed and fp32/fp16 parity are meaningful, int8 MAD-vs-GT is not (no trained alpha to preserve).
Prints a markdown table, writes JSON.
"""
from __future__ import annotations

import argparse
import json
import logging
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_RVM = ROOT.parent / "shared" / "models" / "rvm_mobilenetv3_fp32.onnx"


def _sizes(text: str) -> list[tuple[int, int]]:
    return [tuple(int(v) for v in p.lower().split("x")) for p in text.split(",")]


def _student_source(args, work: Path) -> Path:
    if args.checkpoint:
        return Path(args.checkpoint)
    import torch

    from mamakit.student.models import StudentNet

    d = work / "random-small"
    if not (d / "model.safetensors").is_file():
        torch.manual_seed(0)
        StudentNet().save_pretrained(d)
    return d


def _clip(size, frames, seed=0):
    from mamakit.export.student import to_inputs
    from mamakit.synth import make_clip

    clip = make_clip(seed, frames, size)
    return [to_inputs(clip.frames[i], clip.masks[i], size) for i in range(frames)], None


def _dynamic_int8(fp32_bundle: Path, out: Path, size, frames, threads):
    """int8 dynamic from the bundle's fp32 graph + the same parity numbers as a bundle report."""
    import mamakit.export.graph as G

    G.quantize_int8_dynamic(fp32_bundle / "main.onnx", out)
    return out


def _parity_dynamic(src_model: Path, graph: Path, size, frames, threads, fgr=True, ratio=None) -> dict:
    from mamakit.export.student import _Wrapped, measure_parity, set_downsample_ratio
    from mamakit.student import load_student

    w = _Wrapped(set_downsample_ratio(load_student(str(src_model)), ratio), size, fgr=fgr)
    st, _ = measure_parity(w, graph, size, frames, 0, threads, keep_calls=0)
    return {k: st[k] for k in ("max_abs_diff_pha", "mad_vs_gt_pytorch", "mad_vs_gt_onnx")} | {"passed": None}


def _time_models(models: dict[str, dict], size, rounds: int, threads: int) -> dict[str, dict]:
    """Round-robin timing with state carried; returns median / p10 ms per frame for each model."""
    import mamakit.export.graph as G

    W, H = size
    inputs, _ = _clip(size, 8, seed=11)
    runners = {}
    for name, spec in models.items():
        sess = G.ort_session(spec["path"], threads, spin=False)
        outs = [o.name for o in sess.get_outputs()]
        state = {}
        for i in sess.get_inputs():
            if i.name in ("src", "guide", "downsample_ratio"):
                continue
            shape = [d if isinstance(d, int) else 1 for d in i.shape]
            state[i.name] = np.zeros(shape, np.float32)
        runners[name] = {"sess": sess, "outs": outs, "state": state, "times": [], "cpu": [], **spec}
    for r in range(rounds + 3):
        for name, run in runners.items():
            src, guide = inputs[r % len(inputs)]
            feed = {"src": src, **run["state"]}
            if run.get("rvm"):
                feed["downsample_ratio"] = np.array([run["ratio"]], np.float32)
            else:
                feed["guide"] = guide
            t, c = time.perf_counter(), time.process_time()
            res = dict(zip(run["outs"], run["sess"].run(None, feed)))
            dt, dc = time.perf_counter() - t, time.process_time() - c
            if r >= 3:
                run["times"].append(dt)
                run["cpu"].append(dc)
            run["state"] = {k: res[k[:-1] + "o"] for k in run["state"]}
    return {n: {"ms_median": float(np.median(r["times"]) * 1e3), "ms_p10": float(np.percentile(r["times"], 10) * 1e3),
                "cpu_ms_median": float(np.median(r["cpu"]) * 1e3), "frames": len(r["times"])}
            for n, r in runners.items()}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--checkpoint", help="student checkpoint or save_pretrained folder (default: random small)")
    ap.add_argument("--sizes", default="512x288,1280x720")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--frames", type=int, default=30, help="parity frames per export")
    ap.add_argument("--rounds", type=int, default=30, help="timed frames per model")
    ap.add_argument("--calib-clips", type=int, default=4)
    ap.add_argument("--rvm", default=str(DEFAULT_RVM))
    ap.add_argument("--json", default="export_bench.json")
    ap.add_argument("--keep", help="keep the exported bundles in this folder")
    ap.add_argument("--reuse", action="store_true", help="with --keep: reuse bundles already exported there")
    ap.add_argument("--no-fgr", action="store_true", help="export alpha-only graphs (as the shipped default bundle)")
    ap.add_argument("--downsample-ratio", type=float, default=None, help="override the checkpoint's ratio (export option)")
    ap.add_argument("--variants", help="comma-separated subset besides fp32: fp16, int8 (all int8 rows) or "
                                       "precision-scheme-convs, e.g. int8-trt-spatial,int8-trt-dense")
    ap.add_argument("--no-dynamic", action="store_true", help="skip the dynamic int8 row")
    ap.add_argument("--quick", action="store_true", help="8 parity frames, 10 timed rounds, 2 calibration clips")
    args = ap.parse_args()
    if args.quick:
        args.frames, args.rounds, args.calib_clips = 8, 10, 2
    logging.basicConfig(level=logging.WARNING, format="%(message)s")

    from mamakit.export.student import StudentExportOptions, export_student
    from mamakit.synth import synth_dataset

    work = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="mamakit-export-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    source = _student_source(args, work)
    rvm = Path(args.rvm)
    results = {"student": str(source) if args.checkpoint else "random-weight StudentNet (small preset)",
               "graph": {"fgr": not args.no_fgr, "downsample_ratio": args.downsample_ratio or "checkpoint's"},
               "threads": args.threads, "parity_frames": args.frames, "timed_frames": args.rounds,
               "rvm": str(rvm) if rvm.is_file() else None, "sizes": {}}
    for size in _sizes(args.sizes):
        W, H = size
        tag = f"{W}x{H}"
        calib = work / f"calib-{tag}"
        if not calib.exists():
            synth_dataset(calib, clips=args.calib_clips, frames=8, size=size, seed=7)
        rows: dict[str, dict] = {}
        variants = [("fp32", "fp32", "trt", "spatial"), ("fp16", "fp16", "trt", "spatial"),
                    ("int8-static (trt, kxk convs: default)", "int8", "trt", "spatial"),
                    ("int8-static (cpu u8s8, kxk convs)", "int8", "cpu", "spatial"),
                    ("int8-static (cpu u8s8, whole trunk)", "int8", "cpu", "trunk"),
                    ("int8-static (trt, kxk + wide 1x1 convs)", "int8", "trt", "dense"),
                    ("int8-static (trt, all convs)", "int8", "trt", "all")]
        if args.variants:
            keep = {v.strip() for v in args.variants.split(",")}
            variants = [v for v in variants if v[0] == "fp32" or f"{v[1]}-{v[2]}-{v[3]}" in keep or v[1] in keep]
        models = {}
        for label, prec, scheme, convs in variants:
            out = work / (f"{tag}-{prec}-{scheme}" + ("" if convs == "spatial" else f"-{convs}"))
            t0 = time.perf_counter()
            if not (args.reuse and (out / "bundle.json").is_file()):
                shutil.rmtree(out, ignore_errors=True)
                try:
                    export_student(source, out, StudentExportOptions(
                        size=size, precision=prec, calib=str(calib) if prec == "int8" else None,
                        int8_scheme=scheme, int8_convs=convs,
                        parity_frames=args.frames, threads=args.threads, fgr=not args.no_fgr,
                        downsample_ratio=args.downsample_ratio))
                except Exception as exc:  # report, keep benchmarking the others
                    rows[label] = {"error": str(exc)}
                    print(f"[{tag}] {label}: export failed: {exc}", file=sys.stderr)
                    continue
            m = json.loads((out / "bundle.json").read_text())
            p = m["parity"]
            rows[label] = {"export_s": round(time.perf_counter() - t0, 1),
                           "file_mb": (out / "main.onnx").stat().st_size / 2**20,
                           "parity": {k: p.get(k) for k in ("max_abs_diff_pha", "mad_vs_gt_pytorch", "mad_vs_gt_onnx",
                                                             "passed", "criterion", "clip")}}
            models[label] = {"path": out / "main.onnx"}
        if "fp32" in models and not args.no_dynamic:
            dyn = work / f"{tag}-int8-dynamic.onnx"
            if not (args.reuse and dyn.is_file()):
                _dynamic_int8(models["fp32"]["path"].parent, dyn, size, args.frames, args.threads)
            rows["int8-dynamic (not shipped)"] = {"file_mb": dyn.stat().st_size / 2**20,
                                                  "parity": _parity_dynamic(source, dyn, size, args.frames, args.threads,
                                                                            not args.no_fgr, args.downsample_ratio)}
            models["int8-dynamic (not shipped)"] = {"path": dyn}
        if rvm.is_file():
            ratio = min(1.0, round(288 / H, 3))  # trunk height 288: 1.0 at 288p, 0.4 at 720p
            models["RVM mbv3 fp32"] = {"path": rvm, "rvm": True, "ratio": ratio}
            rows["RVM mbv3 fp32"] = {"file_mb": rvm.stat().st_size / 2**20, "downsample_ratio": ratio}
        timing = _time_models(models, size, args.rounds, args.threads)
        base = timing.get("fp32", {}).get("ms_median")
        rvm_ms = timing.get("RVM mbv3 fp32", {}).get("ms_median")
        base_cpu = timing.get("fp32", {}).get("cpu_ms_median")
        rvm_cpu = timing.get("RVM mbv3 fp32", {}).get("cpu_ms_median")
        for name, t in timing.items():
            rows[name].update(t)
            rows[name]["speedup_vs_fp32"] = base / t["ms_median"] if base else None
            rows[name]["speedup_vs_rvm"] = rvm_ms / t["ms_median"] if rvm_ms else None
            rows[name]["cpu_speedup_vs_fp32"] = base_cpu / t["cpu_ms_median"] if base_cpu else None
            rows[name]["cpu_speedup_vs_rvm"] = rvm_cpu / t["cpu_ms_median"] if rvm_cpu else None
        results["sizes"][tag] = rows
        print(f"\n### ONNX Runtime CPU, {tag}, {args.threads} threads ({args.rounds} frames, interleaved)\n")
        print("| model | wall ms/frame (median) | p10 | CPU ms/frame | × fp32 (wall) | × fp32 (CPU) | × RVM (wall) | × RVM (CPU) "
              "| max abs Δα vs PyTorch | MAD PyTorch | MAD ORT | parity | MB |")
        print("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
        for name, r in rows.items():
            if "error" in r:
                print(f"| {name} | export failed: {r['error'][:60]} |||||||||")
                continue
            p = r.get("parity", {})
            f = lambda v, fmt: (fmt % v) if isinstance(v, (int, float)) else "–"  # noqa: E731
            print(f"| {name} | {f(r.get('ms_median'), '%.1f')} | {f(r.get('ms_p10'), '%.1f')} | "
                  f"{f(r.get('cpu_ms_median'), '%.1f')} | "
                  f"{f(r.get('speedup_vs_fp32'), '%.2f')} | {f(r.get('cpu_speedup_vs_fp32'), '%.2f')} | "
                  f"{f(r.get('speedup_vs_rvm'), '%.2f')} | {f(r.get('cpu_speedup_vs_rvm'), '%.2f')} | "
                  f"{f(p.get('max_abs_diff_pha'), '%.1e')} | {f(p.get('mad_vs_gt_pytorch'), '%.4f')} | "
                  f"{f(p.get('mad_vs_gt_onnx'), '%.4f')} | {'pass' if p.get('passed') else ('–' if p.get('passed') is None else 'FAIL')} | "
                  f"{r['file_mb']:.1f} |")
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps(results, indent=2, default=str) + "\n")
    print(f"\n(JSON: {args.json}; bundles in {work})", file=sys.stderr)
    if not args.keep:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
