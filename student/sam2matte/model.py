"""SAM2-Matte: SAM2's video model read as a matting model (sigmoid of the mask logits = alpha),
plus an optional light refiner at model-input resolution guided by the frame.

:class:`Sam2Matte` keeps a ``SAM2Base`` as ``self.sam`` (built through :mod:`.adapter`) and
exposes the four streaming steps the exporter turns into graphs:

``encode(image)`` -> ``feat, high0, high1``
``prompt(feat, high0, high1, image, points, labels)`` -> ``alpha, mask_hr, obj_ptr, obj_score``
``track(feat, high0, high1, image, mem, mem_tpos, mem_valid, ptr, ptr_tdiff, ptr_valid)`` -> same
``memorize(feat, mask_hr, obj_score)`` -> ``mem``

:class:`MemoryBank` is the PyTorch twin of the runtime's numpy bank (same slots, same order), and
:meth:`Sam2Matte.track_clip` runs a whole clip through it — for training and for reference runs.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from mamakit.errors import ConfigError

from . import adapter
from .config import Sam2MatteConfig

log = logging.getLogger(__name__)


class Refiner(nn.Module):
    """Three 3x3 convs on (frame, SAM2 alpha) at model size -> a logit residual (zero at init)."""

    def __init__(self, channels: int = 16):
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(4, channels, 3, padding=1), nn.ReLU(inplace=True),
            nn.Conv2d(channels, channels, 3, padding=1), nn.ReLU(inplace=True),
            nn.Conv2d(channels, 1, 3, padding=1))
        nn.init.zeros_(self.body[-1].weight)
        nn.init.zeros_(self.body[-1].bias)

    def forward(self, image: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
        coarse = torch.sigmoid(logits)
        delta = self.body(torch.cat([image, coarse], dim=1))
        return torch.sigmoid(logits + delta)


@torch.no_grad()
def add_locality_bias(attn: nn.Module, strength: float, pairs: int = 3) -> None:
    """Add one common vector (r^2 = ``strength`` on the ``pairs`` highest-frequency axial-RoPE pairs
    of each axis, every head) to ``attn``'s query and key biases: after RoPE it adds a "same place"
    peak to q.k (see :meth:`Sam2Matte.add_locality_prior`)."""
    d = attn.internal_dim // attn.num_heads
    vec = torch.zeros(d)
    for axis in range(2):  # axial RoPE: pairs [0, d/4) rotate with x, [d/4, d/2) with y
        for k in range(pairs):
            vec[2 * (axis * d // 4 + k)] = float(strength) ** 0.5
    vec = vec.repeat(attn.num_heads)
    attn.q_proj.bias.add_(vec.to(attn.q_proj.bias))
    attn.k_proj.bias.add_(vec.to(attn.k_proj.bias))


class Sam2Matte(nn.Module):
    """SAM2 video model + matting head. Builds random weights; loaders live in :mod:`.io`."""

    def __init__(self, config: Sam2MatteConfig):
        super().__init__()
        self.config = config
        self.sam = adapter.build_sam2(config)
        adapter.reference_track_step_check(self.sam)
        self.refiner = Refiner(config.refiner_channels) if config.refiner else None
        self.dims = adapter.dims(self.sam)
        rope_sa, rope_ca = adapter.make_ropes(self.sam, config.feat_size)
        self.rope_sa, self.rope_ca = rope_sa, rope_ca
        img_pos, mem_pos = adapter.positional_maps(self.sam, config.image_size)
        self.register_buffer("img_pos", img_pos, persistent=False)
        self.register_buffer("mem_pos", mem_pos, persistent=False)
        self.track_multimask = adapter.tracking_multimask(self.sam)

    # -- the four streaming steps ---------------------------------------------------------------
    def encode(self, image: torch.Tensor):
        feat, high0, high1 = adapter.encode_image(self.sam, image)
        if self.config.feat_norm:  # per position, over channels, no weights (ONNX LayerNormalization)
            feat = F.layer_norm(feat.permute(0, 2, 3, 1), (self.dims["hidden_dim"],)).permute(0, 3, 1, 2)
        return feat, high0, high1

    def _finish(self, image, low, high, obj_ptr, obj_score):
        alpha = self.refiner(image, high) if self.refiner is not None else torch.sigmoid(high)
        return alpha, high, obj_ptr, obj_score

    def prompt(self, feat, high0, high1, image, points=None, labels=None, mask_inputs=None):
        if mask_inputs is not None and points is None and adapter.uses_mask_as_output(self.sam):
            # SAM2's mask prompt: the mask itself is the prompted frame's output (and memory)
            low, high, ptr, score = adapter.mask_as_output(self.sam, feat, high0, high1, mask_inputs)
            return self._finish(image, low, high, ptr, score)
        pix = adapter.no_memory_features(self.sam, feat)
        n = 0 if points is None else points.shape[1]
        multimask = self.config.multimask_prompt and adapter.prompt_multimask(self.sam, n)
        low, high, ptr, score = adapter.sam_heads(self.sam, pix, high0, high1, points, labels, mask_inputs, multimask)
        return self._finish(image, low, high, ptr, score)

    def track(self, feat, high0, high1, image, mem, mem_tpos, mem_valid, ptr, ptr_tdiff, ptr_valid):
        pix = adapter.condition_on_memory(self.sam, (self.rope_sa, self.rope_ca), feat, self.img_pos, self.mem_pos,
                                          mem, mem_tpos, mem_valid, ptr, ptr_tdiff, ptr_valid)
        low, high, ptr_out, score = adapter.sam_heads(self.sam, pix, high0, high1, multimask=self.track_multimask)
        return self._finish(image, low, high, ptr_out, score)

    def memorize(self, feat, mask_hr, obj_score):
        return adapter.encode_memory(self.sam, feat, mask_hr, obj_score)

    # -- whole clips --------------------------------------------------------------------------
    def new_bank(self, batch: int, device=None, dtype=torch.float32) -> "MemoryBank":
        d = self.dims
        fs = self.config.feat_size
        return MemoryBank(self.config.max_memories, self.config.max_obj_ptrs, batch, d["mem_dim"], d["hidden_dim"],
                          fs, device=device, dtype=dtype)

    def track_clip(self, frames: torch.Tensor, points=None, labels=None, mask_inputs=None, encoder_grad: bool = True,
                   teacher_masks: torch.Tensor | None = None, teacher: torch.Tensor | None = None,
                   drop_highres: torch.Tensor | None = None):
        """frames [B,T,3,S,S] 0..1, prompt on frame 0 -> dict of [B,T,...] alphas, logits, scores.

        Training only: ``teacher_masks`` [B,T,S,S] (0..1) and ``teacher`` [B,T] bool make the memory
        of the flagged tracked frames hold the true mask (logits +-10, score +-10, as SAM2's mask
        prompt) instead of the prediction, so that reading the memory pays off from the start.
        ``drop_highres`` [B] bool zeroes the decoder's high-res skip features (``high0``, ``high1``) of
        the flagged clips, so their masks must come through the memory-conditioned 1/16 features;
        [B,T] bool zeroes them per frame (e.g. only the prompted frame 0, whose mask then has to come
        through the prompt-conditioned 1/16 features)."""
        b, t = frames.shape[:2]
        flat = frames.flatten(0, 1)
        if encoder_grad:
            feat, h0, h1 = self.encode(flat)
        else:
            with torch.no_grad():
                feat, h0, h1 = self.encode(flat)
        feat, h0, h1 = (x.unflatten(0, (b, t)) for x in (feat, h0, h1))
        if drop_highres is not None and bool(drop_highres.any()):
            keep = (~drop_highres).to(h0.dtype)
            keep = keep.view(b, t, 1, 1, 1) if keep.dim() == 2 else keep.view(b, 1, 1, 1, 1)
            h0, h1 = h0 * keep, h1 * keep
        bank = self.new_bank(b, frames.device, feat.dtype)
        alphas, logits, scores = [], [], []
        for i in range(t):
            img = frames[:, i]
            if i == 0:
                alpha, hr, ptr, score = self.prompt(feat[:, 0], h0[:, 0], h1[:, 0], img, points, labels, mask_inputs)
            else:
                alpha, hr, ptr, score = self.track(feat[:, i], h0[:, i], h1[:, i], img, *bank.inputs())
            mem = self.memorize(feat[:, i], hr, score)
            if teacher is not None and i > 0 and bool(teacher[:, i].any()):
                gt = (teacher_masks[:, i:i + 1] > 0.5).to(hr.dtype)
                present = (gt.flatten(1).sum(1, keepdim=True) >= 4).to(hr.dtype)
                mem_gt = self.memorize(feat[:, i], gt * 20.0 - 10.0, present * 20.0 - 10.0)
                sel = teacher[:, i].view(-1, 1, 1, 1)
                mem = torch.where(sel, mem_gt, mem)
            bank.add(mem, ptr, is_prompt=(i == 0))
            alphas.append(alpha)
            logits.append(hr)
            scores.append(score)
        return {"alpha": torch.stack(alphas, 1)[:, :, 0], "logits": torch.stack(logits, 1)[:, :, 0],
                "obj_score": torch.stack(scores, 1)[:, :, 0]}

    @torch.no_grad()
    def add_locality_prior(self, strength: float = 10.0, pairs: int = 3) -> None:
        """Give the memory cross-attention a "same place" prior: add one common vector to the query
        and key biases, on the ``pairs`` highest-frequency RoPE pairs of each axis (r^2 = ``strength``
        per pair). After RoPE its part of q.k is sum r^2 cos(theta (p_q - p_k)) / sqrt(d), peaked at
        zero offset, so a frame attends to the memories at (about) its own location and reads the
        mask stored there — the shortcut a tracker needs, which from random or saliency-trained
        weights the attention does not find in a short CPU budget (its weights are only changed,
        not the architecture: export and runtime are unaffected)."""
        for layer in self.sam.memory_attention.layers:
            add_locality_bias(layer.cross_attn_image, strength, pairs)

    @torch.no_grad()
    def amplify_memory_read(self, gain: float = 1.0, mask_gain: float = 1.0) -> None:
        """Scale the memory cross-attention's output projection by ``gain`` and the memory encoder's
        mask path by ``mask_gain``. Training from scratch grows the image features (mean |x| 0.5 ->
        14 in the session-3 model) while the attention read of the memory stays small, so the
        memory ends up < 0.3 % of the residual stream and is ignored; this puts it back in reach."""
        for layer in self.sam.memory_attention.layers:
            out = layer.cross_attn_image.out_proj
            out.weight.mul_(gain)
            out.bias.mul_(gain)
        conv = [m for m in self.sam.memory_encoder.mask_downsampler.modules() if isinstance(m, nn.Conv2d)][-1]
        conv.weight.mul_(mask_gain)
        if conv.bias is not None:
            conv.bias.mul_(mask_gain)

    def tied_copy(self, image_size: int) -> "Sam2Matte":
        """A model at another input size that shares every parameter and persistent buffer with
        this one (weights are size-independent; RoPE tables and position maps follow the size).
        Used for progressive-resolution training."""
        import dataclasses

        other = Sam2Matte(dataclasses.replace(self.config, image_size=int(image_size)))
        mine = dict(self.named_modules())
        for name, mod in other.named_modules():
            src = mine[name]
            for pname in list(mod._parameters):
                mod._parameters[pname] = src._parameters[pname]
            for bname in list(mod._buffers):
                if bname not in mod._non_persistent_buffers_set:
                    mod._buffers[bname] = src._buffers[bname]
        return other

    # -- weights --------------------------------------------------------------------------------
    def save_pretrained(self, path: str | Path) -> None:
        from safetensors.torch import save_file

        from mamakit.fsutil import atomic_path

        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        self.config.save(path / "config.json")
        sd = {k: v.detach().contiguous().cpu() for k, v in self.state_dict().items()}
        with atomic_path(path / "model.safetensors") as tmp:
            save_file(sd, str(tmp), metadata={"kind": "sam2-matte"})

    def load_weights(self, state_dict: dict) -> None:
        try:
            missing, unexpected = self.load_state_dict(state_dict, strict=False)
        except RuntimeError as exc:  # same keys, other shapes
            first = str(exc).strip().splitlines()[-1].strip()
            raise ConfigError(f"SAM2-Matte weights do not match the config ({first[:200]})") from exc
        if missing or unexpected:
            raise ConfigError(f"SAM2-Matte weights do not match the config: {len(missing)} missing keys "
                              f"(e.g. {missing[:3]}), {len(unexpected)} unexpected (e.g. {unexpected[:3]})")


@dataclass
class MemoryBank:
    """The fixed-size memory bank (PyTorch twin of the runtime's numpy bank).

    Slot 0 holds the prompted frame's memory (SAM2 temporal index N-1); slots 1.. hold the most
    recent tracked frames, newest first (temporal index 0 = previous frame). Pointers: slot 0 the
    prompted frame's, then the most recent tracked frames, newest first, with signed distances.
    """

    max_memories: int
    max_ptrs: int
    batch: int
    mem_dim: int
    hidden_dim: int
    feat_size: int
    device: object = None
    dtype: object = torch.float32

    def __post_init__(self):
        self.prompt_mem = None
        self.prompt_ptr = None
        self.recent_mem: list = []  # newest first
        self.recent_ptr: list = []
        self.age = 0  # frames since the prompt

    def add(self, mem, ptr, is_prompt: bool) -> None:
        if is_prompt:
            self.prompt_mem, self.prompt_ptr = mem, ptr
            self.recent_mem, self.recent_ptr, self.age = [], [], 0
            return
        self.recent_mem.insert(0, mem)
        self.recent_ptr.insert(0, ptr)
        del self.recent_mem[self.max_memories - 1:]
        del self.recent_ptr[self.max_ptrs - 1:]

    def inputs(self):
        """Tensors for :meth:`Sam2Matte.track` at the next frame (advances the clock)."""
        self.age += 1
        b, n, p, fs = self.batch, self.max_memories, self.max_ptrs, self.feat_size
        kw = {"device": self.device, "dtype": self.dtype}
        mems = [self.prompt_mem, *self.recent_mem]
        mem = torch.stack(mems + [torch.zeros_like(self.prompt_mem)] * (n - len(mems)), 1)
        mem_valid = torch.tensor([[1.0] * len(mems) + [0.0] * (n - len(mems))], **kw).expand(b, -1)
        # SAM2 temporal index: prompted frame N-1, the frame d steps back d-1 (d = 1..N-1)
        mem_tpos = torch.tensor([n - 1] + list(range(n - 1)), device=self.device, dtype=torch.long)
        ptrs = [self.prompt_ptr, *self.recent_ptr]
        ptr = torch.stack(ptrs + [torch.zeros_like(self.prompt_ptr)] * (p - len(ptrs)), 1)
        ptr_valid = torch.tensor([[1.0] * len(ptrs) + [0.0] * (p - len(ptrs))], **kw).expand(b, -1)
        ptr_tdiff = torch.tensor([float(self.age)] + [float(d) for d in range(1, p)], **kw)
        return mem, mem_tpos, mem_valid, ptr, ptr_tdiff, ptr_valid
