"""`mamakit export onnx|trt|check` — bundles out of checkpoints, engines out of bundles, and a
torch-free verification of any bundle. Nothing heavy is imported at module level: `export check`
needs only numpy + onnxruntime + the core."""
from __future__ import annotations

import argparse
import logging

from mamakit.errors import ConfigError, ParityError

log = logging.getLogger(__name__)


def add_parser(subparsers) -> None:
    p = subparsers.add_parser("export", help="export checkpoints to verified ONNX / TensorRT bundles",
                              description="Export a checkpoint to a verified bundle (ONNX fp32/fp16/int8), build "
                                          "TensorRT engines for it, or check a bundle anywhere.")
    sub = p.add_subparsers(dest="export_command", metavar="ACTION", parser_class=type(p))
    p.set_defaults(func=run)

    o = sub.add_parser("onnx", help="checkpoint -> ONNX bundle (parity-checked)",
                       description="Export a student (or SAM2-Matte) checkpoint to a bundle. Parity against PyTorch is "
                                   "measured on a 30-frame synthetic clip; a failing bundle is never written.")
    o.add_argument("--checkpoint", required=True, help="Lightning .ckpt from `mamakit distill`, or a save_pretrained folder")
    o.add_argument("--out", required=True, help="bundle folder to create")
    o.add_argument("--size", default=None, help="processing size WxH (default 1280x720 for students)")
    o.add_argument("--precision", default="fp32", choices=["fp32", "fp16", "int8"])
    o.add_argument("--calib", default=None, help="dataset folder for int8 calibration (mamakit dataset format)")
    o.add_argument("--calib-frames", type=int, default=64, help="at most this many calibration frames (default 64)")
    o.add_argument("--min-calib-frames", type=int, default=8, help="refuse calibration sets smaller than this (default 8)")
    o.add_argument("--calib-method", default="minmax", choices=["minmax", "percentile", "entropy"])
    o.add_argument("--int8-scheme", default="trt", choices=["trt", "cpu"],
                   help="trt: symmetric int8 QDQ that ONNX Runtime and TensorRT both run (default); "
                        "cpu: u8s8 QDQ for ONNX Runtime only (the fast one on CPU)")
    o.add_argument("--int8-convs", default="spatial", choices=["spatial", "dense", "all", "trunk"],
                   help="what becomes int8: spatial = standard kxk convs only (default; the ones ONNX Runtime "
                        "runs faster in int8), dense = those plus 1x1 convs with >= 64 channels (wide "
                        "encoders, e.g. the large student), all = every Conv incl. depthwise (slower on CPU), "
                        "trunk = every op of the low-resolution trunk, refiner fp32 (use with --int8-scheme cpu)")
    o.add_argument("--downsample-ratio", type=float, default=None,
                   help="trunk size / frame size baked into the graph (default: the checkpoint's, 0.4 for the "
                        "small student); lower is faster (0.3: 1280x720 -> 384x216)")
    o.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", dest="student_set",
                   help="a student deployment setting that changes no weights (repeatable): trunk_resize=area|"
                        "bilinear, refiner_radius=N, refiner_smooth=N (box mean of the refiner's coefficients; "
                        "the shipped default uses 1); recorded in the bundle's source config")
    o.add_argument("--no-fgr", dest="fgr", action="store_false",
                   help="alpha-only graph: no foreground-colour output (runtimes estimate colour themselves); "
                        "same alpha, less full-resolution work")
    o.add_argument("--opset", type=int, default=None, help="ONNX opset (default 17 legacy / 18 dynamo)")
    o.add_argument("--exporter", default="auto", choices=["auto", "legacy", "dynamo"],
                   help="torch.onnx exporter (auto: legacy for static graphs, dynamo for --dynamic)")
    o.add_argument("--dynamic", action="store_true", help="symbolic height/width (ONNX Runtime only; TensorRT wants static)")
    o.add_argument("--parity-frames", type=int, default=30, help="frames of the parity clip (default 30)")
    o.add_argument("--sample-calls", type=int, default=3, help="graph calls stored in sample.npz (default 3)")
    o.add_argument("--threads", type=int, default=2, help="ONNX Runtime threads for parity/timing (default 2)")
    o.add_argument("--seed", type=int, default=0, help="seed of the synthetic parity clip")
    o.add_argument("--teacher", default=None, help="record the teacher (when the checkpoint does not)")
    o.add_argument("--training-data", default=None, help="record the training data (when the checkpoint does not)")
    o.add_argument("--licence", default=None, help="licence of the weights (VideoMaMa-distilled weights stay CC-BY-NC-4.0)")
    o.add_argument("--overwrite", action="store_true", help="replace an existing bundle at --out")
    o.set_defaults(func=run, export_command="onnx")

    t = sub.add_parser("trt", help="bundle -> TensorRT / TensorRT-RTX engines (recorded in the manifest)",
                       description="Build engines for a bundle's graphs with tensorrt or tensorrt_rtx (whichever is "
                                   "installed). Precision comes from the graph (strongly typed networks).")
    t.add_argument("--bundle", required=True)
    t.add_argument("--precision", default=None, choices=["fp16", "int8"],
                   help="only for a weakly typed TensorRT (JetPack 8/10) on an fp32 bundle; otherwise export that precision")
    t.add_argument("--workspace", type=int, default=1024, help="workspace limit in MB (default 1024)")
    t.add_argument("--timing-cache", default=None, help="persistent timing cache file (read and updated)")
    t.add_argument("--compute-capability", default=None, help="TensorRT-RTX target, e.g. 8.6 (default: portable)")
    t.add_argument("--dla-core", type=int, default=None, help="build for a Jetson DLA core (GPU fallback on)")
    t.add_argument("--backend", default=None, choices=["tensorrt", "tensorrt-rtx"], help="force one TensorRT flavour")
    t.set_defaults(func=run, export_command="trt")

    c = sub.add_parser("check", help="verify a bundle: checksums + reference sample through ONNX Runtime (no torch)")
    c.add_argument("bundle")
    c.add_argument("--threads", type=int, default=2)
    c.set_defaults(func=run, export_command="check")

    r = sub.add_parser("recover", help="student bundle -> trainable student folder (fine-tune a shipped student)",
                       description="Rebuild a trainable student (save_pretrained folder: config.json + model.safetensors) "
                                   "from an fp32 student bundle's ONNX graph, for when its checkpoint is not at hand: "
                                   "folded BatchNorms are unfolded with statistics measured on --calib data (or synthetic frames), and "
                                   "the result is refused unless it matches the graph in ONNX Runtime.")
    r.add_argument("bundle", help="an fp32 student bundle (e.g. runtime/bundles/default)")
    r.add_argument("--out", required=True, help="student folder to create (use it as model.init_from or --checkpoint)")
    r.add_argument("--calib", default=None,
                   help="the dataset the student will be fine-tuned on (recommended): BatchNorm statistics are measured "
                        "on its frames, so train mode starts near the shipped student (default: synthetic clips)")
    r.add_argument("--tolerance", type=float, default=1e-3, help="largest alpha difference to the graph accepted (default 1e-3)")
    r.add_argument("--threads", type=int, default=1)
    r.add_argument("--overwrite", action="store_true", help="replace an existing folder at --out")
    r.set_defaults(func=run, export_command="recover")


def run(args: argparse.Namespace) -> int:
    cmd = getattr(args, "export_command", None)
    if cmd == "check":
        return _check(args)
    if cmd == "onnx":
        return _onnx(args)
    if cmd == "trt":
        return _trt(args)
    if cmd == "recover":
        return _recover(args)
    raise ConfigError("choose an action: `mamakit export onnx|trt|check` (see `mamakit export --help`)")


def _check(args) -> int:
    from mamakit.export.check import check_bundle

    report = check_bundle(args.bundle, threads=args.threads)
    print(report.table())
    if not report.ok:
        bad = report.failures()[0]
        raise ParityError(f"bundle {args.bundle} fails its check: {bad.item}: {bad.detail}")
    return 0


def _onnx(args) -> int:
    from pathlib import Path

    from mamakit.export.source import read_source

    if args.calib_frames < 1 or args.min_calib_frames < 1:
        raise ConfigError("--calib-frames and --min-calib-frames must be positive")
    if args.precision == "int8" and not args.calib:
        raise ConfigError("--precision int8 needs calibration frames: pass --calib DATASET "
                          "(a mamakit dataset, e.g. from `mamakit synth`)")
    out = Path(args.out)
    from mamakit.export.student import check_output, parse_size

    size = parse_size(args.size) if args.size else None
    check_output(out, args.overwrite)
    source = read_source(args.checkpoint)
    if source.kind == "sam2-matte":
        try:
            from mamakit.export.sam2 import export_sam2_matte
        except ImportError as exc:
            raise ConfigError(f"checkpoint {args.checkpoint} is a SAM2-Matte model, but its exporter "
                              f"(mamakit.export.sam2) is not available in this install ({exc})") from exc
        image_size = None
        if size is not None:
            if size[0] != size[1]:
                raise ConfigError(f"--size {args.size}: SAM2-Matte processes square images (e.g. 512x512)")
            image_size = size[0]
        export_sam2_matte(args.checkpoint, out, image_size=image_size, precision=args.precision,
                          opset=args.opset or 18, calib=args.calib)
        print(f"wrote {out}")
        return 0
    from mamakit.export.student import StudentExportOptions, export_student

    opts = StudentExportOptions(
        size=size or (1280, 720), precision=args.precision, calib=args.calib, calib_frames=args.calib_frames,
        min_calib_frames=args.min_calib_frames, calib_method=args.calib_method,
        int8_scheme=args.int8_scheme, int8_convs=args.int8_convs, fgr=args.fgr, downsample_ratio=args.downsample_ratio,
        student_set=tuple(args.student_set), opset=args.opset,
        exporter=args.exporter, dynamic=args.dynamic, parity_frames=args.parity_frames,
        sample_calls=args.sample_calls, threads=args.threads, seed=args.seed, overwrite=args.overwrite,
        teacher=args.teacher, training_data=args.training_data, licence=args.licence,
    )
    export_student(args.checkpoint, out, opts, source=source)
    import json

    m = json.loads((out / "bundle.json").read_text())
    par = m["parity"]
    print(f"wrote {out}: student {m['precision']} {m['processing_size'][0]}x{m['processing_size'][1]}, "
          f"parity {par['summary']} ({par['clip']['frames']} frames), ORT {par['ms_per_frame']['onnxruntime']:.1f} ms/frame "
          f"({par['speedup_vs_fp32']:.2f}x fp32), licence {m['licence']}")
    return 0


def _recover(args) -> int:
    from pathlib import Path

    from mamakit.export.recover import recover_student

    out = Path(args.out)
    if out.is_file() or (out.is_dir() and any(out.iterdir()) and not args.overwrite):
        raise ConfigError(f"--out {out} already exists: choose a new folder or pass --overwrite")
    _, report = recover_student(args.bundle, out, tolerance=args.tolerance, calib=args.calib, threads=args.threads)
    print(f"wrote {out}: {report['convs']} convs, {report['batchnorms']} BatchNorms; max |alpha - graph| "
          f"{report['max_abs_alpha_diff']:.1e} at {report['size'][0]}x{report['size'][1]}")
    return 0


def _trt(args) -> int:
    from mamakit.export.trt import build_engines

    entries = build_engines(args.bundle, precision=args.precision, workspace_mb=args.workspace,
                            timing_cache=args.timing_cache, compute_capability=args.compute_capability,
                            dla_core=args.dla_core, backend=args.backend)
    for e in entries:
        print(f"built {e['file']}: {e['backend']} {e['trt_version']}, {e['precision']} ({e['precision_source']}), "
              f"targets {', '.join(e['targets'])}, {e['size_bytes'] // 1024} KiB in {e['build_seconds']} s")
    return 0
