"""``mamakit label``: pseudo-label clips with a teacher (no heavy imports at module level)."""
from __future__ import annotations

import json
import sys


def _size(text: str) -> tuple[int, int]:
    import argparse

    try:
        w, h = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"size must look like 1024x576, got {text!r}") from None
    return w, h


def add_parser(subparsers) -> None:
    p = subparsers.add_parser(
        "label", help="pseudo-label videos with a teacher (VideoMaMa or the CPU closed-form teacher)",
        description="Label one clip (writes OUT/alpha/ + OUT/quality.json) or many clips (writes a mamakit "
                    "dataset). Resumable: rerun the same command after an interruption. See docs/teacher.md.")
    p.add_argument("--teacher", required=True, choices=["videomama", "closed-form"])
    p.add_argument("--source", required=True,
                   help="a video, a frame folder (one clip); a folder of videos/frame folders, a dataset or a .txt "
                        "list of 'SOURCE [MASKS]' lines (many clips)")
    p.add_argument("--masks", help="mask folder (one mask per frame), a first-frame mask file (SAM2 propagation), "
                                   "or for many clips a folder with one entry per clip (same name)")
    p.add_argument("--out", required=True, help="output folder")
    g = p.add_argument_group("SAM2 masks")
    g.add_argument("--prompt", action="append", default=[], metavar="point=X,Y|negpoint=X,Y|box=X0,Y0,X1,Y1",
                   help="SAM2 prompt in source pixels (repeatable)")
    g.add_argument("--prompt-frame", type=int, default=0, help="frame the prompts refer to (default 0)")
    g.add_argument("--sam2-checkpoint", help="local SAM2 checkpoint (.pt)")
    g.add_argument("--sam2-config", help="SAM2 config: a sam2 config name (default "
                                         "configs/sam2.1/sam2.1_hiera_t.yaml) or a .yaml file")
    g.add_argument("--sam2-image-size", type=int, default=512, help="SAM2 input size (default 512)")
    g.add_argument("--sam2-random-weights", action="store_true", help="random SAM2 weights (tests/demos only)")
    v = p.add_argument_group("VideoMaMa teacher")
    v.add_argument("--base-model", help="SVD-XT base folder (with vae/)")
    v.add_argument("--unet", help="VideoMaMa folder (with unet/) or a single UNet .safetensors file")
    v.add_argument("--unet-config", help="config.json for a single-file UNet")
    v.add_argument("--size", type=_size, help="processing size WxH (default 1024x576)")
    v.add_argument("--keep-aspect", action="store_true", help="fit the long side to the processing size, "
                                                               "sides rounded to multiples of 64")
    v.add_argument("--window", type=int, help="frames per pass (default 16)")
    v.add_argument("--overlap", type=int, help="frames shared by consecutive windows (default 2)")
    v.add_argument("--steps", type=int, help="sampling steps (default 1 = VideoMaMa's one-step)")
    v.add_argument("--dtype", choices=["fp32", "fp16", "bf16"], help="model dtype (default fp32)")
    v.add_argument("--device", help="cpu | cuda | cuda:N (default: cuda if available)")
    v.add_argument("--seed", type=int, help="noise seed (default 42)")
    v.add_argument("--decode-chunk", type=int, help="frames per VAE call (default 8)")
    v.add_argument("--cpu-offload", action="store_true", help="sequential CPU offload for small GPUs")
    v.add_argument("--stochastic", action="store_true", help="sample VAE latents instead of mode()")
    c = p.add_argument_group("closed-form teacher")
    c.add_argument("--solve-size", type=int, help="long side (px) the matting is solved at (default 1024)")
    c.add_argument("--temporal-smoothing", type=float, help="EMA weight of the previous alpha (default 0 = off)")
    o = p.add_argument_group("output and scale-out")
    o.add_argument("--min-quality", type=float, help="leave clips scoring below this (0..1) out of the manifest")
    o.add_argument("--alpha-bits", type=int, default=8, choices=[8, 16])
    o.add_argument("--frame-format", default="png", choices=["png", "jpg"], help="dataset frames (many clips)")
    o.add_argument("--devices", default="1", help="Lightning devices (e.g. 1, 4, auto)")
    o.add_argument("--num-nodes", type=int, default=1)
    o.add_argument("--strategy", default="auto", help="Lightning strategy (e.g. ddp)")
    o.add_argument("--accelerator", default="auto", help="Lightning accelerator (auto follows the teacher's device)")
    o.add_argument("--threads", type=int, help="torch CPU threads (default: torch's choice; 1 is often fastest "
                                               "on a shared, busy CPU)")
    o.add_argument("--json", dest="json_out", help="also write the summary as JSON to this file")
    p.set_defaults(func=run)


def _teacher_options(args) -> dict:
    opts = {}
    if args.teacher == "videomama":
        pairs = {"processing_size": args.size, "window": args.window, "overlap": args.overlap, "steps": args.steps,
                 "dtype": args.dtype, "device": args.device, "seed": args.seed, "decode_chunk": args.decode_chunk}
        opts = {k: v for k, v in pairs.items() if v is not None}
        if args.keep_aspect:
            opts["keep_aspect"] = True
        if args.cpu_offload:
            opts["cpu_offload"] = True
        if args.stochastic:
            opts["deterministic"] = False
    else:
        if args.solve_size is not None:
            opts["solve_size"] = args.solve_size
        if args.temporal_smoothing is not None:
            opts["temporal_smoothing"] = args.temporal_smoothing
    return opts


def run(args) -> int:
    from mamakit.errors import ConfigError
    from mamakit.teacher.label.run import LabelConfig, label

    if args.teacher != "videomama":
        for flag in ("base_model", "unet", "unet_config", "size", "window", "overlap", "steps", "dtype"):
            if getattr(args, flag) is not None:
                raise ConfigError(f"--{flag.replace('_', '-')} only applies to --teacher videomama")
    devices = int(args.devices) if str(args.devices).isdigit() else args.devices
    cfg = LabelConfig(
        teacher=args.teacher, source=args.source, out=args.out, masks=args.masks, prompts=list(args.prompt),
        prompt_frame=args.prompt_frame, sam2_checkpoint=args.sam2_checkpoint, sam2_config=args.sam2_config,
        sam2_image_size=args.sam2_image_size, sam2_random_weights=args.sam2_random_weights,
        base_model=args.base_model, unet=args.unet, unet_config=args.unet_config,
        teacher_options=_teacher_options(args), min_quality=args.min_quality, alpha_bits=args.alpha_bits,
        frame_format=args.frame_format, devices=devices, num_nodes=args.num_nodes, strategy=args.strategy,
        accelerator=args.accelerator, progress=not args.quiet, threads=args.threads)
    summary = label(cfg)
    error = summary.pop("error", None)
    _print_summary(summary)
    if args.json_out:
        from mamakit.fsutil import write_json_atomic

        write_json_atomic(args.json_out, summary)
    if error is not None:
        raise error
    return 0


def _print_summary(s: dict) -> None:
    rows = [("teacher", s["teacher"]), ("output", s["out"]), ("clips", s["clips"]), ("labelled", s["labelled"]),
            ("skipped (already done)", s["skipped"]), ("below --min-quality", s["rejected"]),
            ("failed", s["failed"]), ("frames", s["frames"]), ("seconds", s["seconds"]),
            ("frames/s", s["frames_per_s"]), ("mean quality score", s["mean_score"])]
    width = max(len(k) for k, _ in rows)
    for k, v in rows:
        print(f"{k:<{width}}  {v}", file=sys.stdout)
    sys.stdout.flush()
