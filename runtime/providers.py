"""Execution providers: pick the best available one, fall back clearly, say what actually runs.

``create_ort_session(path, provider="auto", threads=None)`` returns ``(InferenceSession, name)``
where ``name`` is the short name of the provider ONNX Runtime actually put first (``cpu``,
``cuda``, ``tensorrt``, ``coreml``, ``directml``, ...). Asking for a provider that this
onnxruntime build does not have, or that fails to initialise (no GPU, missing CUDA libraries),
falls back to the next best and logs ONE warning line saying so (once per process and request).
Only ``strict=True`` turns that into a :class:`~mamakit.errors.ConfigError`.

Native TensorRT / TensorRT-RTX engines are not ONNX Runtime providers; they are handled by
:mod:`mamakit.runtime.sessions.tensorrt` and are selected with ``provider="trt-engine"`` /
``"rtx-engine"`` (``auto`` only uses them when the bundle ships a matching engine and a GPU is present).
"""
from __future__ import annotations

import logging
import os
from pathlib import Path

from mamakit.errors import BundleError, ConfigError, DependencyError

log = logging.getLogger(__name__)

#: short name -> ONNX Runtime provider name
ORT_PROVIDERS: dict[str, str] = {
    "tensorrt": "TensorrtExecutionProvider",
    "rtx": "NvTensorRTRTXExecutionProvider",
    "cuda": "CUDAExecutionProvider",
    "directml": "DmlExecutionProvider",
    "coreml": "CoreMLExecutionProvider",
    "openvino": "OpenVINOExecutionProvider",
    "cpu": "CPUExecutionProvider",
}
#: native engine backends (not ONNX Runtime)
ENGINE_PROVIDERS = ("trt-engine", "rtx-engine")
ALIASES = {"dml": "directml", "trt": "tensorrt", "gpu": "cuda", "tensorrt-rtx": "rtx",
           "trt-ep": "tensorrt"}
#: the order ``auto`` tries (best first); the CPU is always last and always there
AUTO_ORDER = ("tensorrt", "rtx", "cuda", "directml", "coreml", "cpu")
#: providers whose tensors live on a CUDA device (state kept there with io_binding)
CUDA_DEVICE = {"cuda", "tensorrt", "rtx"}

_SHORT = {v: k for k, v in ORT_PROVIDERS.items()}
_warned: set[str] = set()


def known_providers() -> list[str]:
    return ["auto", *ORT_PROVIDERS, *ENGINE_PROVIDERS]


def normalise(provider: str | None) -> str:
    """``None``/``""`` -> ``auto``; aliases and ORT long names -> the short name; unknown -> ConfigError."""
    if not provider:
        return "auto"
    p = str(provider).strip()
    if p in _SHORT:
        return _SHORT[p]
    p = p.lower()
    p = ALIASES.get(p, p)
    if p == "auto" or p in ORT_PROVIDERS or p in ENGINE_PROVIDERS:
        return p
    raise ConfigError(f"unknown provider {provider!r}: choose one of {', '.join(known_providers())}")


def _ort():
    try:
        import onnxruntime as ort
    except ImportError as exc:
        raise DependencyError(
            "onnxruntime is not installed: install it with `pip install \"mamakit[cpu]\"` "
            f"(or `mamakit[gpu]` for CUDA) ({exc})") from exc
    return ort


def available_providers() -> list[str]:
    """Short names of the ORT providers this onnxruntime build offers (not a guarantee they initialise)."""
    ort = _ort()
    return [_SHORT[p] for p in ort.get_available_providers() if p in _SHORT]


def short_name(ort_name: str) -> str:
    return _SHORT.get(ort_name, ort_name)


def warn_once(key: str, message: str) -> None:
    if key not in _warned:
        _warned.add(key)
        log.warning(message)


def _provider_options(short: str, threads: int | None, cache_dir: str | None) -> dict:
    if short == "cuda":
        return {"cudnn_conv_algo_search": "HEURISTIC", "do_copy_in_default_stream": "1"}
    if short == "tensorrt":
        opts = {"trt_fp16_enable": "False"}
        if cache_dir:
            try:
                os.makedirs(cache_dir, exist_ok=True)
                opts.update(trt_engine_cache_enable="True", trt_engine_cache_path=cache_dir)
            except OSError:  # read-only home: build the engine every start instead
                pass
        return opts
    if short == "coreml":
        return {"MLComputeUnits": "ALL"}
    return {}


def _chain(requested: str, available: list[str]) -> list[str]:
    """The provider list handed to ORT for a request, best first, always ending with the CPU."""
    if requested == "auto":
        chain = [p for p in AUTO_ORDER if p in available]
    else:
        chain = [requested] if requested in available else []
        # the TensorRT EP needs CUDA beside it for the nodes it does not take
        if requested in ("tensorrt", "rtx") and "cuda" in available:
            chain.append("cuda")
    if "cpu" not in chain:
        chain.append("cpu")
    return chain


def session_options(threads: int | None = None, *, spin: bool = True):
    ort = _ort()
    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    so.log_severity_level = 3  # ORT's own provider-fallback chatter is replaced by our one line
    if threads:
        if int(threads) < 1:
            raise ConfigError(f"--threads must be >= 1, got {threads}")
        so.intra_op_num_threads = int(threads)
        so.inter_op_num_threads = 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    if not spin:
        # in a pipeline other threads need the cores: do not busy-wait between ops
        so.add_session_config_entry("session.intra_op.allow_spinning", "0")
        so.add_session_config_entry("session.inter_op.allow_spinning", "0")
    return so


def create_ort_session(path: str | os.PathLike, provider: str = "auto", threads: int | None = None, *,
                       spin: bool = True, strict: bool = False, cache_dir: str | None = None):
    """Open an ONNX graph on the best matching provider.

    Returns ``(onnxruntime.InferenceSession, short_provider_name)``; the name is the provider ORT
    actually runs first, after any fallback. Engine providers (``trt-engine``/``rtx-engine``) are
    not ORT providers: asking for them here falls back to ``auto`` with a warning.
    """
    ort = _ort()
    requested = normalise(provider)
    if requested in ENGINE_PROVIDERS:
        warn_once(f"engine:{requested}", f"provider {requested} runs native engines, not ONNX graphs; "
                                         f"using the best ONNX Runtime provider for {Path(path).name}")
        requested = "auto"
    available = available_providers()
    if requested not in ("auto", *available):
        msg = (f"provider {requested} is not available in this onnxruntime build "
               f"(available: {', '.join(available)}); falling back")
        if strict:
            raise ConfigError(msg.replace("; falling back", ": install onnxruntime-gpu or choose another provider"))
    chain = _chain(requested, available)
    providers = [(ORT_PROVIDERS[p], _provider_options(p, threads, cache_dir)) for p in chain]
    so = session_options(threads, spin=spin)
    try:
        sess = ort.InferenceSession(str(path), sess_options=so, providers=providers)
    except Exception as exc:  # ORT raises several classes; a graph it cannot load is a bad bundle
        if len(chain) > 1:
            # a GPU provider that fails hard at creation: retry on the CPU alone
            try:
                sess = ort.InferenceSession(str(path), sess_options=so, providers=["CPUExecutionProvider"])
            except Exception:
                raise BundleError(f"ONNX graph {path} cannot be loaded by onnxruntime "
                                  f"({' '.join(str(exc).split())[:300]}); re-export the bundle") from exc
        else:
            raise BundleError(f"ONNX graph {path} cannot be loaded by onnxruntime "
                              f"({' '.join(str(exc).split())[:300]}); re-export the bundle") from exc
    actual = short_name(sess.get_providers()[0])
    if requested != "auto" and actual != requested:
        msg = (f"provider {requested} is unavailable here "
               f"({'not in this onnxruntime build' if requested not in available else 'failed to initialise'}); "
               f"falling back to {actual}")
        if strict:
            raise ConfigError(msg.replace(f"; falling back to {actual}", ": choose another provider"))
        warn_once(f"fallback:{requested}->{actual}", msg)
    return sess, actual


def is_cuda_provider(name: str) -> bool:
    return name in CUDA_DEVICE
