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
#: weights, float biases — the explicit-quantisation form TensorRT / TensorRT-RTX parse and build.
#: ``cpu``: uint8 asymmetric activations + int8 weights with int32 biases — ONNX Runtime's u8s8 (VNNI)
#: form, which TensorRT rejects (non-zero zero-points, int32 DequantizeLinear).
INT8_SCHEMES = {
    "trt": {"activation": "QInt8", "extra": {"ActivationSymmetric": True, "WeightSymmetric": True, "QuantizeBias": False}},
    "cpu": {"activation": "QUInt8", "extra": {"WeightSymmetric": True}},
}

#: which convolutions become int8. ``spatial`` (default): standard (group 1) convolutions with a
#: kernel larger than 1x1 and an unshared input (see spatial_convs) — for the student the decoder's
#: 3x3 convs and its ConvGRU gate/candidate convs, where ONNX Runtime's QLinearConv beats the fp32
#: NCHWc kernels (e.g. the 52->24 3x3 conv at 1/4 trunk: 0.6 vs 2.6 ms at 1280x720). ``all``: every
#: Conv (the previous default) — also the depthwise convs (QLinearConv depthwise on 20 channels at
#: trunk resolution: 11 ms vs 3 ms fp32) and the 1x1 convs on 4-20 channels at trunk resolution,
#: which cost more in Q/DQ and NHWC transposes than they save: 0.66-0.82x fp32 instead of ~1.05x.
#: ``dense``: the ``spatial`` ones plus the 1x1 (pointwise) group-1 convs with at least
#: DENSE_MIN_CHANNELS input and output channels (an unshared input too) — the MobileNet expansion /
#: projection convs of the wider encoders, where int8 GEMMs (VNNI) beat fp32; depthwise convs and
#: thin 1x1 convs stay fp32.
#: ``trunk``: not only convolutions — every op type ONNX Runtime's QDQ quantiser handles (Conv, Add,
#: Mul, Concat, Resize, pools, activations …) in the low-resolution trunk (encoder, decoder, ConvGRU),
#: so activations stay int8 from one op to the next instead of paying a QuantizeLinear /
#: DequantizeLinear pair around every conv; the guided-filter refiner (nodes named ``/refiner/``:
#: its box-filtered covariances cancel catastrophically in 8 bits, and its full-resolution ops are
#: bandwidth-bound) stays fp32. Use it with the ``cpu`` scheme (u8s8, ONNX Runtime's VNNI kernels;
#: with symmetric int8 activations ONNX Runtime CPU runs it at 0.79x fp32). Measured on the large
#: student (docs/bundle.md, session 5): 1.29-1.33x fp32 with 1 thread, like ``spatial`` (1.31-1.35x),
#: but 0.90-1.17x with 2 threads — not the default.
INT8_CONV_SELECTIONS = ("spatial", "dense", "all", "trunk")
#: node-name marker of the full-resolution refiner, kept fp32 by the ``trunk`` selection
REFINER_MARKER = "/refiner/"
DENSE_MIN_CHANNELS = 64


def _name_nodes(model) -> None:
    """Give unnamed nodes unique names (``nodes_to_quantize`` selects by name)."""
    seen = {n.name for n in model.graph.node if n.name}
    for i, n in enumerate(model.graph.node):
        if not n.name:
            name = f"{n.op_type}_{i}"
            while name in seen:
                name += "_"
            n.name = name
            seen.add(name)


def spatial_convs(model, min_pointwise_channels: int | None = None) -> list[str]:
    """Names of the Conv nodes worth quantising: standard (group 1) convolutions with a kernel
    larger than 1x1 whose input activation feeds nothing else. (A shared input — e.g. the student's
    stem conv input, also read by AveragePool and Concat — would be quantised for every consumer by
    the QDQ quantiser's single Q/DQ pair, and ONNX Runtime fuses DequantizeLinear -> Conv into
    QLinearConv only when the DequantizeLinear has that one consumer.) With
    ``min_pointwise_channels``, also the group-1 1x1 convs with at least that many input and output
    channels (the ``dense`` selection)."""
    inits = {i.name: i for i in model.graph.initializer}
    readers: dict[str, int] = {}
    for n in model.graph.node:
        for t in n.input:
            readers[t] = readers.get(t, 0) + 1
    names = []
    for n in model.graph.node:
        if n.op_type != "Conv":
            continue
        attrs = {a.name: a for a in n.attribute}
        group = attrs["group"].i if "group" in attrs else 1
        if "kernel_shape" in attrs:
            kernel = list(attrs["kernel_shape"].ints)
        elif len(n.input) > 1 and n.input[1] in inits:
            kernel = list(inits[n.input[1]].dims[2:])
        else:  # unknown kernel (weight computed in the graph): leave it fp32
            continue
        if group != 1 or readers.get(n.input[0], 0) != 1:
            continue
        if max(kernel, default=1) > 1:
            names.append(n.name)
        elif min_pointwise_channels and len(n.input) > 1 and n.input[1] in inits:
            w = inits[n.input[1]]
            if min(int(w.dims[0]), int(w.dims[1])) >= min_pointwise_channels:
                names.append(n.name)
    return names


def quantize_int8(
    src: Path,
    dst: Path,
    feeds: Callable[[], Iterator[dict[str, np.ndarray]]],
    *,
    scheme: str = "trt",
    convs: str = "spatial",
    per_channel: bool = True,
    method: str = "minmax",
    exclude_nodes: Sequence[str] = (),
) -> dict:
    """Static int8 QDQ quantisation of an fp32 graph, calibrated on ``feeds()``.

    What is quantised (``convs="trunk"``: every op type outside the refiner, see
    INT8_CONV_SELECTIONS; otherwise): only Conv nodes, and by default (``convs="spatial"``) only the standard
    convolutions with a kxk kernel (k > 1) whose input no other node reads (spatial_convs): their
    weights int8 symmetric per output channel, their input activations int8 (``scheme``, see
    INT8_SCHEMES); ONNX Runtime fuses each into one QLinearConv. Everything else stays fp32:

    - depthwise convs and the 1x1 convs at trunk resolution (4-20 channels): ONNX Runtime's int8
      kernels are slower than its fp32 NCHWc ones there;
    - Resize, Concat/Split, AveragePool (box filters), the GRU gates (Sigmoid/Tanh/Mul) and the
      full-resolution guided-filter refiner: int8 does not make them faster on CPU
      (QLinearAveragePool is ~10x slower than the fp32 pool; int8 Resize is no faster) and they
      carry the alpha's precision.

    Measured with the shipped student (step-300 checkpoint, alpha-only, downsample ratio 0.3,
    ONNX Runtime 1.31, 2 threads, interleaved with fp32 on a 2-core AVX-512 VNNI Xeon):
    ``spatial`` runs at 1.03-1.06x fp32 at 512x288 and 1280x720 with int8 MAD vs GT equal to fp32's
    (within 0.1 %); ``all`` at 0.66-0.82x. The ≥ 1.3x target is out of reach for this network on
    ONNX Runtime CPU: convolutions are ~1/3 of the fp32 time (Resize ~1/4, the rest element-wise
    and layout work int8 cannot speed up), and the kxk convs it pays to quantise are ~10 % of it.
    Only the ``trt`` scheme (float biases, zero-point 0) builds with TensorRT / TensorRT-RTX.

    Returns the settings used (recorded in the manifest).
    """
    import onnx
    import onnxruntime
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    methods = {"minmax": CalibrationMethod.MinMax, "percentile": CalibrationMethod.Percentile,
               "entropy": CalibrationMethod.Entropy}
    if method not in methods:
        raise ConfigError(f"unknown calibration method {method!r}: use one of {', '.join(methods)}")
    if scheme not in INT8_SCHEMES:
        raise ConfigError(f"unknown int8 scheme {scheme!r}: use one of {', '.join(INT8_SCHEMES)}")
    if convs not in INT8_CONV_SELECTIONS:
        raise ConfigError(f"unknown int8 conv selection {convs!r}: use one of {', '.join(INT8_CONV_SELECTIONS)}")
    sch = INT8_SCHEMES[scheme]
    pre = Path(dst).with_name(Path(dst).stem + ".pre.onnx")
    try:
        quant_pre_process(str(src), str(pre), skip_symbolic_shape=True)
        model = onnx.load(str(pre))
    except Exception as exc:  # pragma: no cover - pre-processing is an optimisation only
        log.warning("quantisation pre-processing failed (%s); quantising the graph as is", exc)
        model = onnx.load(str(src))
    _name_nodes(model)
    onnx.save(model, str(pre))
    excluded = set(exclude_nodes)
    all_convs = [n.name for n in model.graph.node if n.op_type == "Conv"]
    op_types: list[str] | None = ["Conv"]
    if convs == "trunk":
        op_types = None  # every op type the quantiser knows
        excluded |= {n.name for n in model.graph.node if REFINER_MARKER in n.name}
        chosen = [n.name for n in model.graph.node if n.name not in excluded]
    else:
        chosen = {"spatial": lambda: spatial_convs(model),
                  "dense": lambda: spatial_convs(model, DENSE_MIN_CHANNELS),
                  "all": lambda: all_convs}[convs]()
    chosen = [n for n in chosen if n not in excluded]
    if not set(chosen) & set(all_convs):
        pre.unlink(missing_ok=True)
        raise ConfigError(f"int8 ({convs} convs): the graph has no convolution to quantise")
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
                op_types_to_quantize=op_types,
                nodes_to_quantize=chosen,
                extra_options=dict(sch["extra"]),
            )
    finally:
        qlog.setLevel(level)
        pre.unlink(missing_ok=True)
    return {"method": "static QDQ", "scheme": scheme, "calibration": method, "per_channel": per_channel,
            "op_types": op_types or "all supported (trunk)", "convs": convs,
            "quantised_convs": len(set(chosen) & set(all_convs)), "total_convs": len(all_convs),
            "fp32_nodes": len(excluded),
            "activations": "int8 symmetric" if scheme == "trt" else "uint8 asymmetric",
            "weights": "int8 symmetric per-channel" if per_channel else "int8 symmetric per-tensor",
            "bias": "float" if scheme == "trt" else "int32",
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
