"""Recover a trainable student from a bundle's fp32 ONNX graph (`mamakit export recover`).

A bundle holds the weights of its student in the graph, with every BatchNorm folded into the conv
before it. To fine-tune a shipped student when its checkpoint is not at hand (a fresh machine, a
bundle downloaded alone), :func:`recover_student` rebuilds a :class:`StudentNet` of the bundle's
config whose eval-mode output equals the graph's:

1. a fresh student of the same config is exported through the same path (same exporter, opset,
   size and alpha-only choice), so its graph has the same nodes in the same order;
2. each Conv node of that graph is matched to the torch conv it came from *by value* (its weights
   are the fresh conv's, up to the fresh BatchNorm's 1/sqrt(1 + eps));
3. the trained graph's Conv weights and biases (same node, same position) are copied into that
   conv; a conv followed by a BatchNorm gets the folded weights, and its BatchNorm running
   statistics measured on calibration frames with an exactly compensating affine part
   (``weight = sqrt(var + eps) / c``, ``bias = folded bias + mean / c``, the conv's weights scaled per
   output channel by ``c`` to the RMS of a fresh initialisation): the eval output is unchanged, train-mode
   batch statistics start where the trained student's were, and Adam's fixed-size steps move each conv
   about as much, relative to its weights, as they did in the original training;
4. the recovered student is run against the graph in ONNX Runtime on a synthetic clip; a maximum
   alpha difference above ``tolerance`` refuses the result.
"""
from __future__ import annotations

import logging
import os
import tempfile
from pathlib import Path

import numpy as np

from mamakit.errors import ConfigError, InputError

log = logging.getLogger(__name__)


def _conv_nodes(model_proto):
    from onnx import numpy_helper

    init = {t.name: t for t in model_proto.graph.initializer}
    out = []
    for node in model_proto.graph.node:
        if node.op_type != "Conv":
            continue
        if node.input[1] not in init:
            raise ConfigError(f"Conv node {node.name!r} takes weights computed in the graph, not stored: this "
                              "bundle's graph cannot be recovered (export it again from its checkpoint)")
        w = numpy_helper.to_array(init[node.input[1]]).astype(np.float64)
        b = numpy_helper.to_array(init[node.input[2]]).astype(np.float64) if len(node.input) > 2 and node.input[2] \
            else None
        out.append((w, b))
    return out


def _match(fresh_w: np.ndarray, weights: list[np.ndarray], used: set) -> int:
    """Index of the torch conv weight proportional (cosine > 0.9999) to ``fresh_w``."""
    best, best_cos = -1, 0.0
    f = fresh_w.ravel()
    for i, w in enumerate(weights):
        if w.shape != fresh_w.shape or i in used:
            continue
        cos = float(np.dot(w.ravel(), f) / (np.linalg.norm(w) * np.linalg.norm(f) + 1e-30))
        if cos > best_cos:
            best, best_cos = i, cos
    if best < 0 or best_cos < 0.9999:
        raise ConfigError("the bundle's graph does not match a student of its recorded config (a Conv node has no "
                          "counterpart): recover it with the mamakit version that exported it")
    return best


def _stats_clips(calib, size: tuple[int, int], clips: int, frames: int, seed: int):
    """Clips ``(frames uint8 [T,H,W,3], masks float32 [T,H,W])`` at ``size`` for the BatchNorm statistics:
    from the dataset ``calib`` (the training data: its frames resized, masks degraded from its alpha as
    coarse, relative to the frame, as a 720p video's — as the recipes train) or synthetic clips."""
    from mamakit.degrade import DegradeConfig, degrade_masks

    from .student import _resize

    if calib is None:
        from mamakit.synth import make_clip

        for k in range(clips):
            clip = make_clip(seed + k, frames, size)
            masks = degrade_masks(np.asarray(clip.alpha, np.float32), np.random.default_rng(seed + k))
            yield np.asarray(clip.frames), masks.astype(np.float32)
        return
    from mamakit.dataset import Dataset

    ds = Dataset(calib)
    if len(ds) == 0:
        raise InputError(f"--calib {calib} holds no clips: pass the dataset the student was trained on")
    cfg = DegradeConfig().for_height(size[1], 720)
    rng = np.random.default_rng(seed)
    for i in np.linspace(0, len(ds) - 1, min(clips, len(ds))).round().astype(int):
        clip = ds[int(i)]
        n = min(frames, len(clip))
        f = np.stack([_resize(x, size) for x in clip.frames(list(range(n)))])
        a = np.stack([_resize(np.asarray(x, np.float32), size) for x in clip.alpha(list(range(n)))])
        yield f, degrade_masks(a, rng, cfg).astype(np.float32)


def recover_student(bundle: str | os.PathLike, out: str | os.PathLike | None = None, *, tolerance: float = 1e-3,
                    calib: str | os.PathLike | None = None, stats_size: tuple[int, int] = (256, 144),
                    stats_ratio: float = 0.5, stats_clips: int = 32, stats_frames: int = 8, stats_batch: int = 4,
                    seed: int = 0, threads: int = 1):
    """The bundle's student as a trainable :class:`StudentNet` (eval mode); written with
    ``save_pretrained`` to ``out`` when given. Returns ``(model, report)``.

    ``calib``: the dataset the student will be fine-tuned on (recommended): the BatchNorm statistics are
    measured on its frames (``stats_clips`` clips x ``stats_frames`` frames at ``stats_size``, trunk ratio
    ``stats_ratio``, ``stats_batch`` clips a call — the default recipes' crop geometry and batch), so that in train mode, where BatchNorm uses the
    batch's own statistics, the student computes what it computes in eval mode. Without it, synthetic clips."""
    import onnx
    import torch
    from torch import nn

    from mamakit.bundle import read_manifest
    from mamakit.student.models import StudentConfig, StudentNet

    from . import graph as G
    from .student import _Wrapped, measure_parity, trace_graph

    bundle = Path(bundle)
    manifest = read_manifest(bundle)
    if manifest.get("kind") != "student":
        raise InputError(f"{bundle} holds a {manifest.get('kind')!r} bundle: only student bundles can be recovered")
    if manifest.get("precision") != "fp32":
        raise InputError(f"{bundle} is a {manifest.get('precision')} bundle: recover from the fp32 bundle "
                         "(quantised weights are not the trained ones)")
    cfg_dict = (manifest.get("source") or {}).get("config")
    if not isinstance(cfg_dict, dict):
        raise InputError(f"{bundle}/bundle.json records no student config (source.config): cannot rebuild the student")
    config = StudentConfig.from_dict(cfg_dict)
    spec = manifest["graphs"]["main"]
    W, H = (int(v) for v in manifest["processing_size"])
    outputs = [o["name"] for o in spec["outputs"]]
    fgr = "fgr" in outputs
    trained = onnx.load(str(bundle / spec["file"]))

    torch.manual_seed(seed)
    model = StudentNet(config).eval()
    # per-conv RMS of a fresh initialisation (the scale BatchNorm'd convs get back below)
    init_rms = {n: float(m.weight.detach().pow(2).mean().sqrt()) for n, m in model.named_modules()
                if isinstance(m, nn.Conv2d)}
    with torch.no_grad():  # random weights everywhere (some convs start at zero): every weight tells its conv
        for m in model.modules():
            if isinstance(m, nn.Conv2d):
                m.weight.normal_(0, 0.1)
    w = _Wrapped(model, (W, H), fgr=fgr)
    exporter = "dynamo" if spec.get("dynamic") else "legacy"
    with tempfile.TemporaryDirectory(prefix="mamakit-recover-") as tmp:
        slim = Path(tmp) / "fresh.onnx"
        trace_graph(w, (W, H), slim, exporter=exporter, opset=int(spec.get("opset") or G.default_opset(exporter)),
                    dynamic=bool(spec.get("dynamic")))
        fresh = onnx.load(str(slim))
    ops_t = [n.op_type for n in trained.graph.node]
    ops_f = [n.op_type for n in fresh.graph.node]
    if ops_t != ops_f:
        raise ConfigError(f"the bundle's graph ({len(ops_t)} nodes) is not the graph a student of its config exports "
                          f"to with this mamakit ({len(ops_f)} nodes): recover it with the version that exported it")
    convs = [(n, m) for n, m in model.named_modules() if isinstance(m, nn.Conv2d)]
    bn_after = {}
    for name, mod in model.named_modules():
        kids = list(mod.named_children())
        for (n1, c1), (n2, c2) in zip(kids, kids[1:]):
            if isinstance(c1, nn.Conv2d) and isinstance(c2, nn.BatchNorm2d):
                bn_after[f"{name}.{n1}" if name else n1] = c2
    used: set[int] = set()
    conv_t, conv_f = _conv_nodes(trained), _conv_nodes(fresh)
    # a conv followed by a BatchNorm is scale-free in training: give it the weight scale of a freshly
    # initialised conv (per output channel, RMS of the initialisation) instead of the folded weights'
    # scale, which can be 10x smaller — Adam's steps are a fixed size per weight, so tiny folded
    # weights would train many times faster than the original's did (in session 13's fine-tunes the
    # unscaled folded weights moved by up to 53 % in 600 steps; rescaled and unscaled runs both ended
    # below the recovered student, see docs/student.md "Session 13")
    scale: dict[nn.BatchNorm2d, torch.Tensor] = {}
    with torch.no_grad():
        fresh_weights = [conv.weight.detach().double().numpy() for _, conv in convs]
        for (wt, bt), (wf, _) in zip(conv_t, conv_f):
            i = _match(wf, fresh_weights, used)
            used.add(i)
            name, conv = convs[i]
            w_ = torch.from_numpy(wt)
            bn = bn_after.get(name)
            if bn is not None:
                rms = w_.flatten(1).pow(2).mean(dim=1).sqrt().clamp_min(1e-12)
                c = init_rms[name] / rms
                scale[bn] = c
                conv.weight.copy_(w_ * c.view(-1, *([1] * (w_.dim() - 1))))
                bn.running_mean.zero_()
                bn.running_var.fill_(1.0)
                bn.weight.copy_(torch.sqrt(torch.tensor(1.0 + bn.eps, dtype=torch.float64)) / c)
                bn.bias.copy_(torch.from_numpy(bt if bt is not None else np.zeros(wt.shape[0])))
            else:
                conv.weight.copy_(w_)
                if conv.bias is not None:
                    conv.bias.copy_(torch.from_numpy(bt if bt is not None else np.zeros(wt.shape[0])))
    if len(used) != len(convs):
        missing = [convs[i][0] for i in range(len(convs)) if i not in used]
        log.info("convs absent from the graph (not used by its outputs; left as initialised): %s", ", ".join(missing))

    # BatchNorm statistics of the conv outputs on training-scale frames (eval mode: the output is
    # the graph's whatever the statistics, so one pass measures them all)
    sums: dict[nn.BatchNorm2d, list] = {}

    def hook(bn):
        # what BatchNorm's running statistics average in training: each call's own (batch) mean and
        # unbiased variance — not the variance over all frames, which also counts how frame means differ
        def fn(_mod, inputs):
            x = inputs[0].detach().double()
            acc = sums.setdefault(bn, [0.0, 0.0, 0])
            acc[0] = acc[0] + x.mean(dim=(0, 2, 3))
            acc[1] = acc[1] + x.var(dim=(0, 2, 3), unbiased=True)
            acc[2] += 1
        return fn

    handles = [bn.register_forward_pre_hook(hook(bn)) for bn in bn_after.values()]
    torch.set_num_threads(threads)
    deploy_ratio = config.downsample_ratio
    model.reconfigure(downsample_ratio=stats_ratio)
    try:
        clips = list(_stats_clips(calib, stats_size, stats_clips, stats_frames, seed + 12345))
        with torch.no_grad():
            for b0 in range(0, len(clips), stats_batch):  # clips side by side, as in a training batch
                group = clips[b0:b0 + stats_batch]
                T = min(len(f) for f, _ in group)
                state = model.initial_state(len(group), stats_size[1], stats_size[0])
                for t in range(T):
                    src = torch.stack([torch.from_numpy(f[t]).permute(2, 0, 1) for f, _ in group]).float() / 255.0
                    guide = torch.stack([torch.from_numpy(m[t])[None] for _, m in group])
                    _, _, *state = model(src, guide, *state)
    finally:
        for h in handles:
            h.remove()
        model.reconfigure(downsample_ratio=deploy_ratio)
    with torch.no_grad():
        for bn, (s, s2, n) in sums.items():
            # the conv now computes z = c * (folded conv); eval BatchNorm must give back z / c + folded bias
            c = scale[bn].double()
            mean = s / n
            var = (s2 / n).clamp_min(1e-12)
            folded_bias = bn.bias.double()  # running_mean is 0 so far
            bn.running_mean.copy_(mean.float())
            bn.running_var.copy_(var.float())
            bn.weight.copy_((torch.sqrt(var + bn.eps) / c).float())
            bn.bias.copy_((folded_bias + mean / c).float())
    model.eval()
    parity, _ = measure_parity(w, bundle / spec["file"], (W, H), frames=4,
                               seed=seed + 777, threads=threads, keep_calls=0)
    delta = parity["max_abs_diff_pha"]
    report = {"convs": len(conv_t), "batchnorms": len(sums), "max_abs_alpha_diff": delta, "size": [W, H],
              "statistics": str(calib) if calib is not None else "synthetic clips"}
    if not delta <= tolerance:
        raise ConfigError(f"the recovered student differs from the bundle's graph by {delta:.2e} in alpha "
                          f"(> {tolerance:g}): not written")
    log.info("recovered %d convs and %d BatchNorms; max |alpha - graph| %.2e over a synthetic clip",
             len(conv_t), len(sums), delta)
    if out is not None:
        model.save_pretrained(out)
    return model, report
