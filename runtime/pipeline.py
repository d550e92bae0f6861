"""The streaming pipeline: decode → pre-process → infer → post-process/composite → (caller) encode.

Each stage runs in its own thread and hands frames on through bounded queues; the last stage
(writing, display) is the caller's loop, so signals and sinks stay in the main thread.

* **offline** (files, folders): every frame, in order; the queues apply back-pressure.
* **live** (webcams, streams): the decoder always keeps only the newest frame (older ones are
  dropped and counted), so latency never builds up.

Buffers are reused: a fixed pool of :class:`~mamakit.runtime.sessions.student.Slot` objects
(network input/output tensors + the source-size alpha) circulates; a result handed to the
caller stays valid until the caller asks for the next one (copy it to keep it).

An exception in any stage stops the others and is raised again in the caller's thread; a source
that fails mid-stream (:class:`~mamakit.errors.StreamError`) is raised after every frame decoded
before the failure has been delivered.
"""
from __future__ import annotations

import collections
import logging
import queue
import threading
import time
from dataclasses import dataclass, field
from typing import Callable, Iterable, Iterator

import cv2
import numpy as np

log = logging.getLogger(__name__)

_END = object()
STAGES = ("decode", "pre", "infer", "post", "sink")


@dataclass
class Result:
    """One processed frame. Arrays are reused buffers: valid until the next result is requested."""

    index: int
    name: str | None
    frame: np.ndarray            # HxWx3 uint8 RGB, source size
    alpha: np.ndarray            # HxW float32 0..1, source size, pixel-aligned with ``frame``
    fgr: np.ndarray | None = None        # HxWx3 float32 0..1 (the student's own foreground) if requested
    composite: np.ndarray | None = None  # HxWx3 uint8 if a compositor was given
    t_capture: float = 0.0
    reset: bool = False          # state was reset before this frame (start, scene cut, size change)


class Stats:
    """Per-stage times, end-to-end latency and throughput of one run."""

    #: latency percentiles are computed over the most recent frames (bounded memory on endless streams)
    WINDOW = 20_000

    def __init__(self):
        self._sum: dict[str, float] = {s: 0.0 for s in STAGES}
        self._n: dict[str, int] = {s: 0 for s in STAGES}
        self.latency: collections.deque[float] = collections.deque(maxlen=self.WINDOW)
        self.frames = 0
        self.dropped = 0
        self.resets = 0
        self.t_start = time.perf_counter()   # pipeline start (after the session is loaded)
        self.t_first: float | None = None    # first frame decoded
        self.t_end: float | None = None
        self.startup_s: float | None = None
        self.extra: dict = {}
        self._lock = threading.Lock()

    def add(self, stage: str, dt: float) -> None:
        self._sum[stage] += dt
        self._n[stage] += 1

    @staticmethod
    def _pct(values, q: float) -> float:
        values = list(values)
        return float(np.percentile(values, q) * 1e3) if values else float("nan")

    def to_dict(self) -> dict:
        end = self.t_end or time.perf_counter()
        wall = end - (self.t_first or self.t_start)
        stage_ms = {s: (self._sum[s] / self._n[s] * 1e3 if self._n[s] else 0.0) for s in STAGES}
        frame_ms = wall / self.frames * 1e3 if self.frames else float("nan")
        d = {
            "frames": self.frames,
            "dropped": self.dropped,
            "resets": self.resets,
            "wall_s": round(wall, 4),
            "fps": round(self.frames / wall, 3) if wall > 0 and self.frames else 0.0,
            "frame_ms": round(frame_ms, 3),
            "stage_ms": {k: round(v, 3) for k, v in stage_ms.items()},
            "stage_sum_ms": round(sum(stage_ms.values()), 3),
            "latency_ms": {"p50": round(self._pct(self.latency, 50), 3), "p95": round(self._pct(self.latency, 95), 3),
                           "p99": round(self._pct(self.latency, 99), 3)},
        }
        if self.startup_s is not None:
            d["startup_s"] = round(self.startup_s, 3)
        d.update(self.extra)
        return d

    def summary(self) -> str:
        d = self.to_dict()
        st = d["stage_ms"]
        lat = d["latency_ms"]
        lines = [
            f"frames {d['frames']} ({d['dropped']} dropped, {d['resets']} state resets) in {d['wall_s']:.2f} s: "
            f"{d['fps']:.2f} FPS ({d['frame_ms']:.1f} ms/frame)",
            "stage ms/frame: " + "  ".join(f"{k} {v:.1f}" for k, v in st.items()) + f"  (sum {d['stage_sum_ms']:.1f})",
            f"latency ms: p50 {lat['p50']:.1f}  p95 {lat['p95']:.1f}  p99 {lat['p99']:.1f}",
        ]
        return "\n".join(lines)


class _Latest:
    """A one-item mailbox that keeps only the newest item (live mode). A replaced item is handed to
    ``on_drop(old, new)`` (to recycle its buffers and carry a pending state reset over)."""

    def __init__(self, on_drop=None):
        self._cv = threading.Condition()
        self._item = None
        self._has = False
        self.dropped = 0
        self.on_drop = on_drop

    def put(self, item, stop: threading.Event) -> bool:
        with self._cv:
            if self._has:
                if self._item is _END:  # the end is never replaced
                    return True
                self.dropped += 1
                if self.on_drop is not None:
                    self.on_drop(self._item, item)
            self._item, self._has = item, True
            self._cv.notify()
        return True

    def get(self, stop: threading.Event):
        with self._cv:
            while not self._has:
                if stop.is_set():
                    return _END
                self._cv.wait(0.05)
            item, self._item, self._has = self._item, None, False
            return item


class _Queue:
    """A bounded FIFO with back-pressure (offline mode); same interface as :class:`_Latest`."""

    dropped = 0

    def __init__(self, size: int):
        self._q = queue.Queue(size)

    def put(self, item, stop: threading.Event) -> bool:
        return _put(self._q, item, stop)

    def get(self, stop: threading.Event):
        return _get(self._q, stop)


def _put(q: queue.Queue, item, stop: threading.Event) -> bool:
    while not stop.is_set():
        try:
            q.put(item, timeout=0.05)
            return True
        except queue.Full:
            continue
    return False


def _get(q: queue.Queue, stop: threading.Event):
    while True:
        try:
            return q.get(timeout=0.05)
        except queue.Empty:
            if stop.is_set():
                return _END


class SceneCutDetector:
    """A cut when the mean absolute difference of 32x18 grey thumbnails exceeds ``threshold`` (0..1)."""

    def __init__(self, threshold: float = 0.25):
        self.threshold = float(threshold)
        self._prev: np.ndarray | None = None

    def __call__(self, frame: np.ndarray) -> bool:
        if self.threshold <= 0:
            return False
        g = cv2.cvtColor(cv2.resize(frame, (32, 18), interpolation=cv2.INTER_AREA), cv2.COLOR_RGB2GRAY)
        g = g.astype(np.float32) * (1 / 255.0)
        prev, self._prev = self._prev, g
        return prev is not None and float(np.abs(g - prev).mean()) > self.threshold

    def reset(self):
        self._prev = None


@dataclass
class _Work:
    index: int
    name: str | None
    frame: np.ndarray
    t_capture: float
    slot: object = None
    mask: np.ndarray | None = None
    reset: bool = False
    alpha: np.ndarray | None = None
    fgr: np.ndarray | None = None
    composite: np.ndarray | None = None
    bufs: dict = field(default_factory=dict)
    has_slot: bool = False


class Pipeline:
    """Runs a :class:`~mamakit.runtime.matter.Matter` over a frame source in threads.

    ``post`` (optional) is called in the post-process thread as ``post(result) -> None`` and may
    fill ``result.composite``; ``want_fgr`` asks for the student's own foreground colour.
    """

    def __init__(self, matter, source: Iterable, masks=None, *, live: bool = False, queue_size: int = 2,
                 post: Callable | None = None, want_fgr: bool = False, stats: Stats | None = None):
        self.matter = matter
        self.source = source
        self.masks = masks
        self.live = live
        self.post = post
        self.want_fgr = want_fgr
        self.stats = stats or Stats()
        self.stop_event = threading.Event()
        self._errors: list[BaseException] = []
        self._deferred: BaseException | None = None
        qs = 1 if live else max(1, queue_size)
        # live: every hand-off keeps only the newest frame, so latency stays ~ the sum of the stage
        # times instead of growing with the pipeline depth; offline: bounded FIFOs, every frame
        self.q_decode, self.q_pre, self.q_infer, self.q_out = (
            (_Latest(self._dropped) for _ in range(4)) if live else (_Queue(qs) for _ in range(4)))
        split = hasattr(matter.session, "prepare")
        self.split = split
        # slots in flight: one per stage + queue capacities + the one the caller holds
        n_slots = 3 * qs + 5
        self.free: queue.Queue = queue.Queue()
        if split:
            for _ in range(n_slots):
                self.free.put(matter.session.new_slot())
        else:
            for _ in range(n_slots):
                self.free.put(None)
        self._threads: list[threading.Thread] = []
        self._started = False

    # -- live-mode drops ---------------------------------------------------------------------------
    def _dropped(self, old, new) -> None:
        """A newer item replaced ``old`` in a live hand-off: recycle its slot, keep its reset."""
        if isinstance(old, tuple):  # (Result, slot) on its way to the caller
            w_old, slot = old
            self.free.put(slot)
        else:
            w_old = old
            if old.has_slot:
                self.free.put(old.slot)
        if getattr(w_old, "reset", False) and new is not _END:
            w_new, s_new = new if isinstance(new, tuple) else (new, new.slot)
            w_new.reset = True
            if s_new is not None and hasattr(s_new, "reset"):
                s_new.reset = True

    def _n_dropped(self) -> int:
        return sum(q.dropped for q in (self.q_decode, self.q_pre, self.q_infer, self.q_out))

    # -- stage bodies ----------------------------------------------------------------------------
    def _run(self, name: str, fn: Callable[[], None]) -> None:
        try:
            fn()
        except BaseException as exc:  # noqa: BLE001 - re-raised in the caller's thread
            self._errors.append(exc)
            self.stop_event.set()

    def _decode(self) -> None:
        from mamakit.errors import StreamError

        stop = self.stop_event
        it = iter(self.source)
        i = 0
        try:
            while not stop.is_set():
                t0 = time.perf_counter()
                try:
                    fr = next(it)
                except StopIteration:
                    break
                except StreamError as exc:
                    self._deferred = exc
                    break
                t1 = time.perf_counter()
                if self.stats.t_first is None:
                    self.stats.t_first = t0
                self.stats.add("decode", t1 - t0)
                if isinstance(fr, np.ndarray):
                    idx, name, img = i, None, fr
                else:
                    idx, name, img = getattr(fr, "index", i), getattr(fr, "name", None), fr.image
                i += 1
                w = _Work(idx, name, img, t1)
                if not self.q_decode.put(w, stop):
                    return
        finally:
            self.q_decode.put(_END, stop)

    def _pre(self) -> None:
        stop, m = self.stop_event, self.matter
        size = None
        while True:
            w = self.q_decode.get(stop)
            if w is _END:
                self.q_pre.put(_END, stop)
                return
            t0 = time.perf_counter()
            fsize = (w.frame.shape[1], w.frame.shape[0])
            cut = m.scene_cut(w.frame)
            w.reset = cut or (size is not None and fsize != size) or size is None
            if w.reset and size is not None:
                log.info("frame %s: %s; state reset", w.index,
                         "scene cut" if cut else f"resolution changed {size[0]}x{size[1]} -> {fsize[0]}x{fsize[1]}")
                if self.masks is not None and fsize != size:
                    self.masks.reset()
            size = fsize
            if self.masks is not None:
                w.mask = self.masks.get(w.index, w.name, w.frame)
            w.slot = _get(self.free, stop)
            if w.slot is _END:
                return
            w.has_slot = True
            if self.split:
                m.session.prepare(w.frame, w.mask, w.slot)
                w.slot.reset = w.reset
            self.stats.add("pre", time.perf_counter() - t0)
            if not self.q_pre.put(w, stop):
                return

    def _infer(self) -> None:
        stop, m = self.stop_event, self.matter
        while True:
            w = self.q_pre.get(stop)
            if w is _END:
                self.q_infer.put(_END, stop)
                return
            t0 = time.perf_counter()
            if w.reset:
                self.stats.resets += 1
            if self.split:
                m.session.infer(w.slot)
            else:
                if w.reset:
                    m.session.reset()
                    if m.session.needs_prompt and m._prompted:
                        log.warning("frame %s: the tracked object is lost after the reset; prompt again", w.index)
                        m._prompted = False
                if m.apply_prompt(w.index, w.mask is not None):
                    w.alpha = m.session.step(w.frame, w.mask)
                else:  # a prompted model before its prompt: nothing is selected yet
                    w.alpha = np.zeros(w.frame.shape[:2], np.float32)
            self.stats.add("infer", time.perf_counter() - t0)
            if not self.q_infer.put(w, stop):
                return

    def _post(self) -> None:
        stop, m = self.stop_event, self.matter
        while True:
            w = self.q_infer.get(stop)
            if w is _END:
                self.q_out.put(_END, stop)
                return
            t0 = time.perf_counter()
            h, wd = w.frame.shape[:2]
            bufs = w.slot.extra if self.split else w.bufs
            if self.split:
                a = bufs.get("alpha")
                if a is None or a.shape != (h, wd):
                    a = bufs["alpha"] = np.empty((h, wd), np.float32)
                w.alpha = m.session.finish(w.slot, out=a)
                if self.want_fgr:
                    f = bufs.get("fgr")
                    if f is None or f.shape != (h, wd, 3):
                        f = bufs["fgr"] = np.empty((h, wd, 3), np.float32)
                    w.fgr = m.session.foreground(w.slot, out=f)
            if m.smoother is not None:
                if w.reset:
                    m.smoother.reset()
                w.alpha = m.smoother(w.alpha)
            res = Result(w.index, w.name, w.frame, w.alpha, w.fgr, None, w.t_capture, w.reset)
            if self.post is not None:
                self.post(res)
            res_slot = (res, w.slot)
            self.stats.add("post", time.perf_counter() - t0)
            if not self.q_out.put(res_slot, stop):
                return

    # -- driving ---------------------------------------------------------------------------------
    def start(self) -> "Pipeline":
        if self._started:
            return self
        self._started = True
        for name, fn in (("decode", self._decode), ("pre", self._pre), ("infer", self._infer), ("post", self._post)):
            t = threading.Thread(target=self._run, args=(name, fn), name=f"mamakit-{name}", daemon=True)
            t.start()
            self._threads.append(t)
        return self

    def _raise(self) -> None:
        if self._errors:
            raise self._errors[0]

    def __iter__(self) -> Iterator[Result]:
        self.start()
        held = None
        try:
            while True:
                if held is not None:  # the caller is back: it has finished with the held result
                    now = time.perf_counter()
                    res, slot = held
                    self.stats.add("sink", now - self._t_yield)
                    self.stats.latency.append(now - res.t_capture)
                    self.stats.frames += 1
                    self.free.put(slot)
                    held = None
                item = self.q_out.get(self.stop_event)
                if item is _END:
                    self._raise()
                    break
                held = item
                self._t_yield = time.perf_counter()
                yield item[0]
            self.stats.t_end = time.perf_counter()
            self.stats.dropped = self._n_dropped()
            if self._deferred is not None:
                raise self._deferred
        finally:
            if held is not None:  # the caller stopped after handling this one (break / Ctrl-C)
                now = time.perf_counter()
                self.stats.add("sink", now - self._t_yield)
                self.stats.latency.append(now - held[0].t_capture)
                self.stats.frames += 1
                self.free.put(held[1])
            self.stats.t_end = self.stats.t_end or time.perf_counter()
            self.stats.dropped = self._n_dropped()
            self.close()

    def close(self, timeout: float = 5.0) -> None:
        self.stop_event.set()
        for t in self._threads:
            t.join(timeout)
        self._threads.clear()
