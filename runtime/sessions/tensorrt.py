"""Native TensorRT / TensorRT-RTX engines, torch-free: device buffers through cuda-python.

An engine in the bundle is listed in ``manifest["engines"]`` (written by ``mamakit export trt``)
with the graph it replaces, its file, the TensorRT flavour and version and the GPU it was built
for. An engine only runs with the same TensorRT version on the same GPU (compute capability);
anything else is refused with a message saying to rebuild, never silently mis-run.

Recurrent state stays on the GPU: two device buffer sets whose addresses swap every frame;
only ``src``/``guide`` go up and ``pha``/``fgr`` come down, on one CUDA stream.
"""
from __future__ import annotations

import importlib
import logging

import numpy as np

from mamakit.bundle import Bundle
from mamakit.errors import BundleError, DependencyError

from ..providers import warn_once

log = logging.getLogger(__name__)

#: engine flavour -> (python module, provider short name)
FLAVOURS = {"tensorrt": ("tensorrt", "trt-engine"), "tensorrt-rtx": ("tensorrt_rtx", "rtx-engine")}


def _flavour(entry: dict) -> str:
    f = str(entry.get("backend") or entry.get("flavour") or entry.get("runtime") or "tensorrt").lower()
    f = f.replace("_", "-")
    return "tensorrt-rtx" if "rtx" in f else "tensorrt"


def _cudart():
    try:
        from cuda.bindings import runtime as cudart  # cuda-python >= 12.6
    except ImportError:
        try:
            from cuda import cudart  # older cuda-python
        except ImportError as exc:
            raise DependencyError("cuda-python is not installed for TensorRT engines: install it with "
                                  "`pip install \"mamakit[trt]\"` (or `mamakit[rtx]`)") from exc
    return cudart


def _check(ret):
    err, *rest = ret if isinstance(ret, tuple) else (ret,)
    code = int(getattr(err, "value", err))
    if code != 0:
        raise RuntimeError(f"CUDA call failed with error {err}")
    return rest[0] if len(rest) == 1 else (rest or None)


def gpu_info() -> dict | None:
    """``{"name", "compute_capability"}`` of device 0, or None when there is no usable CUDA GPU."""
    try:
        cudart = _cudart()
        n = _check(cudart.cudaGetDeviceCount())
        if not n:
            return None
        props = _check(cudart.cudaGetDeviceProperties(0))
    except Exception:  # no driver, no device, no cuda-python: no GPU as far as we are concerned
        return None
    name = props.name.decode(errors="replace").rstrip("\x00") if isinstance(props.name, bytes) else str(props.name)
    return {"name": name, "compute_capability": f"{props.major}.{props.minor}"}


def _norm_cc(v) -> str | None:
    if v is None:
        return None
    if isinstance(v, (list, tuple)):
        return ".".join(str(int(x)) for x in v[:2])
    return str(v)


def check_compatible(entry: dict, trt_version: str, gpu: dict, root) -> None:
    """Refuse an engine built for another TensorRT version or GPU (BundleError, exit 2)."""
    built_ver = entry.get("trt_version") or entry.get("tensorrt_version") or entry.get("version")
    gpu_field = entry.get("gpu")
    built_cc = _norm_cc(entry.get("compute_capability") or entry.get("sm")
                        or (gpu_field.get("compute_capability") if isinstance(gpu_field, dict) else None))
    file = entry.get("file", "?")
    if built_ver and str(built_ver).split("+")[0] != str(trt_version).split("+")[0]:
        raise BundleError(f"engine {root}/{file} was built with TensorRT {built_ver} but TensorRT {trt_version} is "
                          f"installed: rebuild it here with `mamakit export trt --bundle {root}`")
    if built_cc and gpu and built_cc != gpu["compute_capability"]:
        raise BundleError(f"engine {root}/{file} was built for compute capability {built_cc} but this GPU "
                          f"({gpu['name']}) is {gpu['compute_capability']}: rebuild it here with "
                          f"`mamakit export trt --bundle {root}`")


def pick_engine(bundle: Bundle, requested: str, graph: str = "main") -> dict | None:
    """The engine entry to run, or None (then ONNX Runtime runs). Logs why an engine is not used
    when one was asked for; raises BundleError for an incompatible engine that was asked for."""
    want = {"trt-engine": "tensorrt", "rtx-engine": "tensorrt-rtx"}.get(requested)
    cands = [e for e in bundle.engines if e.get("graph", "main") == graph and (want is None or _flavour(e) == want)]
    if not cands:
        if want:
            warn_once(f"noengine:{requested}", f"provider {requested} requested but bundle {bundle.root} has no "
                                               f"{want} engine; falling back to ONNX Runtime")
        return None
    gpu = gpu_info()
    if gpu is None:
        if want:
            warn_once(f"nogpu:{requested}", f"provider {requested} needs a CUDA GPU and none is usable here; "
                                            "falling back to ONNX Runtime")
        return None
    for entry in cands:
        module = FLAVOURS[_flavour(entry)][0]
        try:
            trt = importlib.import_module(module)
        except ImportError:
            continue
        try:
            check_compatible(entry, trt.__version__, gpu, bundle.root)
        except BundleError:
            if want:
                raise
            log.info("not using engine %s (built elsewhere); ONNX Runtime runs instead", entry.get("file"))
            continue
        return entry
    if want:
        warn_once(f"nomodule:{requested}", f"provider {requested} needs the `{FLAVOURS[want][0]}` package "
                                           "(`pip install \"mamakit[trt]\"` / `mamakit[rtx]`); falling back to ONNX Runtime")
    return None


class EngineBackend:
    """Runs a student engine with TensorRT's ``execute_async_v3`` and cuda-python device buffers."""

    def __init__(self, bundle: Bundle, entry: dict):
        flavour = _flavour(entry)
        module, self.provider = FLAVOURS[flavour]
        trt = importlib.import_module(module)
        self._cudart = cudart = _cudart()
        path = bundle.path(entry["file"])
        self._logger = trt.Logger(trt.Logger.WARNING)
        runtime = trt.Runtime(self._logger)
        self.engine = runtime.deserialize_cuda_engine(path.read_bytes())
        if self.engine is None:
            raise BundleError(f"engine {path} could not be deserialised by {module} {trt.__version__}: "
                              f"rebuild it with `mamakit export trt --bundle {bundle.root}`")
        self.ctx = self.engine.create_execution_context()
        self.stream = _check(cudart.cudaStreamCreate())
        w, h = bundle.processing_size
        names = [self.engine.get_tensor_name(i) for i in range(self.engine.num_io_tensors)]
        self.in_dtype = np.float32  # fp16 engines get their inputs converted on the host (see run)
        self.has_fgr = "fgr" in names
        self.state = bundle.state("main")
        self._bufs: dict[str, tuple[int, int]] = {}  # name -> (ptr, nbytes)
        self._state_bufs = [[], []]

        def alloc(nbytes):
            ptr = _check(cudart.cudaMalloc(nbytes))
            _check(cudart.cudaMemsetAsync(ptr, 0, nbytes, self.stream))
            return int(ptr)

        for name in names:
            shape = tuple(max(1, int(d)) for d in self.engine.get_tensor_shape(name))
            if -1 in tuple(self.engine.get_tensor_shape(name)) and name in ("src", "guide"):
                shape = (1, 3 if name == "src" else 1, h, w)
                self.ctx.set_input_shape(name, shape)
            itemsize = 2 if "16" in str(self.engine.get_tensor_dtype(name)).lower() else 4
            nbytes = int(np.prod(shape)) * itemsize
            if any(name == s.input or name == s.output for s in self.state):
                continue
            self._bufs[name] = (alloc(nbytes), nbytes)
        for st in self.state:
            shape = tuple(max(1, int(d)) for d in self.engine.get_tensor_shape(st.input))
            itemsize = 2 if "16" in str(self.engine.get_tensor_dtype(st.input)).lower() else 4
            nbytes = int(np.prod(shape)) * itemsize
            for k in range(2):
                self._state_bufs[k].append((alloc(nbytes), nbytes))
        for name, (ptr, _) in self._bufs.items():
            self.ctx.set_tensor_address(name, ptr)
        self._k = 0
        # fp16 engines: inputs are converted on the host, outputs come down as half and are widened
        self._half_out = {n: np.zeros((1, 3 if n == "fgr" else 1, h, w), np.float16) for n in ("pha", "fgr")
                          if n in names and "16" in str(self.engine.get_tensor_dtype(n)).lower()}
        self._half_in = {n: np.zeros((1, 3 if n == "src" else 1, h, w), np.float16) for n in ("src", "guide")
                         if "16" in str(self.engine.get_tensor_dtype(n)).lower()}
        _check(cudart.cudaStreamSynchronize(self.stream))

    def reset(self) -> None:
        for bufs in self._state_bufs:
            for ptr, nbytes in bufs:
                _check(self._cudart.cudaMemsetAsync(ptr, 0, nbytes, self.stream))
        _check(self._cudart.cudaStreamSynchronize(self.stream))
        self._k = 0

    def _state_host(self, i: int) -> np.ndarray:
        st = self.state[i]
        dtype = np.float16 if "16" in str(self.engine.get_tensor_dtype(st.input)).lower() else np.float32
        shape = tuple(max(1, int(d)) for d in self.engine.get_tensor_shape(st.input))
        return np.zeros(shape, dtype)

    def get_state(self, i: int) -> np.ndarray:
        """State ``i`` as the next run will read it (copied to the host)."""
        c = self._cudart
        host = self._state_host(i)
        ptr, nbytes = self._state_bufs[self._k][i]
        _check(c.cudaMemcpyAsync(host.ctypes.data, ptr, min(nbytes, host.nbytes),
                                 c.cudaMemcpyKind.cudaMemcpyDeviceToHost, self.stream))
        _check(c.cudaStreamSynchronize(self.stream))
        return host

    def set_state(self, i: int, value: np.ndarray) -> None:
        c = self._cudart
        host = self._state_host(i)
        np.copyto(host, np.asarray(value).reshape(host.shape), casting="unsafe")
        ptr, nbytes = self._state_bufs[self._k][i]
        _check(c.cudaMemcpyAsync(ptr, host.ctypes.data, min(nbytes, host.nbytes),
                                 c.cudaMemcpyKind.cudaMemcpyHostToDevice, self.stream))
        _check(c.cudaStreamSynchronize(self.stream))

    def run(self, src: np.ndarray, guide: np.ndarray, pha_out: np.ndarray, fgr_out: np.ndarray | None) -> None:
        c = self._cudart
        h2d, d2h = c.cudaMemcpyKind.cudaMemcpyHostToDevice, c.cudaMemcpyKind.cudaMemcpyDeviceToHost
        for st, cur, nxt in zip(self.state, self._state_bufs[self._k], self._state_bufs[1 - self._k]):
            self.ctx.set_tensor_address(st.input, cur[0])
            self.ctx.set_tensor_address(st.output, nxt[0])
        for name, arr in (("src", src), ("guide", guide)):
            if name in self._half_in:
                np.copyto(self._half_in[name], arr, casting="unsafe")
                arr = self._half_in[name]
            ptr, nbytes = self._bufs[name]
            _check(c.cudaMemcpyAsync(ptr, arr.ctypes.data, min(nbytes, arr.nbytes), h2d, self.stream))
        if not self.ctx.execute_async_v3(self.stream):
            raise RuntimeError("TensorRT execute_async_v3 failed")
        outs = [("pha", pha_out)] + ([("fgr", fgr_out)] if self.has_fgr and fgr_out is not None else [])
        for name, host in outs:
            dst = self._half_out.get(name, host)
            ptr, nbytes = self._bufs[name]
            _check(c.cudaMemcpyAsync(dst.ctypes.data, ptr, min(nbytes, dst.nbytes), d2h, self.stream))
        _check(c.cudaStreamSynchronize(self.stream))
        for name, host in outs:
            if name in self._half_out:
                np.copyto(host, self._half_out[name], casting="unsafe")
        self._k = 1 - self._k

    def close(self) -> None:
        c = self._cudart
        for ptr, _ in [*self._bufs.values(), *self._state_bufs[0], *self._state_bufs[1]]:
            c.cudaFree(ptr)
        self._bufs.clear()
        self._state_bufs = [[], []]
        c.cudaStreamDestroy(self.stream)
