"""SAM2-Matte session: four ONNX graphs driven frame by frame, the memory bank owned here.

Torch-free (numpy + onnxruntime). The bank is a set of fixed-size arrays allocated once per
session — ``N`` memories (slot 0 = the prompted frame, slots 1.. = the most recent frames,
newest first) and ``P`` object pointers laid out the same way — so an endless stream uses constant
memory: each tracked frame shifts the recent slots by one and drops the oldest.

Per frame: ``encoder`` (image -> features), then ``prompt`` on the prompted frame or ``track``
(memory attention + mask decoder) on the others, then ``memory`` (encodes the frame's own
prediction into the bank). When the occlusion score says the object is absent, SAM2's gate
writes empty logits, the alpha is empty, and the "no object" memory keeps tracking ready for
the object's return.
"""
from __future__ import annotations

import logging
from typing import ClassVar

import cv2
import numpy as np

from mamakit.bundle import Bundle
from mamakit.errors import BundleError, ConfigError

from ..masks import check_prompt_inside
from ..providers import create_ort_session
from .base import Resizer, Session, check_frame

log = logging.getLogger(__name__)

GRAPHS = ("encoder", "prompt", "track", "memory")


class Sam2MatteSession(Session):
    """Promptable video matting with a SAM2-Matte bundle (``set_prompt`` before the first ``step``)."""

    kind: ClassVar[str] = "sam2-matte"
    needs_prompt: ClassVar[bool] = True

    def __init__(self, bundle: Bundle, provider: str = "auto", threads: int | None = None):
        super().__init__(bundle, provider, threads)
        meta = bundle.manifest.get("sam2")
        if not isinstance(meta, dict):
            raise BundleError(f"bundle {bundle.root} has no 'sam2' section; re-export it with `mamakit export onnx`")
        missing = [g for g in GRAPHS if g not in bundle.graphs]
        if missing:
            raise BundleError(f"SAM2-Matte bundle {bundle.root} lacks graphs {missing}; re-export it")
        try:
            self.size = int(meta["image_size"])
            self.n_mem = int(meta["max_memories"])
            self.n_ptr = int(meta["max_obj_ptrs"])
            self.max_points = int(meta["prompt_points"])
            fs, cm, c = int(meta["feat_size"]), int(meta["mem_dim"]), int(meta["hidden_dim"])
        except (KeyError, TypeError, ValueError) as exc:
            raise BundleError(f"bundle {bundle.root}: malformed 'sam2' section ({exc}); re-export it") from exc
        self.sessions = {}
        for g in GRAPHS:
            sess, name = create_ort_session(bundle.graph_path(g), provider=provider, threads=threads)
            self.sessions[g] = sess
            if g == "encoder":
                self.provider = name
        self._in = {g: [i.name for i in s.get_inputs()] for g, s in self.sessions.items()}
        self._out = {g: [o.name for o in s.get_outputs()] for g, s in self.sessions.items()}
        # buffers, allocated once
        self._image = np.zeros((1, 3, self.size, self.size), np.float32)
        self.mem = np.zeros((1, self.n_mem, cm, fs, fs), np.float32)
        self.mem_valid = np.zeros((1, self.n_mem), np.float32)
        self.ptr = np.zeros((1, self.n_ptr, c), np.float32)
        self.ptr_valid = np.zeros((1, self.n_ptr), np.float32)
        self.ptr_tdiff = np.concatenate([[0.0], np.arange(1, self.n_ptr)]).astype(np.float32)
        self._resizer: Resizer | None = None
        self._pending = None
        self._started = False
        self._age = 0
        self.last_obj_score = float("nan")

    # -- prompts ----------------------------------------------------------------------------------
    def set_prompt(self, *, points=None, labels=None, box=None) -> None:
        """Points ``[(x, y), ...]`` (labels 1 = object, 0 = background; default all 1) and/or a box
        ``(x0, y0, x1, y1)``, in source pixels; applied (and the memory restarted) at the next step."""
        pts = None if points is None else np.asarray(points, np.float32).reshape(-1, 2)
        if pts is not None and len(pts) == 0:
            pts = None
        if pts is not None:
            lbs = np.ones(len(pts), np.int32) if labels is None else np.asarray(labels).astype(np.int32).reshape(-1)
            if len(lbs) != len(pts):
                raise ConfigError(f"prompt has {len(pts)} points but {len(lbs)} labels")
            if not set(lbs.tolist()) <= {0, 1}:
                raise ConfigError(f"prompt point labels must be 1 (object) or 0 (background), got {sorted(set(lbs.tolist()))}")
            if not np.isfinite(pts).all():
                raise ConfigError("prompt points must be finite numbers")
        else:
            lbs = None
        bx = None
        if box is not None:
            bx = np.asarray(box, np.float32).reshape(-1)
            if bx.size != 4 or not np.isfinite(bx).all():
                raise ConfigError(f"a prompt box is X0,Y0,X1,Y1, got {bx.tolist()}")
            if bx[2] <= bx[0] or bx[3] <= bx[1]:
                raise ConfigError(f"prompt box {bx.tolist()} has zero area: give X0,Y0,X1,Y1 with X1 > X0 and Y1 > Y0")
        if pts is None and bx is None:
            raise ConfigError("a SAM2-Matte prompt needs at least one point or a box")
        n = (0 if pts is None else len(pts)) + (0 if bx is None else 2)
        if n > self.max_points:
            raise ConfigError(f"this bundle takes at most {self.max_points} prompt points (a box counts as 2), got {n}")
        self._pending = (pts, lbs, bx)

    def _prompt_arrays(self, pts, lbs, bx, w: int, h: int):
        r = self._resizer
        coords, labels = [], []
        if bx is not None:
            x0, y0, x1, y1 = (float(v) for v in bx)
            x0, y0 = max(0.0, x0), max(0.0, y0)
            x1, y1 = min(float(w - 1), x1), min(float(h - 1), y1)
            coords += [r.to_proc_xy(x0, y0), r.to_proc_xy(x1, y1)]
            labels += [2, 3]
        if pts is not None:
            coords += [r.to_proc_xy(float(x), float(y)) for x, y in pts]
            labels += [int(v) for v in lbs]
        while len(coords) < self.max_points:
            coords.append((0.0, 0.0))
            labels.append(-1)
        return np.asarray([coords], np.float32), np.asarray([labels], np.int32)

    @staticmethod
    def prompt_from_mask(mask: np.ndarray):
        """A first-frame mask -> (points, labels, box): its bounding box and its most interior pixel."""
        hard = (np.asarray(mask, np.float32) > 0.5).astype(np.uint8)
        if not hard.any():
            raise ConfigError("the first-frame mask is empty: it cannot prompt SAM2-Matte (give --prompt instead)")
        ys, xs = np.nonzero(hard)
        dist = cv2.distanceTransform(np.pad(hard, 1), cv2.DIST_L2, 3)[1:-1, 1:-1]
        y, x = np.unravel_index(int(np.argmax(dist)), dist.shape)
        box = np.array([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1], np.float32)
        return np.array([[x, y]], np.float32), np.array([1], np.int32), box

    # -- frames -----------------------------------------------------------------------------------
    def _run(self, graph: str, feeds: dict) -> dict:
        res = self.sessions[graph].run(None, {k: feeds[k] for k in self._in[graph]})
        return dict(zip(self._out[graph], res))

    def step(self, frame: np.ndarray, mask: np.ndarray | None = None) -> np.ndarray:
        frame = check_frame(frame)
        h, w = frame.shape[:2]
        if self._resizer is None or self._resizer.src_size != (w, h):
            self._resizer = Resizer((w, h), (self.size, self.size), fit="stretch")
        pending, self._pending = self._pending, None
        if pending is None and not self._started and mask is not None:
            m = np.asarray(mask, np.float32)
            if m.shape != (h, w):
                m = cv2.resize(m, (w, h), interpolation=cv2.INTER_LINEAR)
            pending = self.prompt_from_mask(m)
        if pending is None and not self._started:
            raise ConfigError("a SAM2-Matte bundle needs a prompt before the first frame: pass --prompt X,Y or "
                              "--prompt box=X0,Y0,X1,Y1 (source pixels), or a first-frame mask")
        img = self._resizer.image(frame)
        np.multiply(img.transpose(2, 0, 1)[None], np.float32(1.0 / 255.0), out=self._image, casting="unsafe")
        enc = self._run("encoder", {"image": self._image})
        feeds = {"feat": enc["feat"], "high0": enc["high0"], "high1": enc["high1"], "image": self._image}
        if pending is not None:
            pts, lbs, bx = pending
            check_prompt_inside(pts, bx, (w, h), what="prompt")
            points, labels = self._prompt_arrays(pts, lbs, bx, w, h)
            head = self._run("prompt", {**feeds, "points": points, "labels": labels})
            self._clear()
            is_prompt = True
        else:
            self._age += 1
            self.ptr_tdiff[0] = float(self._age)
            head = self._run("track", {**feeds, "mem": self.mem, "mem_valid": self.mem_valid, "ptr": self.ptr,
                                       "ptr_tdiff": self.ptr_tdiff, "ptr_valid": self.ptr_valid})
            is_prompt = False
        mem = self._run("memory", {"feat": enc["feat"], "mask_hr": head["mask_hr"], "obj_score": head["obj_score"]})
        self._remember(mem["mem"], head["obj_ptr"], is_prompt)
        self._started = True
        self.last_obj_score = float(head["obj_score"].reshape(-1)[0])
        return self._resizer.back(head["alpha"][0, 0], out=np.empty((h, w), np.float32))

    # -- the bank ---------------------------------------------------------------------------------
    def _clear(self) -> None:
        self.mem.fill(0)
        self.mem_valid.fill(0)
        self.ptr.fill(0)
        self.ptr_valid.fill(0)
        self._age = 0

    def _remember(self, mem: np.ndarray, ptr: np.ndarray, is_prompt: bool) -> None:
        if is_prompt:
            self.mem[0, 0], self.mem_valid[0, 0] = mem[0], 1.0
            self.ptr[0, 0], self.ptr_valid[0, 0] = ptr[0], 1.0
            return
        if self.n_mem > 1:  # shift recent memories one slot older (the oldest falls out)
            self.mem[0, 2:] = self.mem[0, 1:-1]
            self.mem_valid[0, 2:] = self.mem_valid[0, 1:-1]
            self.mem[0, 1], self.mem_valid[0, 1] = mem[0], 1.0
        if self.n_ptr > 1:
            self.ptr[0, 2:] = self.ptr[0, 1:-1]
            self.ptr_valid[0, 2:] = self.ptr_valid[0, 1:-1]
            self.ptr[0, 1], self.ptr_valid[0, 1] = ptr[0], 1.0

    @property
    def memories(self) -> int:
        return int(self.mem_valid.sum())

    def reset(self) -> None:
        self._clear()
        self._started = False
        self._pending = None

    def close(self) -> None:
        self.sessions.clear()
