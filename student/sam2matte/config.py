"""SAM2-Matte configuration: a frozen dataclass saved as ``config.json`` beside the weights.

The SAM2 part is described the way the ``sam2`` package describes it — a Hydra/OmegaConf YAML
(``sam2_config``, a name inside the ``sam2`` package such as ``configs/sam2.1/sam2.1_hiera_t.yaml``
or a path to a YAML file) plus a list of ``key=value`` overrides. :func:`tiny_config` returns the
reduced SAM2 that trains here from random weights; :func:`sam21_config` the official SAM2.1 sizes.
"""
from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path

from mamakit.errors import ConfigError

SAM21_CONFIGS = {
    "tiny": "configs/sam2.1/sam2.1_hiera_t.yaml",
    "small": "configs/sam2.1/sam2.1_hiera_s.yaml",
    "base_plus": "configs/sam2.1/sam2.1_hiera_b+.yaml",
    "large": "configs/sam2.1/sam2.1_hiera_l.yaml",
}


@dataclass(frozen=True)
class Sam2MatteConfig:
    """Everything needed to rebuild a SAM2-Matte model (random weights) without reading files."""

    #: YAML describing SAM2 (a name inside the ``sam2`` package or a file path)
    sam2_config: str = SAM21_CONFIGS["tiny"]
    #: model input size (square); memory-attention RoPE sizes follow (image_size / 16)
    image_size: int = 1024
    #: extra OmegaConf ``key=value`` overrides applied to the YAML (``model.`` prefix included)
    overrides: tuple = ()
    #: a light refiner at model-input resolution, guided by the frame, on top of SAM2's 1/4 logits
    refiner: bool = True
    refiner_channels: int = 16
    #: multimask output (best of 3 by predicted IoU) on the prompted frame
    multimask_prompt: bool = False
    #: memory bank sizes the runtime keeps (SAM2 defaults: 7 memories incl. the prompted one, 16 pointers)
    max_memories: int = 7
    max_obj_ptrs: int = 16
    #: normalise the top-level image features per position (LayerNorm over channels, no weights)
    #: before the heads and the memory: keeps them at unit scale, so the memory read is not drowned
    #: by features that grow during training (|x| 0.5 -> 14-17 in sessions 1-4, docs/sam2-matte.md)
    feat_norm: bool = False

    def __post_init__(self):
        if self.image_size % 64 != 0 or self.image_size < 128:
            raise ConfigError(f"image_size must be a multiple of 64 and >= 128, got {self.image_size}")
        if not 1 <= self.max_memories:
            raise ConfigError(f"max_memories must be >= 1, got {self.max_memories}")
        if not 1 <= self.max_obj_ptrs:
            raise ConfigError(f"max_obj_ptrs must be >= 1, got {self.max_obj_ptrs}")
        object.__setattr__(self, "overrides", tuple(str(o) for o in self.overrides))

    @property
    def feat_size(self) -> int:
        return self.image_size // 16

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["overrides"] = list(self.overrides)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "Sam2MatteConfig":
        known = {f.name for f in dataclasses.fields(cls)}
        d = {k: v for k, v in d.items() if k != "kind"}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ConfigError(f"unknown SAM2-Matte config keys {unknown} (known: {sorted(known)})")
        d = dict(d)
        d["overrides"] = tuple(d.get("overrides", ()))
        return cls(**d)

    def save(self, path: str | Path) -> None:
        from mamakit.fsutil import write_json_atomic

        write_json_atomic(path, {"kind": "sam2-matte", **self.to_dict()})

    @classmethod
    def load(cls, path: str | Path) -> "Sam2MatteConfig":
        try:
            return cls.from_dict(json.loads(Path(path).read_text()))
        except (OSError, json.JSONDecodeError) as exc:
            raise ConfigError(f"cannot read SAM2-Matte config {path}: {exc}") from exc

    def with_image_size(self, image_size: int) -> "Sam2MatteConfig":
        return dataclasses.replace(self, image_size=int(image_size))


def tiny_config(image_size: int = 256) -> Sam2MatteConfig:
    """A reduced SAM2.1 (Hiera embed 16, 5 blocks, d_model 64, 2 memory-attention layers, 32-d
    memories) that trains from random weights on 2 CPU cores in minutes."""
    e, d, m = 16, 64, 32
    ov = [
        f"model.image_encoder.trunk.embed_dim={e}",
        "model.image_encoder.trunk.num_heads=1",
        "model.image_encoder.trunk.stages=[1,1,2,1]",
        "model.image_encoder.trunk.global_att_blocks=[3]",
        "model.image_encoder.trunk.window_spec=[8,4,8,8]",
        "model.image_encoder.trunk.window_pos_embed_bkg_spatial_size=[4,4]",
        f"model.image_encoder.neck.d_model={d}",
        f"model.image_encoder.neck.backbone_channel_list=[{8 * e},{4 * e},{2 * e},{e}]",
        f"model.image_encoder.neck.position_encoding.num_pos_feats={d}",
        f"model.memory_attention.d_model={d}",
        "model.memory_attention.num_layers=2",
        f"model.memory_attention.layer.d_model={d}",
        f"model.memory_attention.layer.dim_feedforward={4 * d}",
        "model.memory_attention.layer.dropout=0.0",
        f"model.memory_attention.layer.self_attention.embedding_dim={d}",
        "model.memory_attention.layer.self_attention.dropout=0.0",
        f"model.memory_attention.layer.cross_attention.embedding_dim={d}",
        f"model.memory_attention.layer.cross_attention.kv_in_dim={m}",
        "model.memory_attention.layer.cross_attention.dropout=0.0",
        f"model.memory_encoder.out_dim={m}",
        f"model.memory_encoder.in_dim={d}",
        f"model.memory_encoder.position_encoding.num_pos_feats={m}",
        f"model.memory_encoder.mask_downsampler.embed_dim={d}",
        "model.memory_encoder.mask_downsampler.kernel_size=4",
        "model.memory_encoder.mask_downsampler.stride=4",
        "model.memory_encoder.mask_downsampler.padding=0",
        f"model.memory_encoder.fuser.layer.dim={d}",
        "model.memory_encoder.fuser.num_layers=1",
        "model.multimask_output_in_sam=false",
        "model.multimask_output_for_tracking=false",
        "model.use_multimask_token_for_obj_ptr=false",
    ]
    return Sam2MatteConfig(sam2_config=SAM21_CONFIGS["tiny"], image_size=image_size, overrides=tuple(ov),
                           refiner=True, refiner_channels=8, multimask_prompt=False)


def sam21_config(size: str = "base_plus", image_size: int = 1024, sam2_config: str | None = None) -> Sam2MatteConfig:
    """The official SAM2.1 architecture (load its checkpoint with ``init_checkpoint``)."""
    if sam2_config is None:
        try:
            sam2_config = SAM21_CONFIGS[size]
        except KeyError as exc:
            raise ConfigError(f"unknown SAM2.1 size {size!r} (known: {', '.join(SAM21_CONFIGS)})") from exc
    return Sam2MatteConfig(sam2_config=sam2_config, image_size=image_size, overrides=(), refiner=True,
                           multimask_prompt=True)
