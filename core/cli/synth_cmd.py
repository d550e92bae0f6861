"""``mamakit synth --out DIR --clips N --frames T --size WxH --seed S``: synthetic training clips.

Writes a mamakit dataset (docs/dataset.md) of composites with exact ground-truth alpha,
foreground colour and degraded coarse masks. Same seed -> byte-identical files; re-running
into the same folder resumes (finished clips are kept).
"""
from __future__ import annotations

import logging
import re
import sys

log = logging.getLogger(__name__)


def parse_size(text: str) -> tuple[int, int]:
    from mamakit.errors import ConfigError

    m = re.fullmatch(r"\s*(\d+)\s*[xX×]\s*(\d+)\s*", str(text))
    if not m:
        raise ConfigError(f"invalid size {text!r}: use WxH, e.g. 256x144")
    w, h = int(m.group(1)), int(m.group(2))
    if w < 16 or h < 16 or w > 8192 or h > 8192:
        raise ConfigError(f"size {w}x{h} is out of range: width and height must be 16..8192")
    return w, h


def parse_knobs(items) -> "SynthConfig":
    """``["p_transparent=0.15", "transparency=0.3,0.8"]`` -> a :class:`SynthConfig` with those fields."""
    from dataclasses import fields

    from mamakit.settings import parse_settings
    from mamakit.synth import SynthConfig

    known = [f.name for f in fields(SynthConfig) if f.name != "fps"]
    values = parse_settings(items, SynthConfig(), known)
    return SynthConfig(**values)


def add_parser(sub):
    p = sub.add_parser("synth", help="write synthetic matting clips with exact ground truth (a dataset)",
                       description="Generate reproducible composites (procedural alpha, real photo textures, "
                                   "per-frame motion) with GT alpha, foreground colour and degraded coarse masks.")
    p.add_argument("--out", required=True, help="dataset folder to create (or resume)")
    p.add_argument("--clips", type=int, default=8, help="number of clips (default 8)")
    p.add_argument("--frames", type=int, default=8, help="frames per clip (default 8)")
    p.add_argument("--size", default="256x144", help="WxH (default 256x144)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.add_argument("--jpg", action="store_true", help="store frames and fgr as JPEG instead of PNG")
    p.add_argument("--fps", type=float, default=25.0, help="frame rate recorded in meta.json")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", dest="knobs",
                   help="a generator knob (mamakit.synth.SynthConfig field), e.g. --set p_transparent=0.15 "
                        "--set transparency=0.3,0.8; repeatable; recorded in every clip's meta.json")
    p.add_argument("--textures", action="append", default=[], metavar="PATH",
                   help="extra texture photos: an image, an image folder or a video (repeatable); up to "
                        "--textures-per-source frames of each are drawn for foregrounds and photo backgrounds "
                        "with probability p_extra_texture (default 0.6)")
    p.add_argument("--textures-per-source", type=int, default=8, metavar="N",
                   help="frames taken, evenly spread, from each --textures folder or video (default 8)")
    p.set_defaults(func=run)


def run(args) -> int:
    from dataclasses import replace
    from pathlib import Path

    from mamakit.dataset import DatasetWriter
    from mamakit.errors import ConfigError
    from mamakit.synth import SynthConfig, _photo_bank, load_textures, synth_dataset

    size = parse_size(args.size)
    if args.clips < 1 or args.clips > 1_000_000:
        raise ConfigError(f"--clips must be between 1 and 1000000, got {args.clips}")
    if args.frames < 1 or args.frames > 10_000:
        raise ConfigError(f"--frames must be between 1 and 10000, got {args.frames}")
    if not args.fps > 0:
        raise ConfigError(f"--fps must be positive, got {args.fps}")
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise ConfigError(f"--out {out} is a file, not a folder: choose a folder for the dataset")
    DatasetWriter(out)  # validates the target (and an existing manifest) without writing anything
    _photo_bank()  # a missing scikit-image is reported before any work
    cfg = replace(parse_knobs(args.knobs), fps=float(args.fps))
    if args.textures_per_source < 1:
        raise ConfigError(f"--textures-per-source must be at least 1, got {args.textures_per_source}")
    textures = load_textures(args.textures, per_source=args.textures_per_source) if args.textures else ()
    from tqdm import tqdm

    with tqdm(total=args.clips, desc="synth", unit="clip", file=sys.stderr,
              disable=getattr(args, "quiet", False), leave=False) as bar:
        ids = synth_dataset(out, args.clips, args.frames, size, args.seed, cfg=cfg,
                            frame_format="jpg" if args.jpg else "png", progress=bar.update,
                            textures=textures, texture_sources=args.textures)
    print(f"wrote {len(ids)} clips x {args.frames} frames at {size[0]}x{size[1]} (seed {args.seed}) to {out}")
    return 0
