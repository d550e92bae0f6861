"""Mask sources for labelling: mask folders, and SAM2 (first-frame mask or point/box prompts).

Every call into the ``sam2`` package goes through this file. The video predictor is built with
hydra overrides from a config (a name inside the ``sam2`` package such as
``configs/sam2.1/sam2.1_hiera_t.yaml``, or a local ``.yaml`` file) at ``image_size`` (memory
attention ``feat_sizes`` scaled to match), and weights from a local checkpoint
(``torch.load(weights_only=True)``; missing/unexpected keys are an error). Random weights
(``sam2_random_weights``) exist for tests and demos only.

SAM2 propagation needs the whole clip at SAM2 resolution (image_size², float32) in memory: the
masks are computed in a first pass, then streamed to the teacher with the frames.
"""
from __future__ import annotations

import contextlib
import logging
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

import numpy as np

from mamakit.errors import ConfigError, DependencyError, StreamError

log = logging.getLogger(__name__)

IMG_MEAN = (0.485, 0.456, 0.406)
IMG_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class Prompt:
    kind: str           # "point" | "box" | "negpoint"
    values: tuple       # (x, y) or (x0, y0, x1, y1) in source pixels

    def __str__(self) -> str:
        return f"{self.kind}=" + ",".join(f"{v:g}" for v in self.values)


def parse_prompt(text: str) -> Prompt:
    """``point=x,y`` | ``negpoint=x,y`` (background click) | ``box=x0,y0,x1,y1`` (source pixels)."""
    m = re.match(r"^\s*(point|negpoint|box)\s*=\s*([-0-9.eE,\s]+)$", text)
    if not m:
        raise ConfigError(f"bad --prompt {text!r}: use point=X,Y, negpoint=X,Y or box=X0,Y0,X1,Y1 (pixels)")
    try:
        vals = tuple(float(v) for v in m.group(2).split(","))
    except ValueError:
        raise ConfigError(f"bad --prompt {text!r}: coordinates must be numbers") from None
    need = 4 if m.group(1) == "box" else 2
    if len(vals) != need:
        raise ConfigError(f"bad --prompt {text!r}: {m.group(1)} takes {need} numbers")
    if m.group(1) == "box" and (vals[2] <= vals[0] or vals[3] <= vals[1]):
        raise ConfigError(f"bad --prompt {text!r}: a box needs x1 > x0 and y1 > y0")
    return Prompt(m.group(1), vals)


def _require_sam2():
    try:
        import sam2  # noqa: F401
        import hydra  # noqa: F401
    except ImportError as exc:
        raise DependencyError(f"SAM2 is not installed for mask propagation/prompts: install it with "
                              f"`pip install \"mamakit[sam2]\"` ({exc})") from exc


def build_sam2_predictor(config: str | None, checkpoint: str | None, *, image_size: int = 512,
                         device: str = "cpu", random_weights: bool = False):
    """A ``SAM2VideoPredictor`` at ``image_size`` (a multiple of 16... of 32 recommended)."""
    _require_sam2()
    import torch
    from hydra import compose, initialize_config_dir, initialize_config_module
    from hydra.core.global_hydra import GlobalHydra
    from hydra.utils import instantiate
    from omegaconf import OmegaConf

    if image_size % 32 or image_size < 64:
        raise ConfigError(f"--sam2-image-size must be a multiple of 32 and >= 64, got {image_size}")
    config = config or "configs/sam2.1/sam2.1_hiera_t.yaml"
    if checkpoint is None and not random_weights:
        raise ConfigError("SAM2 needs weights: pass --sam2-checkpoint FILE.pt (and --sam2-config) "
                          "from facebookresearch/sam2")
    if checkpoint is not None and not Path(checkpoint).is_file():
        raise ConfigError(f"SAM2 checkpoint {checkpoint} does not exist")
    feat = image_size // 16
    overrides = [
        "++model._target_=sam2.sam2_video_predictor.SAM2VideoPredictor",
        f"++model.image_size={image_size}",
        f"++model.memory_attention.layer.self_attention.feat_sizes=[{feat},{feat}]",
        f"++model.memory_attention.layer.cross_attention.feat_sizes=[{feat},{feat}]",
        "++model.binarize_mask_from_pts_for_mem_enc=true",
        "++model.fill_hole_area=0",
    ]
    local = Path(config)
    GlobalHydra.instance().clear()
    try:
        if local.suffix in (".yaml", ".yml") and local.is_file():
            ctx = initialize_config_dir(config_dir=str(local.resolve().parent), version_base="1.2")
            name = local.stem
        else:
            ctx = initialize_config_module("sam2", version_base="1.2")
            name = config
        with ctx:
            try:
                cfg = compose(config_name=name, overrides=overrides)
            except Exception as exc:  # hydra's MissingConfigException and friends
                raise ConfigError(f"SAM2 config {config!r} cannot be loaded ({exc}); pass a sam2 config name "
                                  f"like configs/sam2.1/sam2.1_hiera_t.yaml or a .yaml file") from exc
        OmegaConf.resolve(cfg)
        model = instantiate(cfg.model, _recursive_=True)
    finally:
        GlobalHydra.instance().clear()
        with contextlib.suppress(Exception):  # leave hydra as sam2 expects it
            initialize_config_module("sam2", version_base="1.2")
    if checkpoint is not None:
        sd = torch.load(checkpoint, map_location="cpu", weights_only=True)
        sd = sd.get("model", sd) if isinstance(sd, dict) else sd
        missing, unexpected = model.load_state_dict(sd, strict=False)
        if missing or unexpected:
            raise ConfigError(f"SAM2 checkpoint {checkpoint} does not match config {config}: {len(missing)} missing "
                              f"keys (e.g. {list(missing)[:2]}), {len(unexpected)} unexpected")
    return model.to(device).eval()


class Sam2Masks:
    """Propagate a first-frame mask or prompts through a clip with a SAM2 video predictor."""

    def __init__(self, predictor):
        self.predictor = predictor

    def propagate(self, frames: list[np.ndarray], *, first_mask: np.ndarray | None = None,
                  prompts: list[Prompt] | None = None, prompt_frame: int = 0) -> list[np.ndarray]:
        """Soft masks (float32 HxW 0..1 at each frame's size) for every frame."""
        import torch
        import torch.nn.functional as F

        import sam2.sam2_video_predictor as svp

        pred = self.predictor
        if not frames:
            return []
        h, w = frames[0].shape[:2]
        s = pred.image_size
        mean = torch.tensor(IMG_MEAN).view(3, 1, 1)
        std = torch.tensor(IMG_STD).view(3, 1, 1)
        imgs = []
        for f in frames:
            t = torch.from_numpy(np.ascontiguousarray(f)).permute(2, 0, 1).float().div(255.0)[None]
            t = F.interpolate(t, size=(s, s), mode="bilinear", align_corners=False)[0]
            imgs.append((t - mean) / std)
        images = torch.stack(imgs).to(pred.device)

        def loader(**kwargs):
            return images, h, w

        if not 0 <= prompt_frame < len(frames):
            raise ConfigError(f"--prompt-frame {prompt_frame} is outside the clip (0..{len(frames) - 1})")
        with torch.inference_mode(), _patched(svp, "load_video_frames", loader):
            state = pred.init_state(video_path="<mamakit frames>")
            if first_mask is not None:
                pred.add_new_mask(state, frame_idx=0, obj_id=1, mask=np.asarray(first_mask) >= 0.5)
                start = 0
            else:
                pts = [p.values for p in prompts or [] if p.kind in ("point", "negpoint")]
                labels = [1 if p.kind == "point" else 0 for p in prompts or [] if p.kind in ("point", "negpoint")]
                boxes = [p.values for p in prompts or [] if p.kind == "box"]
                pred.add_new_points_or_box(
                    state, frame_idx=prompt_frame, obj_id=1,
                    points=np.array(pts, np.float32) if pts else None,
                    labels=np.array(labels, np.int32) if pts else None,
                    box=np.array(boxes[0], np.float32) if boxes else None)
                start = prompt_frame
            out: dict[int, np.ndarray] = {}
            for reverse in (False, True):
                if reverse and start == 0:
                    break
                for idx, _ids, logits in pred.propagate_in_video(state, start_frame_idx=start, reverse=reverse):
                    out[idx] = torch.sigmoid(logits[0, 0].float()).cpu().numpy()
        return [out.get(i, np.zeros((h, w), np.float32)).astype(np.float32) for i in range(len(frames))]


@contextlib.contextmanager
def _patched(module, name, value):
    old = getattr(module, name)
    setattr(module, name, value)
    try:
        yield
    finally:
        setattr(module, name, old)


class MaskProvider:
    """``provider(job)`` -> a function turning ``(name, frame)`` pairs into ``(name, frame, mask)``."""

    def __init__(self, cfg, infos: dict, sam2: Sam2Masks | None):
        self.cfg, self.infos, self.sam2 = cfg, infos, sam2
        self.prompts = [p if isinstance(p, Prompt) else parse_prompt(str(p)) for p in cfg.prompts]

    @classmethod
    def create(cls, cfg, infos: dict) -> "MaskProvider":
        needs = any(i["first_frame_mask"] for i in infos.values())
        if cfg.prompts:
            [parse_prompt(str(p)) for p in cfg.prompts]
        sam2 = None
        if needs:
            predictor = build_sam2_predictor(cfg.sam2_config, cfg.sam2_checkpoint, image_size=cfg.sam2_image_size,
                                             random_weights=cfg.sam2_random_weights)
            sam2 = Sam2Masks(predictor)
        return cls(cfg, infos, sam2)

    def __call__(self, job) -> Callable[[Iterator], Iterator]:
        info = self.infos.get(job.clip_id, {})
        if not info.get("first_frame_mask"):
            from mamakit.teacher.label.system import folder_masks

            get = folder_masks(job, info.get("names"))

            def with_folder(frames):
                for i, (name, frame) in enumerate(frames):
                    yield name, frame, get(i, name, (frame.shape[1], frame.shape[0]))

            return with_folder

        def with_sam2(frames):
            from mamakit.io import read_mask
            from mamakit.teacher.label.clips import iter_frames
            from mamakit.teacher.prep import fit_mask

            clip = [f for _, f in iter_frames(job)]  # first pass: SAM2 needs the whole clip
            first = None
            if job.masks is not None:
                first = fit_mask(read_mask(job.masks), clip[0].shape[1], clip[0].shape[0])
            masks = self.sam2.propagate(clip, first_mask=first, prompts=self.prompts,
                                        prompt_frame=self.cfg.prompt_frame)
            del clip
            for i, (name, frame) in enumerate(frames):
                if i >= len(masks):
                    raise StreamError(f"clip {job.clip_id} changed length between passes")
                yield name, frame, fit_mask(masks[i], frame.shape[1], frame.shape[0])

        return with_sam2
