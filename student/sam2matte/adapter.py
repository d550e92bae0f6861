"""The ONE file through which every call into the ``sam2`` package goes.

It builds a ``SAM2Base`` from a SAM2 YAML + overrides (random weights, or an official SAM2 /
SAM2.1 checkpoint), and exposes SAM2's video model as four stateless steps whose state — the
memory bank — is passed in explicitly as fixed-size tensors:

* :func:`encode_image`: Hiera + FPN neck -> top-level features and the two high-res maps;
* :func:`sam_heads`: prompt encoder + mask decoder (+ object pointer and occlusion score);
* :func:`condition_on_memory`: memory attention over up to N memories and P object pointers,
  with a validity mask per slot (a masked slot is exactly an absent one: its softmax weight is 0);
* :func:`encode_memory`: the memory encoder.

SAM2's RoPE multiplies complex numbers (``torch.polar``/``view_as_complex``), which neither ONNX
nor TensorRT support. :class:`RealRope` precomputes the same rotation as real cos/sin tables and
:func:`condition_on_memory` drives SAM2's own ``MemoryAttentionLayer`` sub-modules (norms,
projections, MLP) with it, so the weights, their names and the maths stay SAM2's.
"""
from __future__ import annotations

import logging
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from mamakit.errors import ConfigError

from .config import Sam2MatteConfig

log = logging.getLogger(__name__)

#: ImageNet normalisation used by SAM2's video predictor
IMG_MEAN = (0.485, 0.456, 0.406)
IMG_STD = (0.229, 0.224, 0.225)
#: the large negative logit SAM2 writes where no object is predicted
NO_OBJ_SCORE = -1024.0


# -- building ------------------------------------------------------------------------------------
def _load_yaml(name: str):
    from omegaconf import OmegaConf

    path = Path(name)
    if not path.is_file():
        import sam2

        path = Path(sam2.__path__[0]) / name
        if not path.suffix:
            path = path.with_suffix(".yaml")
    if not path.is_file():
        raise ConfigError(f"SAM2 config {name!r} not found (neither a file nor a config inside the sam2 package, "
                          f"e.g. configs/sam2.1/sam2.1_hiera_t.yaml)")
    return OmegaConf.load(path)


def sam2_model_config(config: Sam2MatteConfig):
    """The OmegaConf tree of the SAM2 model: YAML + image-size-derived overrides + ``config.overrides``."""
    import yaml
    from omegaconf import OmegaConf

    cfg = _load_yaml(config.sam2_config)
    fs = config.feat_size
    sizes = [
        f"model.image_size={config.image_size}",
        f"model.memory_attention.layer.self_attention.feat_sizes=[{fs},{fs}]",
        f"model.memory_attention.layer.cross_attention.feat_sizes=[{fs},{fs}]",
        "model.compile_image_encoder=false",
        "model.num_maskmem=" + str(config.max_memories),
        "model.max_obj_ptrs_in_encoder=" + str(config.max_obj_ptrs),
        # SAM2's video predictor binarizes clicked-frame masks for memory; a matte keeps them soft
        "model.binarize_mask_from_pts_for_mem_enc=false",
    ]
    for item in [*sizes, *config.overrides]:
        key, sep, value = item.lstrip("+").partition("=")
        if not sep:
            raise ConfigError(f"SAM2 override {item!r} is not key=value")
        OmegaConf.update(cfg, key.strip(), yaml.safe_load(value), force_add=True)
    OmegaConf.resolve(cfg)
    return cfg


def build_sam2(config: Sam2MatteConfig) -> nn.Module:
    """A ``SAM2Base`` with random weights, built by Hydra's ``instantiate`` from the config."""
    from hydra.utils import instantiate

    cfg = sam2_model_config(config)
    target = cfg.model.get("_target_", "")
    if not target.endswith("SAM2Base") and "SAM2VideoPredictor" not in target:
        raise ConfigError(f"SAM2 config {config.sam2_config} builds {target}, expected sam2's SAM2Base")
    cfg.model["_target_"] = "sam2.modeling.sam2_base.SAM2Base"
    try:
        sam = instantiate(cfg.model, _recursive_=True)
    except Exception as exc:  # hydra wraps constructor errors
        raise ConfigError(f"cannot build SAM2 from {config.sam2_config} with the given overrides: {exc}") from exc
    if not sam.directly_add_no_mem_embed:
        raise ConfigError("SAM2-Matte needs directly_add_no_mem_embed=true (as in every official SAM2 config)")
    return sam


def load_sam2_checkpoint(sam: nn.Module, path: str | Path) -> None:
    """Load an official SAM2 / SAM2.1 checkpoint (``{"model": state_dict}``) strictly."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"SAM2 checkpoint {path} does not exist: pass the official .pt file "
                          f"(e.g. sam2.1_hiera_base_plus.pt) and its config")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        sd = load_file(str(path))
    else:
        sd = torch.load(path, map_location="cpu", weights_only=True)
        sd = sd.get("model", sd) if isinstance(sd, dict) else sd
    try:
        missing, unexpected = sam.load_state_dict(sd, strict=False)
    except RuntimeError as exc:  # same keys, other shapes
        first = str(exc).strip().splitlines()[-1].strip()
        raise ConfigError(f"SAM2 checkpoint {path} does not match its config ({first[:200]}); "
                          "pass the YAML the checkpoint was trained with") from exc
    if missing or unexpected:
        raise ConfigError(
            f"SAM2 checkpoint {path} does not match its config: {len(missing)} missing keys "
            f"(e.g. {missing[:3]}), {len(unexpected)} unexpected (e.g. {unexpected[:3]}); "
            "pass the YAML the checkpoint was trained with")
    log.info("loaded SAM2 weights from %s", path)


def dims(sam: nn.Module) -> dict:
    """Sizes the exporter and the runtime need."""
    return {"hidden_dim": int(sam.hidden_dim), "mem_dim": int(sam.mem_dim),
            "num_maskmem": int(sam.num_maskmem), "max_obj_ptrs": int(sam.max_obj_ptrs_in_encoder),
            "ptr_tokens": int(sam.hidden_dim // sam.mem_dim) if sam.use_obj_ptrs_in_encoder else 0,
            "use_obj_ptrs": bool(sam.use_obj_ptrs_in_encoder),
            "high0_dim": int(sam.sam_mask_decoder.conv_s0.out_channels),
            "high1_dim": int(sam.sam_mask_decoder.conv_s1.out_channels)}


def frozen_groups(sam: nn.Module) -> dict[str, list[nn.Module]]:
    """Named parts of SAM2 that fine-tuning can freeze."""
    return {"image_encoder": [sam.image_encoder],
            "memory": [sam.memory_attention, sam.memory_encoder],
            "decoder": [sam.sam_prompt_encoder, sam.sam_mask_decoder, sam.obj_ptr_proj],
            "mask_decoder": [sam.sam_mask_decoder]}


def positional_maps(sam: nn.Module, image_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The (constant) sine position maps of the top-level image features and of the memories."""
    fs = image_size // sam.backbone_stride
    with torch.no_grad():
        img_pos = sam.image_encoder.neck.position_encoding(torch.zeros(1, sam.hidden_dim, fs, fs))
        mem_pos = sam.memory_encoder.position_encoding(torch.zeros(1, sam.mem_dim, fs, fs))
    return img_pos.clone(), mem_pos.clone()


# -- RoPE with real arithmetic -------------------------------------------------------------------
class RealRope(nn.Module):
    """SAM2's axial RoPE (``compute_axial_cis`` + ``apply_rotary_enc``) as real cos/sin tables.

    Pairs ``(x[2i], x[2i+1])`` are rotated by the angle of the i-th complex frequency, exactly as
    ``view_as_complex(x) * freqs_cis``. The key side repeats the table over the memories.
    """

    def __init__(self, attn: nn.Module, feat_size: int):
        super().__init__()
        cis = attn.compute_cis(end_x=feat_size, end_y=feat_size)  # complex [HW, d/2], computed eagerly
        self.register_buffer("cos", cis.real.float().contiguous(), persistent=False)
        self.register_buffer("sin", cis.imag.float().contiguous(), persistent=False)
        self.tokens = feat_size * feat_size

    def rotate(self, x: torch.Tensor) -> torch.Tensor:
        """x [B, heads, n*HW, d] -> rotated, the table repeated n times along the tokens."""
        b, h, n, d = x.shape
        hw = self.tokens
        x = x.reshape(b, h, n // hw, hw, d // 2, 2)
        a, c = x[..., 0], x[..., 1]
        cos, sin = self.cos, self.sin
        out = torch.stack((a * cos - c * sin, a * sin + c * cos), dim=-1)
        return out.reshape(b, h, n, d)


def _rope_attention(attn, rope: RealRope, q, k_sp, v_sp, k_ptr=None, v_ptr=None, bias=None, rope_keys=True):
    """``RoPEAttention.forward`` with real RoPE; pointer tokens (not rotated) appended to the keys."""
    h = attn.num_heads
    q = attn._separate_heads(attn.q_proj(q), h)
    k = attn._separate_heads(attn.k_proj(k_sp), h)
    v = attn._separate_heads(attn.v_proj(v_sp), h)
    q = rope.rotate(q)
    if rope_keys:
        k = rope.rotate(k)
    if k_ptr is not None:
        k = torch.cat([k, attn._separate_heads(attn.k_proj(k_ptr), h)], dim=2)
        v = torch.cat([v, attn._separate_heads(attn.v_proj(v_ptr), h)], dim=2)
    dropout_p = attn.dropout_p if attn.training else 0.0
    mask = None if bias is None else bias[:, None, None, :].to(q.dtype)
    out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=dropout_p)
    return attn.out_proj(attn._recombine_heads(out))


# -- the four steps ------------------------------------------------------------------------------
def encode_image(sam: nn.Module, image: torch.Tensor):
    """image [B,3,S,S] RGB 0..1 -> (feat [B,C,S/16,S/16], high0 [B,C/8,S/4,S/4], high1 [B,C/4,S/8,S/8])."""
    mean = image.new_tensor(IMG_MEAN).view(1, 3, 1, 1)
    std = image.new_tensor(IMG_STD).view(1, 3, 1, 1)
    out = sam.forward_image((image - mean) / std)
    fpn = out["backbone_fpn"]
    return fpn[-1], fpn[0], fpn[1]


def no_memory_features(sam: nn.Module, feat: torch.Tensor) -> torch.Tensor:
    """The prompted frame: SAM2 adds the learned no-memory embedding instead of attending."""
    return feat + sam.no_mem_embed.view(1, -1, 1, 1)


def sam_heads(sam: nn.Module, pix_feat, high0, high1, points=None, labels=None, mask_inputs=None,
              multimask: bool = False):
    """SAM2's prompt encoder + mask decoder. ``points`` [B,P,2] in model-input pixels, ``labels``
    [B,P] (1 fg, 0 bg, 2/3 box corners, -1 padding). Returns low-res logits [B,1,S/4,S/4],
    logits at model size [B,1,S,S], the object pointer [B,C] and the object score logit [B,1]."""
    point_inputs = None if points is None else {"point_coords": points, "point_labels": labels}
    out = sam._forward_sam_heads(backbone_features=pix_feat, point_inputs=point_inputs, mask_inputs=mask_inputs,
                                 high_res_features=[high0, high1], multimask_output=multimask)
    _, _, _, low, high, obj_ptr, obj_score = out
    return low, high, obj_ptr, obj_score


def mask_as_output(sam: nn.Module, pix_feat, high0, high1, mask_inputs):
    """SAM2's ``use_mask_input_as_output_without_sam``: a mask prompt [B,1,S,S] (0/1) becomes the
    frame's output (logits +-10, score +-10) and the pointer comes from the decoder on that mask,
    so the prompted frame's memory holds the given mask. Same returns as :func:`sam_heads`."""
    out = sam._use_mask_as_output(pix_feat, [high0, high1], mask_inputs)
    _, _, _, low, high, obj_ptr, obj_score = out
    return low, high, obj_ptr, obj_score


def uses_mask_as_output(sam: nn.Module) -> bool:
    return bool(getattr(sam, "use_mask_input_as_output_without_sam", False))


def tracking_multimask(sam: nn.Module) -> bool:
    """Whether SAM2 uses multimask output (best of 3) on tracked frames."""
    return bool(sam._use_multimask(False, None))


def prompt_multimask(sam: nn.Module, num_points: int) -> bool:
    return bool(sam.multimask_output_in_sam and sam.multimask_min_pt_num <= num_points <= sam.multimask_max_pt_num)


def memory_keys(sam: nn.Module, mem_pos_map, mem, mem_tpos, ptr, ptr_tdiff):
    """Flatten the bank into key/value tokens (SAM2's ``_prepare_memory_conditioned_features``).

    mem [B,N,Cm,h,w], mem_tpos [N] int (SAM2's temporal index: 0 = previous frame ... N-1 =
    conditioning frame), ptr [B,P,C], ptr_tdiff [P] float (signed frame distance).
    Returns (mem_tokens [B,N*hw,Cm], mem_pos [B,N*hw,Cm], ptr_tokens [B,P*k,Cm], ptr_pos, k).
    """
    b, n, cm, h, w = mem.shape
    mem_tok = mem.permute(0, 1, 3, 4, 2).reshape(b, n * h * w, cm)
    pos = mem_pos_map.flatten(2).transpose(1, 2)  # [1, hw, Cm]
    tpos = sam.maskmem_tpos_enc.view(sam.num_maskmem, 1, cm)[mem_tpos]  # [N, 1, Cm]
    mem_pos = (pos + tpos).reshape(1, n * h * w, cm).expand(b, -1, -1)
    if ptr is None:
        return mem_tok, mem_pos, None, None, 0
    from sam2.modeling.sam2_utils import get_1d_sine_pe

    p, c = ptr.shape[1], ptr.shape[2]
    t_diff_max = max(sam.max_obj_ptrs_in_encoder - 1, 1)
    tpos_dim = c if sam.proj_tpos_enc_in_obj_ptrs else cm
    if sam.add_tpos_enc_to_obj_ptrs:
        ppos = sam.obj_ptr_tpos_proj(get_1d_sine_pe(ptr_tdiff / t_diff_max, dim=tpos_dim))  # [P, Cm]
    else:
        ppos = ptr.new_zeros(p, cm)
    k = c // cm
    ptr_tok = ptr.reshape(b, p * k, cm)  # SAM2 splits a C-d pointer into k tokens of Cm, in order
    ptr_pos = ppos.repeat_interleave(k, dim=0).unsqueeze(0).expand(b, -1, -1)
    return mem_tok, mem_pos, ptr_tok, ptr_pos, k


def condition_on_memory(sam: nn.Module, ropes: tuple[RealRope, RealRope], feat, img_pos_map, mem_pos_map,
                        mem, mem_tpos, mem_valid, ptr=None, ptr_tdiff=None, ptr_valid=None):
    """SAM2's memory attention with an explicit, fixed-size bank and validity masks.

    feat [B,C,h,w]; mem_valid [B,N] / ptr_valid [B,P] floats (1 = slot holds a memory).
    Returns the memory-conditioned features [B,C,h,w].
    """
    ma = sam.memory_attention
    b, c, h, w = feat.shape
    rope_sa, rope_ca = ropes
    curr = feat.flatten(2).transpose(1, 2)  # [B, hw, C]
    curr_pos = img_pos_map.flatten(2).transpose(1, 2).expand(b, -1, -1)
    mem_tok, mem_pos, ptr_tok, ptr_pos, k = memory_keys(sam, mem_pos_map, mem, mem_tpos, ptr, ptr_tdiff)
    n_sp = mem_tok.shape[1] // mem.shape[1]
    valid = mem_valid.repeat_interleave(n_sp, dim=1)
    if ptr_tok is not None:
        valid = torch.cat([valid, ptr_valid.repeat_interleave(k, dim=1)], dim=1)
    bias = (valid - 1.0) * 1e4  # 0 where valid, -1e4 where empty: exp underflows to exactly 0

    out = curr
    if ma.pos_enc_at_input:
        out = out + 0.1 * curr_pos
    for layer in ma.layers:
        t2 = layer.norm1(out)
        qk = t2 + curr_pos if layer.pos_enc_at_attn else t2
        out = out + layer.dropout1(_rope_attention(layer.self_attn, rope_sa, qk, qk, t2))
        t2 = layer.norm2(out)
        q = t2 + curr_pos if layer.pos_enc_at_cross_attn_queries else t2
        ks = mem_tok + mem_pos if layer.pos_enc_at_cross_attn_keys else mem_tok
        kp = None
        if ptr_tok is not None:
            kp = ptr_tok + ptr_pos if layer.pos_enc_at_cross_attn_keys else ptr_tok
        t2 = _rope_attention(layer.cross_attn_image, rope_ca, q, ks, mem_tok, kp, ptr_tok, bias)
        out = out + layer.dropout2(t2)
        t2 = layer.norm3(out)
        out = out + layer.dropout3(layer.linear2(layer.dropout(layer.activation(layer.linear1(t2)))))
    out = ma.norm(out)
    return out.transpose(1, 2).reshape(b, c, h, w)


def make_ropes(sam: nn.Module, feat_size: int) -> tuple[RealRope, RealRope]:
    layer = sam.memory_attention.layers[0]
    return RealRope(layer.self_attn, feat_size), RealRope(layer.cross_attn_image, feat_size)


def encode_memory(sam: nn.Module, pix_feat, mask_logits_hr, obj_score):
    """SAM2's memory encoder on the frame's features and its predicted logits at model size
    (sigmoid x20 -10, plus the no-object embedding when the score says absent) -> [B,Cm,h,w]."""
    b, c, h, w = pix_feat.shape
    feats = [pix_feat.flatten(2).permute(2, 0, 1)]
    mem, _ = sam._encode_new_memory(current_vision_feats=feats, feat_sizes=[(h, w)],
                                    pred_masks_high_res=mask_logits_hr, object_score_logits=obj_score,
                                    is_mask_from_pts=False)
    return mem


def reference_track_step_check(sam: nn.Module):
    """The SAM2 classes this adapter was written against (checked when a model is built)."""
    from sam2.modeling.sam.transformer import RoPEAttention

    layer = sam.memory_attention.layers[0]
    if not isinstance(layer.cross_attn_image, RoPEAttention) or not isinstance(layer.self_attn, RoPEAttention):
        raise ConfigError("SAM2-Matte expects RoPEAttention in the memory attention (as in SAM2 / SAM2.1)")
