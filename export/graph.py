"""ONNX graph building blocks shared by every exporter: trace to ONNX, clean up, fp16, int8.

Each function takes and returns file paths (graphs can be large) and raises a
:mod:`mamakit.errors` class with one clear message. torch / onnx / onnxslim / onnxruntime are
imported inside the functions.
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Callable, Iterator, Sequence

import numpy as np

from mamakit.errors import ConfigError, WorkError

log = logging.getLogger(__name__)

#: exporter choice -> (torch.onnx.export dynamo flag, default opset). FIELD_GUIDE §5.10: the
#: dynamo exporter at opset 18 and the legacy TorchScript exporter at opset 17 both produce graphs
#: ONNX Runtime and TensorRT accept; dynamo asked for opset 17 does not.
EXPORTERS = {"legacy": (False, 17), "dynamo": (True, 18)}


def default_opset(exporter: str) -> int:
    return EXPORTERS[exporter][1]


def export_module(
    module,
    args: tuple,
    path: Path,
    *,
    input_names: Sequence[str],
    output_names: Sequence[str],
    exporter: str = "legacy",
    opset: int | None = None,
    dynamic_axes: dict[str, dict[int, str]] | None = None,
    varargs_from: int | None = None,
) -> Path:
    """Trace ``module(*args)`` to an ONNX file at ``path`` with the given tensor names.

    ``dynamic_axes`` maps input/output names to {axis: symbol}; with the dynamo exporter the
    input axes become ``Dim.AUTO`` (sizes derived inside the graph stay symbolic unless the module
    specialises them). ``varargs_from``: index of the first input passed through ``*args``.
    """
    import torch

    if exporter not in EXPORTERS:
        raise ConfigError(f"unknown exporter {exporter!r}: use one of {', '.join(EXPORTERS)}")
    dynamo, default = EXPORTERS[exporter]
    opset = int(opset or default)
    if dynamo and opset < 18:
        raise ConfigError(
            f"the dynamo exporter needs opset >= 18 (asked for {opset}; its opset-17 graphs use a Split "
            "ONNX Runtime rejects): pass --opset 18 or --exporter legacy"
        )
    kwargs = dict(input_names=list(input_names), output_names=list(output_names), opset_version=opset)
    if dynamo:
        kwargs["dynamo"] = True
        kwargs["verbose"] = False
        if dynamic_axes:
            auto = torch.export.Dim.AUTO
            specs = [{ax: auto for ax in dynamic_axes.get(name, {})} or None for name in input_names]
            # forward(src, guide, *state): torch.export wants the var-positional part as one tuple
            n_fixed = int(varargs_from) if varargs_from is not None else len(specs)
            kwargs["dynamic_shapes"] = (*specs[:n_fixed], tuple(specs[n_fixed:])) if varargs_from is not None \
                else tuple(specs)
    else:
        kwargs["dynamo"] = False
        if dynamic_axes:
            kwargs["dynamic_axes"] = dynamic_axes
    import warnings

    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            result = torch.onnx.export(module, args, str(path), **kwargs)
        except Exception as exc:  # the exporter's own errors are long; keep the first line
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise WorkError(f"torch.onnx.export ({exporter}, opset {opset}) failed: {first}") from exc
    if dynamo and result is not None and not Path(path).exists():  # pragma: no cover - older torch
        result.save(str(path))
    return Path(path)


def simplify(src: Path, dst: Path) -> dict:
    """Constant folding + graph simplification with onnxslim, then ``onnx.checker``.

    Falls back to onnx's own shape inference if onnxslim fails, and says so. Returns a small
    report (node counts before/after, tool used).
    """
    import onnx

    model = onnx.load(str(src))
    before = len(model.graph.node)
    tool = "onnxslim"
    try:
        import onnxslim

        slim = onnxslim.slim(model)
        tool = f"onnxslim {onnxslim.__version__}"
    except Exception as exc:  # pragma: no cover - depends on onnxslim's coverage of an op
        log.warning("onnxslim failed (%s); keeping the exporter's graph with shape inference only", exc)
        slim = onnx.shape_inference.infer_shapes(model)
        tool = "onnx.shape_inference"
    onnx.checker.check_model(slim)
    onnx.save(slim, str(dst))
    return {"tool": tool, "nodes_before": before, "nodes_after": len(slim.graph.node)}


def to_fp16(src: Path, dst: Path) -> dict:
    """Convert weights and compute to fp16, keeping fp32 graph inputs/outputs.

    Weights outside the fp16 range are clamped (subnormals below 2^-24 flush to the smallest
    normal-ish value ONNX Runtime's converter allows); the counts are reported.
    """
    import onnx
    from onnx import numpy_helper
    from onnxruntime.transformers.float16 import convert_float_to_float16

    model = onnx.load(str(src))
    tiny = huge = 0
    for init in model.graph.initializer:
        if init.data_type != onnx.TensorProto.FLOAT:
            continue
        a = np.abs(numpy_helper.to_array(init))
        tiny += int(np.count_nonzero((a > 0) & (a < 5.96e-08)))
        huge += int(np.count_nonzero(a > 65504.0))
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        half = convert_float_to_float16(model, keep_io_types=True, disable_shape_infer=False)
        # the converter appends its input casts at the end of the node list; onnxslim re-sorts the
        # graph topologically and folds the casts of constants
        import onnxslim

        half = onnxslim.slim(half)
    onnx.checker.check_model(half)
    onnx.save(half, str(dst))
    if tiny or huge:
        log.info("fp16: %d weights below fp16's smallest subnormal were clamped, %d above 65504", tiny, huge)
    return {"io_dtype": "float32", "clamped_subnormal_weights": tiny, "clamped_overflow_weights": huge}


class _Reader:
    """onnxruntime.quantization CalibrationDataReader over a generator of input dicts."""

    def __init__(self, feeds: Iterator[dict[str, np.ndarray]]):
        self._it = iter(feeds)
        self.count = 0

    def get_next(self):
        try:
            item = next(self._it)
        except StopIteration:
            return None
        self.count += 1
        return item

    def rewind(self):  # pragma: no cover - only some calibrators rewind
        raise RuntimeError("calibration data is streamed once")


#: int8 schemes. ``trt``: int8 symmetric activations (zero-point 0), int8 symmetric per-channel
#: weights, float biases, Conv only — the explicit-quantisation form TensorRT / TensorRT-RTX parse and
#: build. ``cpu``: uint8 asymmetric activations + int8 weights with int32 biases, Conv only — what
#: ONNX Runtime's x86 kernels (u8s8, VNNI) run fastest, but TensorRT rejects (non-zero zero-points,
#: int32 DequantizeLinear).
INT8_SCHEMES = {
    "trt": {"activation": "QInt8", "extra": {"ActivationSymmetric": True, "WeightSymmetric": True, "QuantizeBias": False}},
    "cpu": {"activation": "QUInt8", "extra": {"WeightSymmetric": True}},
}


def quantize_int8(
    src: Path,
    dst: Path,
    feeds: Callable[[], Iterator[dict[str, np.ndarray]]],
    *,
    scheme: str = "trt",
    per_channel: bool = True,
    method: str = "minmax",
    op_types: Sequence[str] = ("Conv",),
    exclude_nodes: Sequence[str] = (),
) -> dict:
    """Static int8 QDQ quantisation of an fp32 graph, calibrated on ``feeds()`` (see INT8_SCHEMES).

    Only ``op_types`` (default: Conv) are quantised; elementwise ops (GRU gates, the guided-filter
    refiner, clamps) stay fp32, which keeps alpha accurate and avoids Q/DQ pairs around cheap ops.
    Returns the settings used.
    """
    import onnxruntime
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    methods = {"minmax": CalibrationMethod.MinMax, "percentile": CalibrationMethod.Percentile,
               "entropy": CalibrationMethod.Entropy}
    if method not in methods:
        raise ConfigError(f"unknown calibration method {method!r}: use one of {', '.join(methods)}")
    if scheme not in INT8_SCHEMES:
        raise ConfigError(f"unknown int8 scheme {scheme!r}: use one of {', '.join(INT8_SCHEMES)}")
    sch = INT8_SCHEMES[scheme]
    pre = Path(dst).with_name(Path(dst).stem + ".pre.onnx")
    try:
        quant_pre_process(str(src), str(pre), skip_symbolic_shape=True)
    except Exception as exc:  # pragma: no cover - pre-processing is an optimisation only
        log.warning("quantisation pre-processing failed (%s); quantising the graph as is", exc)
        pre = Path(src)
    reader = _Reader(feeds())
    import warnings

    qlog = logging.getLogger()  # onnxruntime.quantization logs scale adjustments on the root logger
    level = qlog.level
    qlog.setLevel(max(level, logging.WARNING))
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            quantize_static(
                str(pre), str(dst), reader,
                quant_format=QuantFormat.QDQ,
                activation_type=getattr(QuantType, sch["activation"]),
                weight_type=QuantType.QInt8,
                per_channel=per_channel,
                calibrate_method=methods[method],
                op_types_to_quantize=list(op_types) if op_types else None,
                nodes_to_exclude=list(exclude_nodes),
                extra_options=dict(sch["extra"]),
            )
    finally:
        qlog.setLevel(level)
        if pre != Path(src):
            pre.unlink(missing_ok=True)
    return {"method": "static QDQ", "scheme": scheme, "calibration": method, "per_channel": per_channel,
            "op_types": list(op_types) if op_types else "all",
            "activations": "int8 symmetric" if scheme == "trt" else "uint8 asymmetric",
            "weights": "int8 symmetric per-channel", "bias": "float" if scheme == "trt" else "int32",
            "calibration_frames": reader.count, "onnxruntime": onnxruntime.__version__}


def quantize_int8_dynamic(src: Path, dst: Path) -> dict:
    """Dynamic int8 (weights only, activations quantised at run time) — measured in the bench,
    not shipped: on this CPU it was slower than fp32 (see docs/bundle.md)."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    quantize_dynamic(str(src), str(dst), weight_type=QuantType.QInt8, per_channel=True)
    return {"method": "dynamic", "weights": "int8 per-channel"}


def ort_session(path: Path, threads: int | None = 2, *, spin: bool = True):
    """A CPU ONNX Runtime session with fixed, reproducible options (all optimisations on).

    ``spin=False`` stops idle worker threads from spinning, so the process's CPU time measures the
    work done (used by the bench on a shared machine)."""
    import onnxruntime as ort

    so = ort.SessionOptions()
    if threads:
        so.intra_op_num_threads = int(threads)
        so.inter_op_num_threads = 1
    if not spin:
        so.add_session_config_entry("session.intra_op.allow_spinning", "0")
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    so.log_severity_level = 3
    return ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
