"""Export a student (``mamakit.student.models.StudentNet``) to a verified bundle.

Graph ``main``: inputs ``src`` [1,3,H,W] rgb 0..1, ``guide`` [1,1,H,W] 0..1, ``r*i``;
outputs ``pha`` [1,1,H,W], ``fgr`` [1,3,H,W], ``r*o`` (docs/architecture.md, the student
contract). The processing size is static by default (TensorRT accepts it; the downsample ratio is
part of the student's config and baked into the graph); ``dynamic=True`` gives a variant with
symbolic height/width for ONNX Runtime.

Steps: trace (fp32) -> onnxslim -> [fp16 | int8 static QDQ calibrated on a dataset] -> parity on a
synthetic clip with ground truth, state carried frame to frame through PyTorch and ONNX Runtime
-> reference sample -> manifest -> ``check_bundle`` on the finished folder -> rename into place.
A bundle that fails parity is never written (:class:`ParityError`).
"""
from __future__ import annotations

import logging
import os
import shutil
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Iterator

import numpy as np

from mamakit.bundle import MANIFEST, StateSpec, TensorSpec, new_manifest, write_manifest
from mamakit.errors import BundleError, ConfigError, InputError, ParityError
from mamakit.fsutil import check_writable_dir, sha256_file
from mamakit.stabilize import FlowParams

from . import graph as G
from .source import Source, read_source

log = logging.getLogger(__name__)

PRECISIONS = ("fp32", "fp16", "int8")
#: parity targets (docs/bundle.md): max |Δα| vs PyTorch for fp32/fp16; int8 MAD vs GT <= (1 + 10 %) fp32 MAD
TOLERANCE = {"fp32": 1e-4, "fp16": 5e-3}
INT8_MAD_SLACK = 0.10
INT8_SPEEDUP_TARGET = 1.3
#: reference-sample tolerance per precision (each call is independent: no drift accumulates)
SAMPLE_ATOL = {"fp32": 1e-4, "fp16": 5e-3}


@dataclass
class StudentExportOptions:
    size: tuple[int, int] = (1280, 720)          # processing size (W, H)
    precision: str = "fp32"
    calib: str | None = None                      # dataset folder for int8 calibration
    calib_frames: int = 64                        # frames used for calibration (at most)
    min_calib_frames: int = 8                     # fewer than this -> ConfigError before work
    calib_method: str = "minmax"
    int8_scheme: str = "trt"                      # graph.INT8_SCHEMES: trt (ORT + TensorRT) | cpu (ORT only)
    int8_convs: str = "spatial"                   # graph.INT8_CONV_SELECTIONS: spatial (kxk convs) | dense | all | trunk
    fgr: bool = True                              # False: alpha-only graph (no foreground output; faster)
    downsample_ratio: float | None = None         # trunk size / frame size baked into the graph (None: the checkpoint's)
    student_set: tuple[str, ...] = ()             # "KEY=VALUE" deployment settings (StudentNet.reconfigure)
    opset: int | None = None
    exporter: str = "auto"                        # auto: legacy for static graphs, dynamo for --dynamic
    dynamic: bool = False
    parity_frames: int = 30
    sample_calls: int = 3
    threads: int = 2
    seed: int = 0
    overwrite: bool = False
    teacher: str | None = None
    training_data: str | None = None
    licence: str | None = None


# --------------------------------------------------------------------------------------------
# validation (before any work: exit 2)
# --------------------------------------------------------------------------------------------
def parse_size(text: str) -> tuple[int, int]:
    try:
        w, h = (int(v) for v in str(text).lower().split("x"))
    except ValueError as exc:
        raise ConfigError(f"--size {text!r} is not WxH (e.g. 1280x720)") from exc
    if w < 16 or h < 16 or w > 8192 or h > 8192:
        raise ConfigError(f"--size {text}: width and height must be between 16 and 8192")
    return w, h


def check_output(out: Path, overwrite: bool) -> None:
    check_writable_dir(out, "bundle")
    if out.exists():
        if out.is_file():
            raise ConfigError(f"--out {out} is a file; a bundle is a folder: choose another path")
        if any(out.iterdir()):
            if not (out / MANIFEST).is_file():
                raise ConfigError(f"--out {out} exists and is not a bundle: choose an empty or new folder")
            if not overwrite:
                raise ConfigError(f"--out {out} already holds a bundle: pass --overwrite to replace it")
    try:  # writability of the parent, for real (permissions, read-only mounts)
        probe = Path(tempfile.mkdtemp(prefix=".tmp-probe-", dir=out.parent))
        probe.rmdir()
    except OSError as exc:
        raise InputError(f"bundle path {out} is not writable ({exc.strerror}): choose a folder you can write to") from exc


def open_calibration(calib: str | os.PathLike, needed: int):
    """Open a dataset for calibration; raise ConfigError when it holds fewer than ``needed`` frames."""
    from mamakit.dataset import Dataset

    ds = Dataset(calib)  # VideoIOError / ConfigError (exit 2) for a missing or damaged dataset
    total = ds.total_frames
    if total < needed:
        raise ConfigError(f"--calib {calib} holds {total} frames; int8 calibration needs at least {needed}: "
                          "use a larger dataset (e.g. `mamakit synth --clips 4 --frames 8`)")
    return ds


def _clip_frames(clip) -> Iterator[tuple[np.ndarray, np.ndarray | None]]:
    """(frame uint8 HxWx3, mask float32 HxW or None) for each frame of a dataset clip, one at a time."""
    for i in range(len(clip)):
        frame = clip.frames([i])[0]
        mask = clip.masks([i])[0] if clip.has_masks else None
        yield frame, mask


def _resize(img: np.ndarray, size: tuple[int, int], interp=None) -> np.ndarray:
    import cv2

    w, h = size
    if img.shape[1] == w and img.shape[0] == h:
        return img
    return cv2.resize(img, (w, h), interpolation=cv2.INTER_AREA if interp is None else interp)


def to_inputs(frame: np.ndarray, mask: np.ndarray | None, size: tuple[int, int],
              prev_alpha: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """uint8 frame + float mask -> (src [1,3,H,W], guide [1,1,H,W]) float32 at ``size``."""
    f = _resize(frame, size)
    src = np.ascontiguousarray(f.transpose(2, 0, 1)[None], dtype=np.float32) / 255.0
    if mask is None:
        g = prev_alpha if prev_alpha is not None else np.zeros((size[1], size[0]), np.float32)
    else:
        g = _resize(np.asarray(mask, np.float32), size)
    guide = np.ascontiguousarray(g, dtype=np.float32).reshape(1, 1, size[1], size[0])
    return src.astype(np.float32), guide


# --------------------------------------------------------------------------------------------
# the exporter
# --------------------------------------------------------------------------------------------
class _Wrapped:
    """Names and state layout of a loaded student."""

    def __init__(self, model, size, fgr: bool = True):
        import torch

        self.model = model.eval().float()
        self.fgr = bool(fgr)
        self.graph_module = self.model
        if not self.fgr:
            if not callable(getattr(self.model, "forward_alpha", None)):
                raise ConfigError("--no-fgr needs a student with forward_alpha (an alpha-only forward pass); "
                                  "this checkpoint's model has none: export without --no-fgr")
            self.graph_module = _AlphaOnly(self.model)
        self.names = list(model.state_names())
        w, h = size
        self.init_state = tuple(t.detach().float() for t in model.initial_state(1, h, w))
        if len(self.init_state) != len(self.names):
            raise ConfigError(f"the student returns {len(self.init_state)} initial state tensors but names "
                              f"{len(self.names)} ({self.names}); the checkpoint does not follow the student contract")
        self.torch = torch
        self.ratio = _downsample_ratio(model)

    @property
    def input_names(self):
        return ["src", "guide"] + [f"{n}i" for n in self.names]

    @property
    def output_names(self):
        return self.colour_outputs + [f"{n}o" for n in self.names]

    @property
    def colour_outputs(self):
        return ["pha", "fgr"] if self.fgr else ["pha"]

    def step(self, src: np.ndarray, guide: np.ndarray, state):
        """One PyTorch call: ``(pha, fgr or None, new state)`` as the exported graph computes them."""
        torch = self.torch
        with torch.no_grad():
            out = self.graph_module(torch.from_numpy(src), torch.from_numpy(guide), *state)
        if self.fgr:
            return out[0].numpy(), out[1].numpy(), tuple(out[2:])
        return out[0].numpy(), None, tuple(out[1:])


def set_downsample_ratio(model, ratio: float | None):
    """Bake another trunk ratio into ``model`` (its config); None keeps the checkpoint's."""
    if ratio is None:
        return model
    import dataclasses

    cfg = getattr(model, "config", None)
    if not dataclasses.is_dataclass(cfg) or not hasattr(cfg, "downsample_ratio"):
        raise ConfigError("--downsample-ratio needs a student whose config has downsample_ratio")
    try:
        if callable(getattr(model, "reconfigure", None)):  # StudentNet: the one path for deployment settings
            model.reconfigure(downsample_ratio=float(ratio))
        else:
            model.config = dataclasses.replace(cfg, downsample_ratio=float(ratio))
    except ConfigError as exc:
        raise ConfigError(f"--downsample-ratio {ratio:g}: {exc}") from exc
    log.info("downsample ratio %g (checkpoint: %g)", ratio, cfg.downsample_ratio)
    return model


def apply_student_settings(model, items) -> dict:
    """``--set KEY=VALUE`` items applied to ``model`` through its ``reconfigure`` (deployment settings
    that change no weights, e.g. ``refiner_smooth=1``); each value takes the type of the current one."""
    import dataclasses

    from mamakit.settings import parse_settings

    if not items:
        return {}
    cfg = getattr(model, "config", None)
    if not callable(getattr(model, "reconfigure", None)) or not dataclasses.is_dataclass(cfg):
        raise ConfigError("--set needs a student with deployment settings (StudentNet.reconfigure); "
                          "this checkpoint's model has none")
    values = parse_settings(items, cfg, getattr(model, "DEPLOY_KEYS", ()))
    try:
        model.reconfigure(**values)
    except ConfigError as exc:
        raise ConfigError(f"--set: {exc}") from None
    log.info("student settings %s", ", ".join(f"{k}={v}" for k, v in values.items()))
    return values


def trace_graph(w: _Wrapped, size: tuple[int, int], out: Path, *, exporter: str, opset: int,
                dynamic: bool = False) -> dict:
    """Trace the wrapped student at ``size`` (W, H) and write the cleaned-up graph to ``out``; returns
    :func:`graph.simplify`'s report. The one tracing path of `export onnx` and `export recover`."""
    W, H = size
    torch = w.torch
    args = (torch.zeros(1, 3, H, W), torch.zeros(1, 1, H, W), *w.init_state)
    dyn = None
    if dynamic:
        dyn = {"src": {2: "height", 3: "width"}, "guide": {2: "height", 3: "width"}}
        for n in w.names:
            dyn[f"{n}i"] = {2: f"{n}_h", 3: f"{n}_w"}
    raw = out.with_name(out.stem + ".raw.onnx")
    try:
        G.export_module(w.graph_module, args, raw, input_names=w.input_names, output_names=w.output_names,
                        exporter=exporter, opset=opset, dynamic_axes=dyn, varargs_from=2)
        return G.simplify(raw, out)
    finally:
        raw.unlink(missing_ok=True)


def _AlphaOnly(model):
    """``model.forward_alpha`` as a module's forward (what torch.onnx traces)."""
    from torch import nn

    class AlphaOnly(nn.Module):
        def __init__(self, inner):
            super().__init__()
            self.inner = inner

        def forward(self, src, guide, *state):
            return self.inner.forward_alpha(src, guide, *state)

    return AlphaOnly(model).eval()


def _downsample_ratio(model) -> float | None:
    cfg = getattr(model, "config", None)
    for obj in (cfg, model):
        for attr in ("downsample_ratio", "ratio", "trunk_ratio"):
            v = getattr(obj, attr, None) if obj is not None else None
            if isinstance(v, (int, float)):
                return float(v)
    if isinstance(cfg, dict):
        v = cfg.get("downsample_ratio")
        return float(v) if v is not None else None
    return None


def _model_config(model) -> dict:
    cfg = getattr(model, "config", None)
    if cfg is None:
        return {}
    if isinstance(cfg, dict):
        return dict(cfg)
    try:
        return asdict(cfg)
    except TypeError:
        return {k: v for k, v in vars(cfg).items() if not k.startswith("_")}


def _graph_specs(path: Path) -> tuple[list[dict], list[dict]]:
    import onnx

    m = onnx.load(str(path), load_external_data=False)
    types = {onnx.TensorProto.FLOAT: "float32", onnx.TensorProto.FLOAT16: "float16",
             onnx.TensorProto.INT64: "int64", onnx.TensorProto.INT32: "int32"}

    def spec(v, norm):
        t = v.type.tensor_type
        shape = [d.dim_value if d.HasField("dim_value") else (d.dim_param or "?") for d in t.shape.dim]
        return TensorSpec(v.name, shape, types.get(t.elem_type, str(t.elem_type)), "NCHW", norm(v.name)).to_dict()

    def norm(name):
        return {"src": "rgb 0..1 (uint8/255, RGB order)", "guide": "mask 0..1 (coarse mask, or the previous alpha)",
                "pha": "alpha 0..1", "fgr": "rgb 0..1 (foreground colour)"}.get(name, "recurrent state (opaque)")

    return [spec(v, norm) for v in m.graph.input], [spec(v, norm) for v in m.graph.output]


def _ms(times: list[float]) -> float:
    t = times[2:] if len(times) > 4 else times  # first calls warm up caches and allocators
    return float(np.median(t) * 1e3) if t else float("nan")


def _calibration_feeds(ds, w: _Wrapped, fp32_graph: Path, size, limit: int, threads: int):
    """Input dicts for calibration: dataset frames in clip order, state carried frame to frame by
    running the fp32 graph (so calibration sees the state statistics of a real stream)."""

    def gen():
        sess = G.ort_session(fp32_graph, threads)
        names = [o.name for o in sess.get_outputs()]
        n = 0
        for clip in ds:
            state = {f"{k}i": s.numpy() for k, s in zip(w.names, w.init_state)}
            prev = None
            for frame, mask in _clip_frames(clip):
                if n >= limit:
                    return
                src, guide = to_inputs(frame, mask, size, prev)
                feed = {"src": src, "guide": guide, **state}
                yield feed
                res = dict(zip(names, sess.run(None, feed)))
                state = {f"{k}i": res[f"{k}o"] for k in w.names}
                prev = res["pha"][0, 0]
                n += 1

    return gen


def measure_parity(w: _Wrapped, graph: Path, size: tuple[int, int], frames: int, seed: int, threads: int,
                   fp32_graph: Path | None = None, keep_calls: int = 3) -> tuple[dict, list]:
    """Stream a synthetic clip with exact ground truth (``mamakit.synth.make_clip``) through PyTorch
    and ONNX Runtime (``graph``; also ``fp32_graph`` for the speed ratio), each carrying its own
    state frame to frame. Nothing but the first ``keep_calls`` PyTorch calls is kept in memory.

    Returns (statistics, calls) with calls = [(inputs, pytorch outputs), ...].
    """
    from mamakit.synth import make_clip

    clip = make_clip(seed, frames, size)
    sess = G.ort_session(graph, threads)
    sess32 = G.ort_session(fp32_graph, threads) if fp32_graph is not None else None
    outn = [x.name for x in sess.get_outputs()]
    zeros = {f"{n}i": s.numpy() for n, s in zip(w.names, w.init_state)}
    st_t, st_o, st_32 = w.init_state, dict(zeros), dict(zeros)
    t_t, t_o, t_32 = [], [], []
    dpha, mpha, dfgr, mad_t, mad_o, calls = [], [], [], [], [], []
    for i in range(frames):
        src, guide = to_inputs(np.asarray(clip.frames[i]), np.asarray(clip.masks[i], np.float32), size)
        gt = _resize(np.asarray(clip.alpha[i], np.float32), size).astype(np.float64)
        t = time.perf_counter()
        pha, fgr, new = w.step(src, guide, st_t)
        t_t.append(time.perf_counter() - t)
        feed = {"src": src, "guide": guide, **st_o}
        t = time.perf_counter()
        res = dict(zip(outn, sess.run(None, feed)))
        t_o.append(time.perf_counter() - t)
        if sess32 is not None:
            t = time.perf_counter()
            r32 = dict(zip(outn, sess32.run(None, {"src": src, "guide": guide, **st_32})))
            t_32.append(time.perf_counter() - t)
            st_32 = {f"{n}i": r32[f"{n}o"] for n in w.names}
        if i < keep_calls:
            outs = {"pha": pha, **({"fgr": fgr} if fgr is not None else {})}
            calls.append(({"src": src, "guide": guide, **{f"{n}i": s.numpy() for n, s in zip(w.names, st_t)}},
                          {**outs, **{f"{n}o": s.numpy() for n, s in zip(w.names, new)}}))
        d = np.abs(res["pha"].astype(np.float64) - pha)
        dpha.append(float(d.max()))
        mpha.append(float(d.mean()))
        if fgr is not None:
            dfgr.append(float(np.max(np.abs(res["fgr"].astype(np.float64) - fgr))))
        mad_t.append(float(np.mean(np.abs(pha[0, 0] - gt))))
        mad_o.append(float(np.mean(np.abs(res["pha"][0, 0] - gt))))
        st_t = new
        st_o = {f"{n}i": res[f"{n}o"] for n in w.names}
    torch_ms, ort_ms = _ms(t_t), _ms(t_o)
    stats = {"frames": frames, "max_abs_diff_pha": max(dpha), "mean_abs_diff_pha": float(np.mean(mpha)),
             "max_abs_diff_fgr": max(dfgr) if dfgr else None, "mad_vs_gt_pytorch": float(np.mean(mad_t)),
             "mad_vs_gt_onnx": float(np.mean(mad_o)), "torch_ms": torch_ms, "ort_ms": ort_ms,
             "fp32_ms": _ms(t_32) if t_32 else ort_ms}
    return stats, calls


def export_student(checkpoint: str | os.PathLike, out: str | os.PathLike,
                   options: StudentExportOptions | None = None, *, source: Source | None = None) -> Path:
    """Export ``checkpoint`` (Lightning .ckpt or save_pretrained folder) to the bundle ``out``."""
    o = options or StudentExportOptions()
    out = Path(out)
    if o.precision not in PRECISIONS:
        raise ConfigError(f"--precision {o.precision!r}: use one of {', '.join(PRECISIONS)}")
    if o.precision == "int8" and not o.calib:
        raise ConfigError("--precision int8 needs calibration frames: pass --calib DATASET "
                          "(a mamakit dataset, e.g. from `mamakit synth`)")
    if o.parity_frames < 2:
        raise ConfigError("--parity-frames must be at least 2")
    exporter = o.exporter if o.exporter != "auto" else ("dynamo" if o.dynamic else "legacy")
    if o.dynamic and exporter != "dynamo":
        raise ConfigError("--dynamic needs the dynamo exporter (the legacy tracer freezes sizes computed from the "
                          "input shape): drop --exporter legacy")
    if exporter not in G.EXPORTERS:
        raise ConfigError(f"--exporter {exporter!r}: use auto, legacy or dynamo")
    opset = int(o.opset or G.default_opset(exporter))
    if not 13 <= opset <= 21:
        raise ConfigError(f"--opset {opset}: use 13..21 (17 legacy / 18 dynamo are tested)")
    check_output(out, o.overwrite)
    src_info = source or read_source(checkpoint)
    if src_info.kind != "student":
        raise ConfigError(f"checkpoint {checkpoint} holds a {src_info.kind!r} model, not a student")
    ds = open_calibration(o.calib, o.min_calib_frames) if o.precision == "int8" else None
    provenance = src_info.provenance(teacher=o.teacher, data=o.training_data, licence=o.licence)

    from mamakit.student import load_student

    try:
        model = load_student(str(checkpoint))
    except InputError:
        raise
    except Exception as exc:
        raise ConfigError(f"checkpoint {checkpoint} does not load as a student ({exc}); pass a checkpoint written by "
                          "`mamakit distill` or a save_pretrained folder") from exc
    set_downsample_ratio(model, o.downsample_ratio)
    apply_student_settings(model, o.student_set)
    w = _Wrapped(model, o.size, fgr=o.fgr)
    W, H = o.size
    log.info("exporting student %s at %dx%d (%s, %s exporter, opset %d)", Path(checkpoint).name, W, H,
             o.precision, exporter, opset)

    stage = Path(tempfile.mkdtemp(prefix=f".tmp-{out.name}-", dir=out.parent))
    work = Path(tempfile.mkdtemp(prefix="mamakit-export-"))
    try:
        # 1. trace + clean up (fp32)
        fp32 = work / "fp32.onnx"
        t0 = time.perf_counter()
        slim = trace_graph(w, o.size, fp32, exporter=exporter, opset=opset, dynamic=o.dynamic)
        if o.dynamic and all(isinstance(d, int) for d in _graph_specs(fp32)[0][0]["shape"]):
            raise ConfigError("this student specialises its input size while tracing (sizes computed with int()), so "
                              "it has no dynamic-shape graph: export static graphs with --size WxH instead of --dynamic")
        log.info("traced in %.1f s; %d -> %d nodes (%s)", time.perf_counter() - t0, slim["nodes_before"],
                 slim["nodes_after"], slim["tool"])
        # 2. precision
        final = stage / "main.onnx"
        conversion: dict = {}
        if o.precision == "fp32":
            shutil.copyfile(fp32, final)
        elif o.precision == "fp16":
            conversion = G.to_fp16(fp32, final)
        else:
            feeds = _calibration_feeds(ds, w, fp32, o.size, o.calib_frames, o.threads)
            conversion = G.quantize_int8(fp32, work / "int8.onnx", feeds, scheme=o.int8_scheme,
                                         convs=o.int8_convs, method=o.calib_method)
            if conversion["calibration_frames"] < o.min_calib_frames:
                raise ParityError(f"calibration saw only {conversion['calibration_frames']} frames "
                                  f"(need {o.min_calib_frames}); use a larger --calib dataset")
            G.simplify(work / "int8.onnx", final)
        # 3. parity on a synthetic clip with ground truth
        k = max(1, min(o.sample_calls, o.parity_frames))
        stats, calls = measure_parity(w, final, o.size, o.parity_frames, o.seed, o.threads,
                                      fp32_graph=None if o.precision == "fp32" else fp32, keep_calls=k)
        parity = _parity_report(o, stats)
        if not parity["passed"]:
            raise ParityError(f"{o.precision} graph fails parity: {parity['failure']}; no bundle written")
        # 4. reference sample: the first K PyTorch calls (inputs + outputs)
        sample = {}
        for i, (ins, outs) in enumerate(calls):
            for name, a in ins.items():
                sample[f"{i:03d}/main/in/{name}"] = np.ascontiguousarray(a, np.float32)
            for name, a in outs.items():
                sample[f"{i:03d}/main/out/{name}"] = np.ascontiguousarray(a, np.float32)
        np.savez_compressed(stage / "sample.npz", **sample)
        compare = w.colour_outputs + ([f"{n}o" for n in w.names] if o.precision == "fp32" else [])
        if o.precision in SAMPLE_ATOL:
            atol = SAMPLE_ATOL[o.precision]
        else:  # int8: the graph differs from PyTorch by quantisation error; bound it by what was measured
            atol = float(min(0.5, max(0.02, 2.0 * _sample_delta(final, calls, w.colour_outputs, o.threads))))
        # 5. manifest
        ins, outs = _graph_specs(final)
        carry = model.state_carry() if callable(getattr(model, "state_carry", None)) else {}
        state = [StateSpec(f"{n}i", f"{n}o", list(s.shape), "float32", "zeros", carry.get(n, "copy"),
                           FlowParams().to_dict() if carry.get(n) == "flow" else {}).to_dict()
                 for n, s in zip(w.names, w.init_state)]
        import onnx
        import onnxruntime
        import torch

        manifest = new_manifest(
            "student", processing_size=(W, H), precision=o.precision,
            downsample_ratio=w.ratio,
            graphs={"main": {"file": "main.onnx", "sha256": sha256_file(final), "opset": opset,
                             "dynamic": bool(o.dynamic), "inputs": ins, "outputs": outs, "state": state}},
            source={"kind": "student", "checkpoint": Path(checkpoint).name, "sha256": src_info.sha256,
                    "format": "save_pretrained folder" if src_info.is_folder else "lightning checkpoint",
                    "weights": "save_pretrained" if src_info.is_folder else ("EMA" if src_info.ema else "raw"),
                    "config": _jsonable(_model_config(model) or src_info.config)},
            export={"exporter": f"torch.onnx ({exporter})", "opset": opset, "simplify": slim,
                    "conversion": conversion, "torch": torch.__version__, "onnx": onnx.__version__,
                    "onnxruntime": onnxruntime.__version__},
            parity=parity,
            provenance=provenance,
            licence=provenance["licence"],
            sample={"file": "sample.npz", "calls": k, "atol": atol, "compare": compare},
            engines=[],
        )
        (stage / "MODEL_CARD.md").write_text(_model_card(manifest))
        write_manifest(stage, manifest)
        # 6. verify the finished folder exactly as `mamakit export check` will
        from .check import check_bundle

        report = check_bundle(stage, threads=o.threads)
        if not report.ok:
            bad = "; ".join(f"{r.item}: {r.detail}" for r in report.failures())
            raise ParityError(f"the freshly written bundle fails its own check ({bad}); no bundle written")
        install_bundle(stage, out, o.overwrite)
        log.info("wrote %s (%s, parity %s)", out, o.precision, parity["summary"])
        return out
    finally:
        shutil.rmtree(work, ignore_errors=True)
        if stage.exists():
            shutil.rmtree(stage, ignore_errors=True)


def _sample_delta(graph: Path, calls, names, threads) -> float:
    sess = G.ort_session(graph, threads)
    outn = [x.name for x in sess.get_outputs()]
    d = 0.0
    for ins, outs in calls:
        res = dict(zip(outn, sess.run(None, ins)))
        for n in names:
            d = max(d, float(np.max(np.abs(res[n] - outs[n]))))
    return d


def _parity_report(o: StudentExportOptions, st: dict) -> dict:
    mad_torch, mad_ort = st["mad_vs_gt_pytorch"], st["mad_vs_gt_onnx"]
    torch_ms, ort_ms, fp32_ms = st["torch_ms"], st["ort_ms"], st["fp32_ms"]
    dpha = [st["max_abs_diff_pha"]]
    rep = {
        "clip": {"generator": "mamakit.synth.make_clip", "seed": o.seed, "frames": st["frames"],
                 "size": list(o.size), "state": "carried frame to frame (PyTorch and ONNX Runtime separately)"},
        "max_abs_diff_pha": st["max_abs_diff_pha"], "mean_abs_diff_pha": st["mean_abs_diff_pha"],
        "max_abs_diff_fgr": st["max_abs_diff_fgr"],
        "mad_vs_gt_pytorch": mad_torch, "mad_vs_gt_onnx": mad_ort,
        "ms_per_frame": {"pytorch": torch_ms, "onnxruntime": ort_ms, "onnxruntime_fp32": fp32_ms,
                         "threads": o.threads, "provider": "CPUExecutionProvider"},
        "speedup_vs_fp32": float(fp32_ms / ort_ms) if ort_ms > 0 else None,
        "speedup_vs_pytorch": float(torch_ms / ort_ms) if ort_ms > 0 else None,
    }
    if o.precision in TOLERANCE:
        tol = TOLERANCE[o.precision]
        rep["criterion"] = f"max |Δα| over the clip <= {tol:g}"
        rep["tolerance"] = tol
        rep["passed"] = bool(max(dpha) <= tol)
        rep["failure"] = None if rep["passed"] else f"max |Δα| {max(dpha):.2e} > {tol:g}"
        rep["summary"] = f"max|Δα| {max(dpha):.1e} <= {tol:g}"
    else:
        limit = mad_torch * (1 + INT8_MAD_SLACK)
        rep["criterion"] = f"MAD vs GT <= {1 + INT8_MAD_SLACK:.2f} x fp32 (PyTorch) MAD"
        rep["tolerance"] = INT8_MAD_SLACK
        rep["mad_ratio_vs_fp32"] = float(mad_ort / mad_torch) if mad_torch > 0 else None
        rep["passed"] = bool(mad_ort <= limit + 1e-9)
        rep["failure"] = None if rep["passed"] else f"int8 MAD {mad_ort:.4f} > {limit:.4f} (fp32 MAD {mad_torch:.4f} + 10 %)"
        rep["speed_target"] = f">= {INT8_SPEEDUP_TARGET}x fp32 on ONNX Runtime CPU"
        rep["speed_target_met"] = bool(rep["speedup_vs_fp32"] and rep["speedup_vs_fp32"] >= INT8_SPEEDUP_TARGET)
        if not rep["speed_target_met"]:
            log.warning("int8 runs %.2fx fp32 here (target >= %.1fx); recorded in the parity report",
                        rep["speedup_vs_fp32"] or 0, INT8_SPEEDUP_TARGET)
        rep["summary"] = f"MAD {mad_ort:.4f} vs fp32 {mad_torch:.4f}"
    return rep


def _jsonable(obj):
    import json

    try:
        json.dumps(obj)
        return obj
    except TypeError:
        if isinstance(obj, dict):
            return {str(k): _jsonable(v) for k, v in obj.items()}
        if isinstance(obj, (list, tuple)):
            return [_jsonable(v) for v in obj]
        return str(obj)


def _model_card(m: dict) -> str:
    p, par = m["provenance"], m["parity"]
    return (
        f"# mamakit student bundle ({m['precision']})\n\n"
        f"- processing size: {m['processing_size'][0]}x{m['processing_size'][1]}, downsample ratio {m['downsample_ratio']}\n"
        f"- source checkpoint: {p['checkpoint']} (sha256 {p['checkpoint_sha256']})\n"
        f"- teacher: {p['teacher']}; training data: {p['training_data']}\n"
        f"- licence of the weights: **{p['licence']}** — {p['licence_note']}\n"
        f"- parity ({par['criterion']}): {par['summary']}\n"
        f"- created {m['created']} with mamakit {m['toolkit_version']}\n\n"
        "Verify anywhere with `mamakit export check <this folder>` (no torch needed).\n"
    )


def install_bundle(stage: Path, out: Path, overwrite: bool) -> None:
    """Move the finished folder onto ``out`` (replacing an old bundle only with ``overwrite``)."""
    if out.exists() and any(out.iterdir()):
        if not overwrite:  # re-checked: someone may have written there meanwhile
            raise BundleError(f"--out {out} appeared while exporting; pass --overwrite to replace it")
        old = out.with_name(f".tmp-old-{out.name}-{os.getpid()}")
        os.replace(out, old)
        os.replace(stage, out)
        shutil.rmtree(old, ignore_errors=True)
    else:
        if out.exists():
            out.rmdir()
        os.replace(stage, out)
