"""The distillation *system* (a LightningModule): student, losses, TBPTT, optimisation, metrics.

The network itself is a plain ``nn.Module`` (:class:`mamakit.student.models.StudentNet`); this
module holds how it is trained. Run through ``mamakit distill --config FILE`` (LightningCLI).

Training step = one batch of clips ``[B,T,...]`` processed frame by frame with the recurrent
state; every ``tbptt`` frames the loss of that chunk is back-propagated and the state detached
(truncated back-propagation through time); one optimiser step per batch (manual optimisation,
so gradient clipping is ``model.grad_clip``). Frames whose mask is dropped are guided by the
student's previous alpha, detached.
"""
from __future__ import annotations

import dataclasses
import logging
import math
import os
from pathlib import Path
from typing import Any, Optional, Union

import numpy as np
import pytorch_lightning as pl
import torch
from torch import nn

from mamakit.errors import ConfigError, WorkError
from mamakit.student import losses as L
from mamakit.student.loading import checkpoint_meta
from mamakit.student.models import StudentConfig, StudentNet

log = logging.getLogger(__name__)


def _metrics(pred: np.ndarray, gt: np.ndarray) -> dict[str, float]:
    """MAD (x1e3), Grad (/1e3) and dtSSD (x1e2) of ``[T,H,W]`` alpha; mamakit.metrics when available."""
    try:
        from mamakit import metrics as M

        return {"mad": float(np.mean([M.mad(p, g) for p, g in zip(pred, gt)])),
                "grad": float(np.mean([M.grad(p, g) for p, g in zip(pred, gt)])),
                "dtssd": float(M.dtssd(list(pred), list(gt)))}
    except ImportError:  # core metrics not installed: MAD and dtSSD by their definitions
        mad = float(np.abs(pred - gt).mean() * 1e3)
        d = (pred[1:] - pred[:-1]) - (gt[1:] - gt[:-1])
        per = np.sqrt((d ** 2).reshape(d.shape[0], -1).mean(1))
        dtssd = float(np.concatenate([[0.0], per]).mean() * 1e2)
        return {"mad": mad, "dtssd": dtssd}


class StudentDistillation(pl.LightningModule):
    """Distil a teacher (or GT) into a :class:`StudentNet`.

    Args:
        size: student preset (``small`` = shipped live default, ``large`` = quality).
        student: overrides of :class:`StudentConfig` fields (e.g. ``{downsample_ratio: 0.375}``).
        train_downsample_ratio: trunk ratio used while training on small crops (the exported graph
            keeps ``student.downsample_ratio``); None = the same.
        lr, weight_decay, warmup_steps, min_lr_ratio: AdamW + linear warm-up + cosine decay.
        tbptt: frames per truncated back-propagation chunk.
        grad_clip: max gradient norm (0 = off).
        loss_weights: :class:`mamakit.student.losses.LossWeights` fields.
        init_from: a student folder or checkpoint to start from (fine-tuning).
        train_only: names of the student's parts to train (``encoder``, ``decoder``, ``head``,
            ``refiner``); the others are frozen in eval mode (weights and BatchNorm statistics kept).
            None = all. E.g. ``[head, refiner]`` adapts the full-resolution refinement of a trained
            student to the deployment geometry at a fraction of the cost.
        freeze_batchnorm: keep every BatchNorm in eval mode while training: its running statistics
            normalise (and are not updated) and its scale and shift still learn, so a training step sees
            exactly the function that is exported. For fine-tuning a student whose batch statistics are
            not known, e.g. one rebuilt from a bundle by ``mamakit export recover``. ``true`` = every
            BatchNorm; a list of parts (as ``train_only``) = only those parts' BatchNorms.
        cpu_threads: torch intra-op threads on CPU (1 is much faster than 2 on a busy 2-core box).
    """

    def __init__(
        self,
        size: str = "small",
        student: Optional[dict] = None,
        train_downsample_ratio: Optional[float] = None,
        lr: float = 2e-3,
        weight_decay: float = 1e-4,
        warmup_steps: int = 50,
        min_lr_ratio: float = 0.05,
        tbptt: int = 4,
        grad_clip: float = 1.0,
        loss_weights: Optional[dict] = None,
        feature_channels: int = 0,
        init_from: Optional[str] = None,
        train_only: Optional[list[str]] = None,
        freeze_batchnorm: Union[bool, list[str]] = False,
        log_images: bool = True,
        cpu_threads: Optional[int] = None,
    ):
        super().__init__()
        self.save_hyperparameters()
        self.automatic_optimization = False
        self.config = StudentConfig.preset(size, **(student or {}))
        if self.config.stabilizer > 0:
            raise ConfigError("model.student.stabilizer is a deployment setting (its state is carried by optical "
                              "flow, which training does not do): train without it and export with "
                              "`mamakit export onnx --set stabilizer=0.5`")
        train_cfg = self.config
        if train_downsample_ratio is not None:
            train_cfg = dataclasses.replace(self.config, downsample_ratio=float(train_downsample_ratio))
        self.student = StudentNet(train_cfg)
        if init_from:
            from mamakit.student.loading import load_student

            src = load_student(init_from)
            # a smaller source (no extra refiner guide, fewer coarse blocks) is grown exactly: the
            # fine-tune starts from the source student's output
            state = self.student.grow_state(src.state_dict())
            self.student.load_weights(state, source=str(init_from))
        self._frozen: list[nn.Module] = []
        if train_only is not None:
            keep = self._parts("train_only", train_only)
            for name, module in self.student.named_children():
                if name not in keep:
                    module.requires_grad_(False)
                    self._frozen.append(module)
        if freeze_batchnorm:
            every = [name for name, _ in self.student.named_children()]
            parts = self._parts("freeze_batchnorm", every if freeze_batchnorm is True else freeze_batchnorm)
            self._frozen.extend(m for part in parts.values() for m in part.modules()
                                if isinstance(m, nn.modules.batchnorm._BatchNorm))
        try:
            self.weights = L.LossWeights(**(loss_weights or {}))
        except TypeError as exc:
            valid = ", ".join(f.name for f in dataclasses.fields(L.LossWeights))
            raise ConfigError(f"model.loss_weights: {exc}: valid keys are {valid}") from exc
        if tbptt < 1:
            raise ConfigError(f"model.tbptt must be >= 1, got {tbptt}")
        if self.weights.feature > 0:
            if feature_channels <= 0:
                raise ConfigError("feature distillation (loss_weights.feature > 0) needs model.feature_channels "
                                  "(the teacher feature width) and a teacher that returns features")
            self.feat_proj = nn.Conv2d(self.student.encoder.channels[-1], feature_channels, 1)
        self._skipped = 0
        self._val_rows: list[dict[str, float]] = []

    def _parts(self, key: str, names: list[str]) -> dict[str, nn.Module]:
        """The student's parts named by setting ``model.<key>`` (one or more of its children)."""
        parts = dict(self.student.named_children())
        names = list(names)
        if not names or set(names) - set(parts):
            raise ConfigError(f"model.{key} {names}: name one or more of {', '.join(parts)}")
        return {n: parts[n] for n in names}

    def setup(self, stage: str) -> None:
        if self.hparams.cpu_threads:
            torch.set_num_threads(int(self.hparams.cpu_threads))

    # ---- checkpoint -----------------------------------------------------------------------
    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint["mamakit"] = checkpoint_meta(self.config.to_dict())

    # ---- optimisation ---------------------------------------------------------------------
    def configure_optimizers(self):
        hp = self.hparams
        opt = torch.optim.AdamW(self.parameters(), lr=hp.lr, weight_decay=hp.weight_decay)
        total = max(1, int(self.trainer.estimated_stepping_batches)) if self._trainer is not None else 1000
        warm = max(0, int(hp.warmup_steps))

        def factor(step: int) -> float:
            if step < warm:
                return (step + 1) / (warm + 1)
            p = min(1.0, (step - warm) / max(1, total - warm))
            return hp.min_lr_ratio + (1 - hp.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * p))

        sched = torch.optim.lr_scheduler.LambdaLR(opt, factor)
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}

    def _last_good_checkpoint(self) -> str:
        cb = getattr(self.trainer, "checkpoint_callback", None)
        for attr in ("last_model_path", "best_model_path"):
            p = getattr(cb, attr, "") if cb is not None else ""
            if p and os.path.exists(p):
                return p
        if cb is not None and cb.dirpath and (Path(cb.dirpath) / "last.ckpt").is_file():
            return str(Path(cb.dirpath) / "last.ckpt")
        return "none written yet"

    def _check_finite(self, value: torch.Tensor, what: str) -> None:
        if not bool(torch.isfinite(value).all()):
            raise WorkError(f"{what} became {float(value):.4g} at step {self.global_step}: training stopped; "
                            f"last good checkpoint: {self._last_good_checkpoint()} (resume from it with a lower "
                            "model.lr, precision 32 or a smaller model.grad_clip)")

    # ---- training -------------------------------------------------------------------------
    def clip_losses(self, pha, fgr, target, tgt_fgr, has_fgr, prev_pha, prev_target, feat=None, teacher_feat=None):
        w = self.weights
        terms = {"l1": torch.nn.functional.l1_loss(pha, target)}
        if w.mse:
            terms["mse"] = torch.nn.functional.mse_loss(pha, target)
        if w.laplacian:
            terms["laplacian"] = L.laplacian_loss(pha, target)
        if w.gradient:
            terms["gradient"] = L.gradient_loss(pha, target)
        if w.temporal:
            terms["temporal"] = L.temporal_loss(pha, target, prev_pha, prev_target)
        if w.fgr and bool(has_fgr.any()):
            sel = has_fgr.bool()
            terms["fgr"] = L.fgr_loss(fgr[sel], tgt_fgr[sel], target[sel])
        if w.feature and feat is not None and teacher_feat is not None:
            terms["feature"] = L.feature_loss(self.feat_proj(feat), teacher_feat)
        total = sum(getattr(w, k) * v for k, v in terms.items())
        return total, terms

    def training_step(self, batch: dict[str, Any], batch_idx: int):
        self._skipped += int(batch["skipped"])
        if batch.get("empty"):
            return None
        if self.weights.feature and "teacher_feat" not in batch:
            raise ConfigError("loss_weights.feature > 0 but the data carries no teacher features (the current "
                              "teachers return none): set model.loss_weights.feature to 0")
        opt = self.optimizers()
        sched = self.lr_schedulers()
        src, target, mask = batch["src"], batch["target"], batch["mask"]
        valid, tgt_fgr, has_fgr = batch["mask_valid"], batch["fgr"], batch["has_fgr"]
        B, T, _, H, W = src.shape
        k = int(self.hparams.tbptt)
        use_feat = bool(self.weights.feature)
        state = self.student.initial_state(B, H, W, device=src.device, dtype=src.dtype)
        feedback = torch.zeros_like(mask[:, 0])
        prev_pha = prev_target = None
        opt.zero_grad(set_to_none=True)
        sums: dict[str, float] = {}
        total_value = 0.0
        for c0 in range(0, T, k):
            c1 = min(T, c0 + k)
            phas, fgrs, feats = [], [], []
            for t in range(c0, c1):
                guide = torch.where(valid[:, t].view(B, 1, 1, 1), mask[:, t], feedback.detach())
                if use_feat:
                    pha, fgr, state, f16 = self.student.forward_features(src[:, t], guide, *state)
                    feats.append(f16)
                else:
                    pha, fgr, *state = self.student(src[:, t], guide, *state)
                feedback = pha
                phas.append(pha)
                fgrs.append(fgr)
            P, Fg = torch.stack(phas, 1), torch.stack(fgrs, 1)
            feat = torch.stack(feats, 1).flatten(0, 1) if use_feat else None
            tfeat = batch["teacher_feat"][:, c0:c1].flatten(0, 1) if use_feat else None
            loss, terms = self.clip_losses(P, Fg, target[:, c0:c1], tgt_fgr[:, c0:c1], has_fgr, prev_pha, prev_target,
                                           feat, tfeat)
            self._check_finite(loss.detach(), "the training loss")
            self.manual_backward(loss * ((c1 - c0) / T))
            state = [s.detach() for s in state]
            feedback = feedback.detach()
            prev_pha, prev_target = P[:, -1].detach(), target[:, c1 - 1]
            total_value += float(loss.detach()) * (c1 - c0) / T
            for name, v in terms.items():
                sums[name] = sums.get(name, 0.0) + float(v.detach()) * (c1 - c0) / T
        if self.hparams.grad_clip and self.hparams.grad_clip > 0:
            self.clip_gradients(opt, gradient_clip_val=float(self.hparams.grad_clip), gradient_clip_algorithm="norm")
        opt.step()
        sched.step()
        self.log("train/loss", total_value, prog_bar=True, batch_size=B)
        for name, v in sums.items():
            self.log(f"train/{name}", v, batch_size=B)
        self.log("train/lr", opt.param_groups[0]["lr"], batch_size=B)
        every = max(1, int(getattr(self.trainer, "log_every_n_steps", 50) or 50))
        if self.global_step % every == 0:
            import time

            now = time.monotonic()
            last = getattr(self, "_t_last", None)
            rate = f", {(now - last[0]) / max(1, self.global_step - last[1]):.2f} s/step" if last else ""
            self._t_last = (now, self.global_step)
            log.info("step %d  loss %.4f  lr %.2e%s", self.global_step, total_value, opt.param_groups[0]["lr"], rate)
        return torch.tensor(total_value)

    def on_train_start(self) -> None:
        self.start_step = int(self.global_step)  # > 0 when resumed
        if self.start_step:
            log.info("resumed at step %d", self.start_step)

    def _keep_frozen_in_eval(self) -> None:
        for module in self._frozen:  # Lightning puts the whole model in train mode
            module.eval()

    def on_train_batch_start(self, batch: Any, batch_idx: int) -> None:
        self._keep_frozen_in_eval()

    def on_train_epoch_start(self) -> None:
        dm = getattr(self.trainer, "datamodule", None)
        if dm is not None and hasattr(dm, "set_epoch"):
            dm.set_epoch(self.current_epoch)
        self._skipped = 0

    def on_train_epoch_end(self) -> None:
        self.log("train/skipped_samples", float(self._skipped))
        if self._skipped:
            log.warning("epoch %d: %d corrupt sample(s) were skipped (see the warnings above for which clips)",
                        self.current_epoch, self._skipped)

    # ---- validation -----------------------------------------------------------------------
    def validation_step(self, batch: dict[str, Any], batch_idx: int):
        if batch.get("empty"):
            return None
        src, target, mask, valid = batch["src"], batch["target"], batch["mask"], batch["mask_valid"]
        pha, _, _ = self.student.forward_clip(src, mask, mask_valid=valid)
        p = pha[0, :, 0].float().cpu().numpy()
        g = target[0, :, 0].float().cpu().numpy()
        row = _metrics(p, g)
        row["mask_mad"] = float(np.abs(mask[0, :, 0].float().cpu().numpy() - g).mean() * 1e3)
        self._val_rows.append(row)
        if batch_idx == 0 and self.hparams.log_images:
            self._log_grid(src[0], mask[0], valid[0], target[0], pha[0])
        return None

    def on_validation_epoch_end(self) -> None:
        if not self._val_rows:
            return
        for key in self._val_rows[0]:
            self.log(f"val/{key}", float(np.mean([r[key] for r in self._val_rows])), prog_bar=key == "mad",
                     sync_dist=True)
        self._val_rows = []

    def _log_grid(self, src, mask, valid, target, pha) -> None:
        exp = getattr(self.logger, "experiment", None)
        if exp is None or not hasattr(exp, "add_image"):
            return
        rows = []
        for t in (0, src.shape[0] - 1):
            g = mask[t] if bool(valid[t]) else torch.zeros_like(mask[t])
            tiles = [src[t], g.expand(3, -1, -1), target[t].expand(3, -1, -1), pha[t].expand(3, -1, -1)]
            rows.append(torch.cat(tiles, dim=-1))
        grid = torch.cat(rows, dim=-2).clamp(0, 1).float().cpu()
        exp.add_image("val/frame|mask|target|prediction", grid, self.global_step)


# ---------------------------------------------------------------------------------------------
class SaveResolvedConfig(pl.Callback):
    """Write the resolved LightningCLI config as ``config.yaml`` beside the checkpoints."""

    def __init__(self, text: str):
        self.text = text

    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.global_rank != 0:
            return
        cb = trainer.checkpoint_callback
        folder = Path(cb.dirpath) if cb is not None and cb.dirpath else Path(trainer.default_root_dir)
        folder.mkdir(parents=True, exist_ok=True)
        from mamakit.fsutil import write_bytes_atomic

        write_bytes_atomic(folder / "config.yaml", self.text.encode())


def run_distill(args: list[str], ckpt_path: str | None = None) -> dict[str, Any]:
    """Parse ``args`` with LightningCLI (``--config FILE``, ``--section.key value``), train, and
    return ``{"checkpoint_dir", "last", "student_dir", "global_step"}``."""
    import warnings

    from pytorch_lightning.cli import LightningCLI

    warnings.filterwarnings("ignore", message=".*LightningCLI's args parameter.*")
    warnings.filterwarnings("ignore", message=".*isinstance.treespec, LeafSpec.*")
    try:
        cli = LightningCLI(
            StudentDistillation, StudentData_cls(), args=args, run=False,
            save_config_kwargs={"overwrite": True}, parser_kwargs={"exit_on_error": False},
            auto_configure_optimizers=False,
        )
    except ConfigError:
        raise
    except SystemExit as exc:  # --help / --print_config
        if exc.code in (0, None):
            return {}
        raise ConfigError("invalid distill arguments (see `mamakit distill --help`)") from exc
    except Exception as exc:
        if type(exc).__name__ in ("ArgumentError", "ParserError", "NSKeyError", "ValueError", "TypeError"):
            msg = " ".join(str(exc).split())
            raise ConfigError(f"invalid distill configuration: {msg}") from exc
        raise
    trainer = cli.trainer
    from pytorch_lightning.callbacks import ModelCheckpoint

    for cb in trainer.checkpoint_callbacks:  # default: <default_root_dir>/checkpoints (stable across resumes)
        if isinstance(cb, ModelCheckpoint) and cb.dirpath is None:
            cb.dirpath = str(Path(trainer.default_root_dir) / "checkpoints")
    text = cli.parser.dump(cli.config, skip_none=False)
    trainer.callbacks.append(SaveResolvedConfig(text))
    trainer.fit(cli.model, datamodule=cli.datamodule, ckpt_path=ckpt_path)
    cb = trainer.checkpoint_callback
    out: dict[str, Any] = {"global_step": int(trainer.global_step),
                           "start_step": int(getattr(cli.model, "start_step", 0))}
    if cb is not None and cb.dirpath:
        out["checkpoint_dir"] = str(cb.dirpath)
        last = Path(cb.dirpath) / "last.ckpt"
        if last.is_file() and trainer.global_rank == 0 and not trainer.interrupted:
            from mamakit.student.loading import load_student

            student_dir = Path(cb.dirpath) / "student"
            load_student(last).save_pretrained(student_dir)
            out["last"] = str(last)
            out["student_dir"] = str(student_dir)
    return out


def StudentData_cls():
    from mamakit.student.data import StudentData

    return StudentData
