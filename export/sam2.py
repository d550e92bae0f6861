"""Export a SAM2-Matte checkpoint as a streaming bundle of kind ``sam2-matte``.

Four static-shape ONNX graphs (the runtime owns the memory bank and drives them frame by frame):

``encoder``  image [1,3,S,S] (RGB 0..1)                    -> feat, high0, high1
``prompt``   feat, high0, high1, image, points [1,4,2], labels [1,4]
                                                         -> alpha, mask_hr, obj_ptr, obj_score
``track``    feat, high0, high1, image, mem [1,N,Cm,f,f], mem_valid [1,N], ptr [1,P,C],
             ptr_tdiff [P], ptr_valid [1,P]              -> alpha, mask_hr, obj_ptr, obj_score
``memory``   feat, mask_hr, obj_score                    -> mem [1,Cm,f,f]

The bank layout (slot 0 = the prompted frame, then the most recent frames newest first; SAM2's
temporal indices are baked into ``track``) is written to ``manifest["sam2"]``. Parity: a 10-frame
tracking run on a held-out synthetic clip, PyTorch vs ONNX Runtime each with its own bank
(free-running); max |Δα| per frame must stay within ``atol`` (1e-3 fp32) or the export fails.
"""
from __future__ import annotations

import logging
import os
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np

from mamakit.bundle import MANIFEST, new_manifest, write_manifest
from mamakit.errors import BundleError, ConfigError, ParityError
from mamakit.fsutil import write_json_atomic

log = logging.getLogger(__name__)

GRAPHS = ("encoder", "prompt", "track", "memory")
PROMPT_POINTS = 4
PARITY_FRAMES = 10
SAMPLE_FRAMES = 4
ATOL = {"fp32": 1e-3, "fp16": 3e-2}


# -- torch wrappers, one per graph ----------------------------------------------------------------
def _wrappers(model):
    import torch
    from torch import nn

    n = model.config.max_memories
    refiner = model.refiner is not None

    class Encoder(nn.Module):
        def __init__(self):
            super().__init__()
            self.m = model

        def forward(self, image):
            return self.m.encode(image)

    class Prompt(nn.Module):
        def __init__(self):
            super().__init__()
            self.m = model

        def forward(self, *args):
            if refiner:
                feat, high0, high1, image, points, labels = args
            else:
                (feat, high0, high1, points, labels), image = args, None
            return self.m.prompt(feat, high0, high1, image, points, labels)

    class Track(nn.Module):
        def __init__(self):
            super().__init__()
            self.m = model
            self.register_buffer("tpos", torch.tensor([n - 1] + list(range(n - 1)), dtype=torch.long),
                                 persistent=False)

        def forward(self, *args):
            if refiner:
                feat, high0, high1, image, mem, mem_valid, ptr, ptr_tdiff, ptr_valid = args
            else:
                (feat, high0, high1, mem, mem_valid, ptr, ptr_tdiff, ptr_valid), image = args, None
            return self.m.track(feat, high0, high1, image, mem, self.tpos, mem_valid, ptr, ptr_tdiff, ptr_valid)

    class Memory(nn.Module):
        def __init__(self):
            super().__init__()
            self.m = model

        def forward(self, feat, mask_hr, obj_score):
            return self.m.memorize(feat, mask_hr, obj_score)

    heads_out = ["alpha", "mask_hr", "obj_ptr", "obj_score"]
    img = ["image"] if refiner else []
    return {
        "encoder": (Encoder(), ["image"], ["feat", "high0", "high1"]),
        "prompt": (Prompt(), ["feat", "high0", "high1", *img, "points", "labels"], heads_out),
        "track": (Track(), ["feat", "high0", "high1", *img, "mem", "mem_valid", "ptr", "ptr_tdiff", "ptr_valid"],
                  heads_out),
        "memory": (Memory(), ["feat", "mask_hr", "obj_score"], ["mem"]),
    }


class _Call:
    """Runs one graph wrapper in PyTorch on numpy feeds (by input name)."""

    def __init__(self, module, inputs):
        self.module, self.inputs = module, inputs

    def torch(self, feeds: dict, names: list[str]) -> dict:
        import torch

        with torch.no_grad():
            res = self.module(*(torch.from_numpy(np.ascontiguousarray(feeds[k])) for k in self.inputs))
        if not isinstance(res, (tuple, list)):
            res = (res,)
        return {n: r.detach().cpu().numpy() for n, r in zip(names, res)}


# -- the numpy bank used for the ONNX Runtime side of the parity run ------------------------------
class NumpyBank:
    """Fixed-size bank: slot 0 the prompted frame, then recent frames newest first."""

    def __init__(self, n: int, p: int, mem_shape: tuple, ptr_dim: int):
        self.n, self.p = n, p
        self.mem = np.zeros((1, n, *mem_shape), np.float32)
        self.mem_valid = np.zeros((1, n), np.float32)
        self.ptr = np.zeros((1, p, ptr_dim), np.float32)
        self.ptr_valid = np.zeros((1, p), np.float32)
        self.ptr_tdiff = np.concatenate([[0.0], np.arange(1, p)]).astype(np.float32)
        self.age = 0

    def add(self, mem: np.ndarray, ptr: np.ndarray, is_prompt: bool) -> None:
        if is_prompt:
            self.mem[:] = 0
            self.mem_valid[:] = 0
            self.ptr[:] = 0
            self.ptr_valid[:] = 0
            self.mem[0, 0], self.mem_valid[0, 0] = mem[0], 1
            self.ptr[0, 0], self.ptr_valid[0, 0] = ptr[0], 1
            self.age = 0
            return
        if self.n > 1:
            self.mem[0, 2:] = self.mem[0, 1:-1].copy()
            self.mem_valid[0, 2:] = self.mem_valid[0, 1:-1].copy()
            self.mem[0, 1], self.mem_valid[0, 1] = mem[0], 1
        if self.p > 1:
            self.ptr[0, 2:] = self.ptr[0, 1:-1].copy()
            self.ptr_valid[0, 2:] = self.ptr_valid[0, 1:-1].copy()
            self.ptr[0, 1], self.ptr_valid[0, 1] = ptr[0], 1

    def feeds(self) -> dict:
        self.age += 1
        self.ptr_tdiff[0] = float(self.age)
        return {"mem": self.mem, "mem_valid": self.mem_valid, "ptr": self.ptr, "ptr_tdiff": self.ptr_tdiff,
                "ptr_valid": self.ptr_valid}


def prompt_arrays(points=None, box=None, max_points: int = PROMPT_POINTS):
    """Model-pixel click points [(x, y, label)...] and/or a box -> (points [1,P,2], labels [1,P])."""
    pts, lbs = [], []
    if box is not None:
        x0, y0, x1, y1 = box
        pts += [[x0, y0], [x1, y1]]
        lbs += [2, 3]
    for x, y, lab in points or []:
        pts.append([x, y])
        lbs.append(int(lab))
    if not pts or len(pts) > max_points:
        raise ConfigError(f"a SAM2-Matte prompt takes 1..{max_points} points (a box counts as 2), got {len(pts)}")
    while len(pts) < max_points:
        pts.append([0.0, 0.0])
        lbs.append(-1)
    return np.asarray([pts], np.float32), np.asarray([lbs], np.int32)


# -- export -------------------------------------------------------------------------------------
def _parity_clip(size: int, frames: int, seed: int):
    from mamakit.student.sam2matte.data import synthetic_clip

    f, a = synthetic_clip(seed, frames, size)
    return f, a


def _image(frame: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(frame.transpose(2, 0, 1)[None].astype(np.float32) / 255.0)


def _click_from_alpha(alpha0: np.ndarray):
    import cv2

    inner = cv2.erode((alpha0 > 0.5).astype(np.uint8), np.ones((5, 5), np.uint8))
    ys, xs = np.nonzero(inner if inner.any() else alpha0 > 0.5)
    if len(xs) == 0:
        raise ParityError("the parity clip's first frame shows no object; cannot place a prompt")
    i = int(np.argmin((xs - xs.mean()) ** 2 + (ys - ys.mean()) ** 2))
    return float(xs[i]), float(ys[i])


def _run_loop(call, frames, points, labels, n, p, mem_shape, ptr_dim, record=None):
    """Drive the four graphs over ``frames`` with a NumpyBank. ``call(graph, feeds) -> outputs``."""
    bank = NumpyBank(n, p, mem_shape, ptr_dim)
    alphas, scores = [], []
    for i, frame in enumerate(frames):
        image = _image(frame)
        enc = call("encoder", {"image": image})
        feeds = {"feat": enc["feat"], "high0": enc["high0"], "high1": enc["high1"], "image": image}
        if i == 0:
            head = call("prompt", {**feeds, "points": points, "labels": labels})
        else:
            head = call("track", {**feeds, **{k: v.copy() for k, v in bank.feeds().items()}})
        mem = call("memory", {"feat": enc["feat"], "mask_hr": head["mask_hr"], "obj_score": head["obj_score"]})
        bank.add(mem["mem"], head["obj_ptr"], is_prompt=(i == 0))
        alphas.append(head["alpha"][0, 0])
        scores.append(float(head["obj_score"].reshape(-1)[0]))
    return alphas, scores


def _specs(path: Path) -> tuple[list[dict], list[dict]]:
    import onnx

    m = onnx.load(str(path), load_external_data=False)
    types = {1: "float32", 6: "int32", 7: "int64", 10: "float16"}

    def spec(v):
        t = v.type.tensor_type
        shape = [d.dim_value if d.HasField("dim_value") else (d.dim_param or "?") for d in t.shape.dim]
        return {"name": v.name, "shape": shape, "dtype": types.get(t.elem_type, str(t.elem_type)),
                "layout": "NCHW" if len(shape) == 4 else "", "normalisation": _NORM.get(v.name, "")}

    return [spec(v) for v in m.graph.input], [spec(v) for v in m.graph.output]


_NORM = {"image": "rgb 0..1", "alpha": "alpha 0..1", "mask_hr": "logits at model size",
         "obj_score": "logit (>0: object visible)", "points": "model pixels (x, y)",
         "labels": "1 fg, 0 bg, 2/3 box corners, -1 padding", "mem_valid": "1 = slot used",
         "ptr_valid": "1 = slot used", "ptr_tdiff": "frames between pointer and current frame"}


def export_sam2_matte(checkpoint, out, *, image_size: int | None = None, precision: str = "fp32", opset: int = 18,
                      calib=None, exporter: str = "auto", threads: int = 2, seed: int = 1_000_003) -> Path:
    """Export ``checkpoint`` (Lightning .ckpt with kind sam2-matte, or a save_pretrained folder) to
    the bundle folder ``out``; raises :class:`ParityError` (nothing written) if ORT != PyTorch.

    ``exporter="auto"``: the dynamo exporter at opset >= 18, the legacy TorchScript one below
    (FIELD_GUIDE §5.10: both produce graphs ONNX Runtime and TensorRT accept; legacy traces faster)."""
    import torch

    from mamakit.export.graph import export_module, ort_session, simplify, to_fp16
    from mamakit.student.sam2matte.io import load_sam2_matte

    if precision not in ATOL:
        raise ConfigError(f"--precision {precision!r} is not supported for SAM2-Matte bundles: use fp32 or fp16")
    if exporter == "auto":
        exporter = "dynamo" if int(opset) >= 18 else "legacy"
    if calib is not None:
        log.info("SAM2-Matte export ignores calibration data (no int8 path)")
    out = Path(out)
    if out.exists() and out.is_file():
        raise ConfigError(f"--out {out} is a file; a bundle is a folder: choose another path")
    if out.exists() and any(out.iterdir()) and not (out / MANIFEST).is_file():
        raise ConfigError(f"--out {out} exists and is not a bundle: choose an empty or new folder")
    if image_size is not None and (int(image_size) % 64 or int(image_size) < 128):
        raise ConfigError(f"image size {image_size}: use a multiple of 64, at least 128 (e.g. 256, 512, 1024)")
    t0 = time.perf_counter()
    model = load_sam2_matte(checkpoint, image_size=image_size)
    cfg = model.config
    s, fs = cfg.image_size, cfg.feat_size
    d = model.dims
    n, p = cfg.max_memories, cfg.max_obj_ptrs
    mem_shape = (d["mem_dim"], fs, fs)
    wrappers = _wrappers(model)
    calls = {g: _Call(w[0], w[1]) for g, w in wrappers.items()}

    frames, gt = _parity_clip(s, PARITY_FRAMES, seed)
    cx, cy = _click_from_alpha(gt[0])
    points, labels = prompt_arrays(points=[(cx, cy, 1)])

    # 1. the PyTorch reference run (also warms SAM2's position-encoding caches with real tensors)
    record: list = []

    def torch_call(graph, feeds):
        outs = calls[graph].torch(feeds, wrappers[graph][2])
        record.append((graph, {k: np.array(feeds[k]) for k in wrappers[graph][1]}, outs))
        return outs

    ref_alpha, ref_scores = _run_loop(torch_call, frames, points, labels, n, p, mem_shape, d["hidden_dim"])

    parent = out.parent if str(out.parent) else Path(".")
    stage = Path(tempfile.mkdtemp(prefix=f".tmp-{out.name}-", dir=parent))
    os.chmod(stage, 0o755)
    try:
        # 2. trace each graph on the inputs of its first recorded call
        report = {}
        for g in GRAPHS:
            module, in_names, out_names = wrappers[g]
            first = next(r for r in record if r[0] == g)
            args = tuple(torch.from_numpy(first[1][k]) for k in in_names)
            raw = stage / f"{g}.raw.onnx"
            export_module(module, args, raw, input_names=in_names, output_names=out_names, exporter=exporter,
                          opset=opset)
            final = stage / f"{g}.onnx"
            rep = simplify(raw, final)
            if precision == "fp16":
                rep["fp16"] = to_fp16(final, final)
            for extra in stage.glob(f"{g}.raw.onnx*"):
                extra.unlink()
            report[g] = rep
        # 3. ONNX Runtime, free-running with its own bank
        sessions = {g: ort_session(stage / f"{g}.onnx", threads) for g in GRAPHS}

        def ort_call(graph, feeds):
            sess = sessions[graph]
            names = [i.name for i in sess.get_inputs()]
            res = sess.run(None, {k: feeds[k] for k in names})
            return dict(zip([o.name for o in sess.get_outputs()], res))

        t1 = time.perf_counter()
        got_alpha, got_scores = _run_loop(ort_call, frames, points, labels, n, p, mem_shape, d["hidden_dim"])
        ort_s = time.perf_counter() - t1
        deltas = [float(np.abs(a - b).max()) for a, b in zip(ref_alpha, got_alpha)]
        means = [float(a.mean()) for a in ref_alpha]
        stds = [float(a.std()) for a in ref_alpha]
        atol = ATOL[precision]
        from mamakit.student.sam2matte.evaluate import iou

        ious = [iou(a, g) for a, g in zip(ref_alpha, gt)]
        parity = {
            "criterion": f"max |alpha_onnxruntime - alpha_pytorch| <= {atol} on every frame of a {PARITY_FRAMES}-frame "
                         "tracking run (each side with its own memory bank), prompted by one click on frame 0",
            "frames": PARITY_FRAMES, "image_size": s, "atol": atol, "max_abs_alpha": deltas,
            "alpha_mean": means, "alpha_std": stds, "obj_score_pytorch": ref_scores, "obj_score_onnxruntime": got_scores,
            "iou_vs_gt": ious, "clip": {"kind": "synthetic", "seed": seed, "prompt": [cx, cy]},
            "ort_ms_per_frame": round(1000 * ort_s / PARITY_FRAMES, 2),
            "summary": f"max |Δα| {max(deltas):.2e} over {PARITY_FRAMES} frames (alpha mean "
                       f"{np.mean(means):.3f}, std {np.mean(stds):.3f})",
        }
        parity["ok"] = bool(max(deltas) <= atol)
        if not parity["ok"]:
            raise ParityError(f"SAM2-Matte ONNX graphs differ from PyTorch: max |Δα| per frame {deltas} exceeds "
                              f"{atol}; the bundle was not written")
        # 4. the reference sample for `mamakit export check`
        sample_calls = record
        keep, frame_no = [], -1
        for graph, ins, outs in sample_calls:
            if graph == "encoder":
                frame_no += 1
            if frame_no < SAMPLE_FRAMES:
                keep.append((graph, ins, outs))
        arrays = {}
        for k, (graph, ins, outs) in enumerate(keep):
            sess_in = {i.name for i in sessions[graph].get_inputs()}
            for name, v in ins.items():
                if name in sess_in:
                    arrays[f"{k:03d}/{graph}/in/{name}"] = v
            for name, v in outs.items():
                arrays[f"{k:03d}/{graph}/out/{name}"] = v
        np.savez_compressed(stage / "sample.npz", **arrays)
        del sessions
        graphs = {}
        for g in GRAPHS:
            ins, outs = _specs(stage / f"{g}.onnx")
            graphs[g] = {"file": f"{g}.onnx", "inputs": ins, "outputs": outs, "export": report[g]}
        manifest = new_manifest(
            "sam2-matte", processing_size=(s, s), precision=precision, graphs=graphs,
            sam2={"image_size": s, "feat_size": fs, "hidden_dim": d["hidden_dim"], "mem_dim": d["mem_dim"],
                  "max_memories": n, "max_obj_ptrs": p, "prompt_points": PROMPT_POINTS,
                  "mem_tpos": [n - 1] + list(range(n - 1)), "refiner": cfg.refiner,
                  "resize": "stretch", "needs_prompt": True,
                  "bank": "slot 0 = prompted frame; slots 1.. = most recent frames, newest first; pointer "
                          "slot 0 has ptr_tdiff = frames since the prompt, slot i >= 1 has ptr_tdiff = i",
                  "config": cfg.to_dict()},
            # rtol: encoder features of a trained model reach tens; float32 rounding scales with them
            sample={"file": "sample.npz", "calls": len(keep), "atol": 1e-4 if precision == "fp32" else 5e-2,
                    "rtol": 1e-5 if precision == "fp32" else 0.0},
            parity=parity, exporter={"tool": exporter, "opset": opset},
            source={"checkpoint": Path(checkpoint).name},
        )
        write_manifest(stage, manifest)
        from mamakit.export.student import install_bundle

        install_bundle(stage, out, overwrite=True)
    except BaseException:
        shutil.rmtree(stage, ignore_errors=True)
        raise
    log.info("exported SAM2-Matte bundle %s (%dx%d, %s) in %.1f s: %s", out, s, s, precision,
             time.perf_counter() - t0, parity["summary"])
    return out


