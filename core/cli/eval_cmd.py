"""``mamakit eval --pred DIR --gt DIR [--json FILE]``: matting metrics (FIELD_GUIDE §4).

``--gt`` is a folder of alpha images (paired with ``--pred`` images by file stem, or by sorted
order when the stems differ but the counts match) or a mamakit dataset (``manifest.jsonl``), in
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
    p.add_argument("--pred", required=True, help="folder of predicted alpha images (or one folder per clip)")
    p.add_argument("--gt", required=True, help="folder of ground-truth alpha images, or a mamakit dataset")
    p.add_argument("--json", default=None, metavar="FILE", help="write means, frame count and per-frame values here")
    p.add_argument("--per-frame", action="store_true", help="also print one row per frame")
    p.set_defaults(func=run)


def _pairs(pred_dir: Path, gt_dir: Path, what: str = ""):
    from mamakit.errors import InputError
    from mamakit.io.images import list_images, quick_check

    if pred_dir.exists() and not pred_dir.is_dir():
        raise InputError(f"--pred {pred_dir} is a file, not a folder: pass the folder of predicted alpha images")
    gts = list_images(gt_dir, what=f"ground-truth folder{what}")
    preds = list_images(pred_dir, what=f"prediction folder{what}")
    by_stem = {p.stem: p for p in preds}
    if all(g.stem in by_stem for g in gts):
        pairs = [(by_stem[g.stem], g) for g in gts]
        if len(preds) != len(gts):
            log.warning("%d predictions in %s but %d ground-truth frames: evaluating the %d with matching names",
                        len(preds), pred_dir, len(gts), len(gts))
    elif len(preds) == len(gts):
        pairs = list(zip(preds, gts))
    else:
        raise InputError(f"{len(preds)} predictions in {pred_dir} but {len(gts)} ground-truth frames in {gt_dir} "
                         "and their names differ: give one prediction per frame (same names or same sorted order)")
    for p, g in pairs:
        quick_check(p)
        quick_check(g)
    return pairs


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
    from mamakit.io.images import read_alpha
    from mamakit.metrics import METRICS, Evaluator, format_table

    pred, gt = Path(args.pred), Path(args.gt)
    json_path = Path(args.json) if args.json else None
    if json_path is not None:
        _check_json_target(json_path)
    if not gt.exists():
        raise VideoIOError(f"--gt {gt} does not exist: check the path")
    if not pred.exists():
        raise VideoIOError(f"--pred {pred} does not exist: check the path")
    if not gt.is_dir():
        raise InputError(f"--gt {gt} is a file, not a folder: pass the folder of ground-truth alpha images or a dataset")

    # ---- plan everything before computing anything
    plan: list[tuple[str | None, list]] = []
    if (gt / "manifest.jsonl").is_file():
        from mamakit.dataset import Dataset

        ds = Dataset(gt)
        if not len(ds):
            raise InputError(f"dataset {gt} has no finished clips")
        for clip in ds:
            if not clip.alpha_paths:
                raise InputError(f"clip {clip.id} of {gt} has no alpha to compare with")
            plan.append((clip.id, _pairs(pred / clip.id, clip.root / "alpha", f" of clip {clip.id}")))
    else:
        plan.append((None, _pairs(pred, gt)))

    ev = Evaluator()
    for clip_id, pairs in plan:
        ev.new_clip(clip_id)
        for p, g in pairs:
            pa, ga = read_alpha(p), read_alpha(g)
            if pa.shape != ga.shape:
                raise InputError(f"prediction {p.name} is {pa.shape[1]}x{pa.shape[0]} but ground truth {g.name} is "
                                 f"{ga.shape[1]}x{ga.shape[0]}: predictions must have the ground truth's size")
            ev.update(pa, ga, g.stem)
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
