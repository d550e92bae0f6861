"""The student session: ``main(src, guide, r*i) -> (pha, fgr, r*o)`` with explicit recurrent state.

The step is split in three so the streaming pipeline can run them in different threads:
:meth:`StudentSession.prepare` (resize + normalise into a reusable :class:`Slot`),
:meth:`StudentSession.infer` (the graph call; picks the guide and carries the state) and
:meth:`StudentSession.finish` (alpha back at the source size). :meth:`step` does all three.

Backends: ONNX Runtime with I/O binding (state tensors ping-pong between two pre-allocated sets
that stay on the device for CUDA/TensorRT providers; outputs are written straight into reused
host buffers), or a native TensorRT / TensorRT-RTX engine from the bundle
(:mod:`mamakit.runtime.sessions.tensorrt`).
"""
from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from mamakit.bundle import Bundle
from mamakit.errors import BundleError

from ..providers import ENGINE_PROVIDERS, create_ort_session, is_cuda_provider, normalise
from .base import Resizer, Session, check_frame

log = logging.getLogger(__name__)

_DTYPES = {"float32": np.float32, "float16": np.float16, "float": np.float32, "half": np.float16}


def _np_dtype(name: str):
    try:
        return _DTYPES[str(name).lower()]
    except KeyError as exc:
        raise BundleError(f"bundle tensor dtype {name!r} is not supported by the runtime (float32/float16)") from exc


def _static(shape, fill: dict[int, int] | None = None) -> tuple[int, ...]:
    """Replace symbolic dims (strings / None / -1) with 1 (batch) or ``fill[axis]``."""
    out = []
    for i, d in enumerate(shape):
        if isinstance(d, int) and d > 0:
            out.append(d)
        else:
            out.append((fill or {}).get(i, 1))
    return tuple(out)


@dataclass
class Slot:
    """Reusable buffers for one frame in flight (allocated once per pipeline slot)."""

    src: np.ndarray                      # [1,3,H,W] graph dtype, 0..1
    mask: np.ndarray                     # [1,1,H,W] graph dtype, 0..1 (valid when has_mask)
    pha: np.ndarray                      # [1,1,H,W] float32 output
    fgr: np.ndarray                      # [1,3,H,W] float32 output
    has_mask: bool = False
    reset: bool = False
    resizer: Resizer | None = None
    extra: dict = field(default_factory=dict)


class OrtBackend:
    """ONNX Runtime with I/O binding and ping-pong state buffers."""

    def __init__(self, bundle: Bundle, provider: str, threads: int | None, spin: bool):
        cache = str(Path.home() / ".cache" / "mamakit" / "trt") if provider in ("auto", "tensorrt", "rtx") else None
        self.sess, self.provider = create_ort_session(bundle.graph_path("main"), provider, threads, spin=spin,
                                                      cache_dir=cache)
        import onnxruntime as ort

        self._ort = ort
        names_in = {i.name for i in self.sess.get_inputs()}
        names_out = {o.name for o in self.sess.get_outputs()}
        w, h = bundle.processing_size
        specs = {s.name: s for s in bundle.inputs("main")}
        self.in_dtype = _np_dtype(specs["src"].dtype) if "src" in specs else np.float32
        for need in ("src", "guide"):
            if need not in names_in:
                raise BundleError(f"bundle graph {bundle.graph_path('main')} has no input {need!r} "
                                  f"(has {sorted(names_in)}); it is not a student bundle")
        for need in ("pha",):
            if need not in names_out:
                raise BundleError(f"bundle graph {bundle.graph_path('main')} has no output {need!r}")
        self.has_fgr = "fgr" in names_out
        self.state = bundle.state("main")
        for st in self.state:
            if st.input not in names_in or st.output not in names_out:
                raise BundleError(f"bundle state {st.input}->{st.output} is not in graph "
                                  f"{bundle.graph_path('main')}; re-export the bundle")
        self.device = "cuda" if is_cuda_provider(self.provider) else "cpu"
        self.shape = (h, w)
        # two state sets; binding[k] reads set k and writes set 1-k
        self._states = [[self._zeros(_static(st.shape), _np_dtype(st.dtype)) for st in self.state] for _ in range(2)]
        if self.device != "cpu":
            self._src_dev = self._ort.OrtValue.ortvalue_from_shape_and_type((1, 3, h, w), self.in_dtype, "cuda", 0)
            self._guide_dev = self._ort.OrtValue.ortvalue_from_shape_and_type((1, 1, h, w), self.in_dtype, "cuda", 0)
        self._bindings = []
        for k in range(2):
            b = self.sess.io_binding()
            for st, cur, nxt in zip(self.state, self._states[k], self._states[1 - k]):
                b.bind_ortvalue_input(st.input, cur)
                b.bind_ortvalue_output(st.output, nxt)
            if self.device != "cpu":
                b.bind_ortvalue_input("src", self._src_dev)
                b.bind_ortvalue_input("guide", self._guide_dev)
            self._bindings.append(b)
        self._k = 0
        self._fgr_scratch = np.zeros((1, 3, h, w), np.float32)

    def _zeros(self, shape, dtype):
        if self.device == "cpu":
            return self._ort.OrtValue.ortvalue_from_numpy(np.zeros(shape, dtype))
        v = self._ort.OrtValue.ortvalue_from_shape_and_type(shape, dtype, "cuda", 0)
        v.update_inplace(np.zeros(shape, dtype))
        return v

    def reset(self) -> None:
        for vals in self._states:
            for v in vals:
                v.update_inplace(np.zeros(v.shape(), np.float16 if "16" in v.data_type() else np.float32))
        self._k = 0

    def get_state(self, i: int) -> np.ndarray:
        """State ``i`` as the next run will read it (a host copy)."""
        return np.asarray(self._states[self._k][i].numpy())

    def set_state(self, i: int, value: np.ndarray) -> None:
        v = self._states[self._k][i]
        v.update_inplace(np.ascontiguousarray(value, np.float16 if "16" in v.data_type() else np.float32))

    def run(self, src: np.ndarray, guide: np.ndarray, pha_out: np.ndarray, fgr_out: np.ndarray | None) -> None:
        b = self._bindings[self._k]
        if self.device == "cpu":
            b.bind_cpu_input("src", src)
            b.bind_cpu_input("guide", guide)
        else:
            self._src_dev.update_inplace(src)
            self._guide_dev.update_inplace(guide)
        b.bind_output("pha", "cpu", 0, np.float32, list(pha_out.shape), pha_out.ctypes.data)
        if self.has_fgr:
            f = fgr_out if fgr_out is not None else self._fgr_scratch
            b.bind_output("fgr", "cpu", 0, np.float32, list(f.shape), f.ctypes.data)
        self.sess.run_with_iobinding(b)
        self._k = 1 - self._k

    def close(self) -> None:
        self._bindings.clear()
        self.sess = None


class StudentSession(Session):
    """A student bundle: recurrent matting guided by a mask or by its own previous alpha."""

    kind = "student"
    needs_prompt = False

    def __init__(self, bundle: Bundle, provider: str = "auto", threads: int | None = None, *,
                 fit: str = "letterbox", spin: bool = True, want_fgr: bool = True, stabilize: bool = True):
        super().__init__(bundle, provider, threads)
        if bundle.kind != self.kind:
            raise BundleError(f"bundle {bundle.root} is a {bundle.kind!r} bundle, not a student bundle")
        self.fit = fit
        requested = normalise(provider)
        self.backend = None
        if requested in ENGINE_PROVIDERS or (requested == "auto" and bundle.engines):
            from .tensorrt import EngineBackend, pick_engine

            engine = pick_engine(bundle, requested)
            if engine is not None:
                self.backend = EngineBackend(bundle, engine)
        if self.backend is None:
            self.backend = OrtBackend(bundle, "auto" if requested in ENGINE_PROVIDERS else requested, threads, spin)
        self.provider = self.backend.provider
        w, h = bundle.processing_size
        self._dtype = self.backend.in_dtype
        self.want_fgr = want_fgr and self.backend.has_fgr
        self._prev = np.zeros((1, 1, h, w), self._dtype)  # previous alpha, the guide when no mask
        self._slot = self.new_slot()
        self._resizers: dict[tuple[int, int], Resizer] = {}
        self._size: tuple[int, int] | None = None
        self._fgr_src: np.ndarray | None = None
        # states the runtime moves with the image between frames (the stabiliser: mamakit.stabilize)
        self._flows = {}
        #: flow-carried states switched off (stabilize=False): zeroed before every frame (weight 0)
        self._zeroed = {i: np.zeros(_static(st.shape), np.float32) for i, st in enumerate(self.backend.state)
                        if st.carry == "flow" and not stabilize}
        for i, st in enumerate(self.backend.state):
            if st.carry == "flow" and stabilize:
                from mamakit.stabilize import FlowCarry, FlowParams

                shape = _static(st.shape)
                self._flows[i] = FlowCarry((w, h), (shape[-1], shape[-2]), FlowParams.from_dict(st.carry_params))
        # the motion is computed ahead in prepare (the pipeline's pre-processing thread) from the frame
        # prepared before; infer uses it when that frame is the one it ran last (else computes it)
        self._ahead = {i: [fc.new_flow(), None] for i, fc in self._flows.items()}
        self._ahead_lock = threading.Lock()  # prepare may be called from more than one thread

    # -- buffers -------------------------------------------------------------------------
    def new_slot(self) -> Slot:
        w, h = self.bundle.processing_size
        return Slot(src=np.zeros((1, 3, h, w), self._dtype), mask=np.zeros((1, 1, h, w), self._dtype),
                    pha=np.zeros((1, 1, h, w), np.float32), fgr=np.zeros((1, 3, h, w), np.float32))

    def resizer(self, size: tuple[int, int]) -> Resizer:
        r = self._resizers.get(size)
        if r is None:
            if len(self._resizers) > 8:
                self._resizers.clear()
            r = self._resizers[size] = Resizer(size, self.bundle.processing_size, self.fit)
        return r

    # -- the three stages ----------------------------------------------------------------
    def prepare(self, frame: np.ndarray, mask: np.ndarray | None, slot: Slot) -> Slot:
        """Resize + normalise ``frame`` (and ``mask``) into ``slot`` (thread-safe per slot)."""
        frame = check_frame(frame)
        size = (frame.shape[1], frame.shape[0])
        r = self.resizer(size)
        img = r.image(frame)
        for i, fc in self._flows.items():  # the stabiliser's look at this frame, and the motion ahead
            feat = fc.features(img)
            with self._ahead_lock:
                dis, last = self._ahead[i]
                slot.extra[("flow", i)] = feat
                slot.extra[("motion", i)] = fc.motion(last, feat, dis) if last is not None else None
                self._ahead[i][1] = feat
        # HWC uint8 -> CHW float 0..1 without temporaries
        np.multiply(img.transpose(2, 0, 1), np.float32(1.0 / 255.0), out=slot.src[0], casting="unsafe")
        if mask is not None:
            m = r.mask(mask)
            np.copyto(slot.mask[0, 0], m, casting="unsafe")
            slot.has_mask = True
        else:
            slot.has_mask = False
        slot.resizer = r
        return slot

    def infer(self, slot: Slot) -> Slot:
        """Run the graph on a prepared slot; carries the state; must be called in frame order."""
        size = slot.resizer.src_size if slot.resizer is not None else None
        if slot.reset or (self._size is not None and size != self._size):
            self.reset()
        self._size = size
        guide = slot.mask if slot.has_mask else self._prev
        for i, zeros in self._zeroed.items():
            self.backend.set_state(i, zeros)
        for i, fc in self._flows.items():
            self.backend.set_state(i, fc.carry(slot.extra[("flow", i)], self.backend.get_state(i),
                                               slot.extra.get(("motion", i))))
        self.backend.run(slot.src, guide, slot.pha, slot.fgr if self.want_fgr else None)
        np.copyto(self._prev, slot.pha, casting="unsafe")
        if slot.resizer is not None and slot.resizer.padded:
            # keep padding out of the next guide
            r = slot.resizer
            pad = np.ones(self._prev.shape[2:], bool)
            pad[r.oy:r.oy + r.rh, r.ox:r.ox + r.rw] = False
            self._prev[0, 0][pad] = 0
        return slot

    def finish(self, slot: Slot, out: np.ndarray | None = None) -> np.ndarray:
        """The slot's alpha at its source size (float32 HxW, 0..1)."""
        return slot.resizer.back(slot.pha[0, 0], out=out)

    def foreground(self, slot: Slot, out: np.ndarray | None = None) -> np.ndarray | None:
        """The student's foreground colour at source size (HxWx3 float32 0..1), or None."""
        if not self.want_fgr:
            return None
        import cv2

        r = slot.resizer
        f = slot.fgr[0].transpose(1, 2, 0)[r.oy:r.oy + r.rh, r.ox:r.ox + r.rw]
        res = cv2.resize(np.ascontiguousarray(f), r.src_size, interpolation=cv2.INTER_LINEAR)
        if out is not None:
            np.copyto(out, res)
            res = out
        return np.clip(res, 0, 1, out=res)

    # -- Session API ---------------------------------------------------------------------
    def step(self, frame: np.ndarray, mask: np.ndarray | None = None) -> np.ndarray:
        slot = self.prepare(frame, mask, self._slot)
        slot.reset = False
        self.infer(slot)
        return self.finish(slot, out=np.empty((frame.shape[0], frame.shape[1]), np.float32))

    @property
    def last_fgr(self) -> np.ndarray | None:
        return self.foreground(self._slot) if self._slot.resizer is not None else None

    def reset(self) -> None:
        self.backend.reset()
        self._prev[...] = 0
        for fc in self._flows.values():
            fc.reset()

    def close(self) -> None:
        if self.backend is not None:
            self.backend.close()

