"""``mamakit eval --pred DIR --gt DIR [--json FILE]``: matting metrics (FIELD_GUIDE §4).

``--gt`` is a folder of alpha images (paired with ``--pred`` images by file stem, or by sorted
order when the stems differ but the counts match), an alpha video (``.mov``/``.webm`` alpha channel,
or a gray matte ``.mp4``; paired by order) or a mamakit dataset (``manifest.jsonl``), in
which case ``--pred`` holds one folder of alpha images per clip id. Everything is checked before
the first metric is computed; the JSON is written atomically at the end.
"""
from __future__ import annotations

import logging
import os
from pathlib import Path

log = logging.getLogger(__name__)


def add_parser(sub):
    p = sub.add_parser("eval", help="compare predicted alpha with ground truth (MAD, MSE, Grad, Conn, dtSSD, SAD)",
                       description="Compute MAD (x1e3), MSE (x1e3), Grad (/1e3), Conn (/1e3), dtSSD (x1e2) and "
                                   "SAD (/1e3) per frame and their means. Prints a table; --json writes all values.")
    p.add_argument("--pred", required=True,
                   help="folder of predicted alpha images or an alpha video (.mov/.webm/.mp4); one folder per clip "
                        "when --gt is a dataset")
    p.add_argument("--gt", required=True, help="folder of ground-truth alpha images, an alpha video, or a mamakit dataset")
    p.add_argument("--json", default=None, metavar="FILE", help="write means, frame count and per-frame values here")
    p.add_argument("--per-frame", action="store_true", help="also print one row per frame")
    p.set_defaults(func=run)


class _Seq:
    """An alpha sequence to evaluate: a folder of images or one (alpha) video file."""

    def __init__(self, path: Path, role: str, what: str = "") -> None:
        from mamakit.errors import InputError, VideoIOError
        from mamakit.io.images import list_images, quick_check
        from mamakit.io.sources import VIDEO_EXTS

        self.path = path
        if not path.exists():
            raise VideoIOError(f"--{role} {path}{what} does not exist: check the path")
        if path.is_dir():
            self.files = list_images(path, what=f"{'prediction' if role == 'pred' else 'ground-truth'} folder{what}")
            for f in self.files:
                quick_check(f)
            self.names = [f.stem for f in self.files]
            self.video = False
        elif path.suffix.lower() in VIDEO_EXTS:
            self.files = []
            self.names = [f"{i:05d}" for i in range(_count_video_frames(path))]
            self.video = True
        elif path.suffix.lower() in (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".webp", ".bmp"):
            raise InputError(f"--{role} {path} is a file, not a folder: pass the folder that holds the alpha images")
        else:
            raise VideoIOError(f"--{role} {path} has an unknown extension {path.suffix or '(none)'!r}: pass a folder "
                               "of alpha images or an alpha video (.mov, .webm, .mp4)")

    def __len__(self) -> int:
        return len(self.names)

    def alphas(self, order: list[int] | None = None):
        from mamakit.io.images import read_alpha

        if self.video:
            from mamakit.io.sources import read_video_rgba, video_has_alpha

            channel = 3 if video_has_alpha(self.path) else 0  # alpha channel, or a gray matte video
            for rgba in read_video_rgba(self.path):
                yield rgba[..., channel].astype("float32") / 255.0
        else:
            for i in (order if order is not None else range(len(self.files))):
                yield read_alpha(self.files[i])


def _count_video_frames(path: Path) -> int:
    """Open the video, check a first frame decodes, count frames by demuxing (no full decode)."""
    from mamakit.io.sources import open_source
    import av

    with open_source(path):  # raises VideoIOError for corrupt / zero-frame / unreadable videos
        pass
    with av.open(str(path)) as c:
        stream = c.streams.video[0]
        return sum(1 for pkt in c.demux(stream) if pkt.size)


def _pairs(pred_path: Path, gt_path: Path, what: str = ""):
    """Validate both sides and return (pred seq, pred order, gt seq)."""
    from mamakit.errors import InputError

    gt = _Seq(gt_path, "gt", what)
    pred = _Seq(pred_path, "pred", what)
    index = {n: i for i, n in enumerate(pred.names)}
    if not pred.video and not gt.video and all(n in index for n in gt.names):
        order = [index[n] for n in gt.names]
        if len(pred) != len(gt):
            log.warning("%d predictions in %s but %d ground-truth frames: evaluating the %d with matching names",
                        len(pred), pred_path, len(gt), len(gt))
    elif len(pred) == len(gt):
        order = None
    else:
        raise InputError(f"{len(pred)} predictions in {pred_path} but {len(gt)} ground-truth frames in {gt_path}"
                         f"{' and their names differ' if not (pred.video or gt.video) else ''}: "
                         "give one prediction per frame (same names or same sorted order)")
    return pred, order, gt


def _check_json_target(path: Path) -> None:
    from mamakit.errors import InputError

    if path.is_dir():
        raise InputError(f"--json {path} is a folder, not a file: pass a file name such as {path / 'metrics.json'}")
    parent = path.parent if str(path.parent) else Path(".")
    if not parent.is_dir():
        raise InputError(f"--json folder {parent} does not exist: create it first")
    if not os.access(parent, os.W_OK):
        raise InputError(f"--json {path} is not writable: choose a folder you can write to")


def run(args) -> int:
    from mamakit.errors import InputError, VideoIOError
    from mamakit.fsutil import write_json_atomic
    from mamakit.metrics import METRICS, Evaluator, format_table

    pred, gt = Path(args.pred), Path(args.gt)
    json_path = Path(args.json) if args.json else None
    if json_path is not None:
        _check_json_target(json_path)

    # ---- plan everything (and check every input) before computing anything
    plan = []
    if gt.is_dir() and (gt / "manifest.jsonl").is_file():
        from mamakit.dataset import Dataset

        ds = Dataset(gt)
        if not len(ds):
            raise InputError(f"dataset {gt} has no finished clips")
        if pred.exists() and not pred.is_dir():
            raise InputError(f"--pred {pred} is a file, not a folder: pass a folder with one sub-folder per clip")
        for clip in ds:
            if not clip.alpha_paths:
                raise InputError(f"clip {clip.id} of {gt} has no alpha to compare with")
            plan.append((clip.id, _pairs(pred / clip.id, clip.root / "alpha", f" (clip {clip.id})")))
    else:
        if not pred.exists():
            raise VideoIOError(f"--pred {pred} does not exist: check the path")
        plan.append((None, _pairs(pred, gt)))

    ev = Evaluator()
    for clip_id, (pseq, order, gseq) in plan:
        ev.new_clip(clip_id)
        for name, pa, ga in zip(gseq.names, pseq.alphas(order), gseq.alphas()):
            if pa.shape != ga.shape:
                raise InputError(f"prediction for frame {name} is {pa.shape[1]}x{pa.shape[0]} but the ground truth is "
                                 f"{ga.shape[1]}x{ga.shape[0]}: predictions must have the ground truth's size")
            ev.update(pa, ga, name)
    result = ev.result()
    if args.per_frame:
        print("  ".join(["frame".ljust(16)] + [f"{k:>9}" for k in METRICS]))
        for r in result["per_frame"]:
            label = f"{r.get('clip', '')}/{r['frame']}" if "clip" in r else str(r["frame"])
            print("  ".join([label[:16].ljust(16)] + [f"{r[k]:>9.4f}" for k in METRICS]))
    print(format_table(result))
    if json_path is not None:
        write_json_atomic(json_path, result)
        log.info("wrote %s", json_path)
    return 0
