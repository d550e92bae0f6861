"""Distillation with Lightning: loss goes down, resume continues, checkpoints, online teacher, errors."""
from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from conftest import assert_one_line_error, run_cli

pl = pytest.importorskip("pytorch_lightning")

from mamakit.errors import ConfigError, WorkError  # noqa: E402
from mamakit.student.data import AugmentConfig, StudentData  # noqa: E402
from mamakit.student.distill import StudentDistillation, run_distill  # noqa: E402

TINY_STUDENT = {"decoder_channels": [16, 12, 8, 8, 8]}
TINY_DATA = dict(source="synth", synth_clips=2, synth_frames=4, synth_size=(64, 64), clip_frames=3,
                 crop_size=(48, 48), samples_per_epoch=4, batch_size=2, val_clips=1, val_frames=3,
                 val_size=(48, 48))


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _trainer(root: Path, steps: int, **kw) -> pl.Trainer:
    from pytorch_lightning.callbacks import EMAWeightAveraging, ModelCheckpoint

    cbs = [ModelCheckpoint(dirpath=root / "checkpoints", save_last=True, every_n_train_steps=2),
           EMAWeightAveraging(decay=0.5)]
    return pl.Trainer(accelerator="cpu", devices=1, max_steps=steps, logger=False, enable_progress_bar=False,
                      enable_model_summary=False, num_sanity_val_steps=0, limit_val_batches=0,
                      default_root_dir=root, callbacks=cbs, **kw)


def _fixed_batch(dm: StudentData) -> dict:
    from mamakit.student.data import collate_skip

    return collate_skip([dm.train_set[i] for i in range(2)])


def _batch_loss(system: StudentDistillation, batch: dict) -> float:
    """The training loss of a fixed batch (BatchNorm in training mode, as during the steps)."""
    with torch.no_grad():
        src, tgt = batch["src"], batch["target"]
        pha, fgr, _ = system.student.forward_clip(src, batch["mask"], mask_valid=batch["mask_valid"])
        loss, _ = system.clip_losses(pha, fgr, tgt, batch["fgr"], batch["has_fgr"], None, None)
    return float(loss)


def test_student_training_lowers_loss(tmp_path):
    pl.seed_everything(0)
    dm = StudentData(**{**TINY_DATA, "p_flip": 0.0, "color_jitter": 0.0, "scale_range": (1.0, 1.0), "drift_px": 0})
    dm.setup("fit")
    system = StudentDistillation(student=TINY_STUDENT, lr=1e-2, warmup_steps=0, tbptt=2)
    batch = _fixed_batch(dm)
    before = _batch_loss(system, batch)
    _trainer(tmp_path, 20).fit(system, datamodule=dm)
    assert system.global_step == 20
    after = _batch_loss(system, batch)
    assert after < 0.7 * before, (before, after)


def test_student_masks_degraded_at_reference_height():
    """degrade_ref_height: masks are made on the whole source frame with 720p-sized blocks, then
    cropped with the frames; without it a 32x block is 32 pixels of the (small) training crop."""
    from mamakit.student.data import ClipWindows, SynthSource

    def iou_of(ref):
        ds = ClipWindows(SynthSource(3, 3, (256, 144), 11), 3, 6, AugmentConfig(crop_size=(128, 72), scale_range=(1.0, 1.0),
                         drift_px=0.0, p_flip=0.0, color_jitter=0.0, p_stored_masks=0.0),
                         {"p_polygon": 0.0, "p_two_ops": 0.0, "downsample_factors": [32], "p_box": 0.0,
                          "p_temporal": 0.0}, None, seed=0, degrade_ref_height=ref)
        out = []
        for i in range(len(ds)):
            s = ds[i]
            m, gt = s["mask"] > 0.5, s["target"] > 0.5
            assert set(torch.unique(s["mask"]).tolist()) <= {0.0, 1.0}
            out.append(float((m & gt).sum() / (m | gt).sum().clamp(min=1)))
        return float(np.mean(out))

    at_crop, at_720 = iou_of(None), iou_of(720)
    # 32x on a 72-px crop leaves ~2 blocks across the frame; at 720p scale a block is ~6 source pixels
    assert at_720 > 0.8 and at_720 > at_crop + 0.1, (at_crop, at_720)


def _recipe(tmp_path: Path, steps: int, data: dict | None = None, model: dict | None = None) -> Path:
    cfg = {
        "seed_everything": 0,
        "trainer": {
            "accelerator": "cpu", "devices": 1, "max_steps": steps, "log_every_n_steps": 1,
            "val_check_interval": 2, "check_val_every_n_epoch": None, "num_sanity_val_steps": 0,
            "enable_progress_bar": False, "enable_model_summary": False, "deterministic": True,
            "default_root_dir": str(tmp_path / "run"),
            "logger": {"class_path": "pytorch_lightning.loggers.TensorBoardLogger",
                       "init_args": {"save_dir": str(tmp_path / "run"), "name": "logs"}},
            "callbacks": [
                {"class_path": "pytorch_lightning.callbacks.ModelCheckpoint",
                 "init_args": {"dirpath": str(tmp_path / "run" / "checkpoints"), "save_last": True,
                               "every_n_train_steps": 2}},
                {"class_path": "pytorch_lightning.callbacks.EMAWeightAveraging", "init_args": {"decay": 0.5}},
            ],
        },
        "model": {"student": TINY_STUDENT, "tbptt": 2, "lr": 3e-3, "warmup_steps": 1, "cpu_threads": 1,
                  **(model or {})},
        "data": {k: list(v) if isinstance(v, tuple) else v for k, v in {**TINY_DATA, **(data or {})}.items()},
    }
    path = tmp_path / "recipe.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def test_student_resume_continues_and_checkpoint_contract(tmp_path):
    recipe = _recipe(tmp_path, 2)
    out = run_distill(["--config", str(recipe)])
    assert out["global_step"] == 2
    ckdir = Path(out["checkpoint_dir"])
    assert (ckdir / "config.yaml").is_file() and "max_steps: 2" in (ckdir / "config.yaml").read_text()
    first = torch.load(ckdir / "last.ckpt", map_location="cpu", weights_only=True)
    assert first["global_step"] == 2
    # resume with a larger budget: continues from step 2 (not from 0) up to 4
    out = run_distill(["--config", str(recipe), "--trainer.max_steps", "4"], ckpt_path="last")
    assert out["start_step"] == 2 and out["global_step"] == 4
    ckpt = torch.load(ckdir / "last.ckpt", map_location="cpu", weights_only=True)
    assert ckpt["global_step"] == 4
    assert ckpt["mamakit"]["kind"] == "student"
    assert ckpt["mamakit"]["config"]["decoder_channels"] == TINY_STUDENT["decoder_channels"]
    # EMA weights are what load_student returns; they differ from the raw weights
    from mamakit.student import load_student

    model = load_student(ckdir / "last.ckpt")
    key = "encoder.stages.0.0.0.weight"
    assert torch.equal(model.state_dict()[key], ckpt["state_dict"]["student." + key])
    assert not torch.equal(ckpt["state_dict"]["student." + key], ckpt["current_model_state"]["student." + key])
    assert (ckdir / "student" / "model.safetensors").is_file()
    logs = list((tmp_path / "run" / "logs").rglob("events.out.tfevents*"))
    assert logs, "TensorBoard logs were not written"


def test_student_online_teacher_labels_each_clip_once(tmp_path):
    pytest.importorskip("diffusers")
    cache = tmp_path / "cache"
    dm = StudentData(**{**TINY_DATA, "targets": "teacher", "teacher": "videomama",
                        "teacher_options": {"tiny": True, "seed": 0}, "cache_dir": str(cache)})
    dm.setup("fit")
    system = StudentDistillation(student=TINY_STUDENT, tbptt=3)
    _trainer(tmp_path, 4).fit(system, datamodule=dm)  # 2 epochs of 2 batches
    files = sorted(cache.glob("*.npz"))
    assert len(files) == TINY_DATA["synth_clips"], files
    assert dm.targets.labelled == TINY_DATA["synth_clips"]  # later epochs read the cache
    with np.load(files[0], allow_pickle=False) as z:
        a = z["alpha"]
    assert a.shape == (4, 64, 64) and a.dtype == np.uint16
    # a fresh module (e.g. a resumed run) reads the cache instead of labelling again
    dm2 = StudentData(**{**TINY_DATA, "targets": "teacher", "teacher": "videomama",
                         "teacher_options": {"tiny": True, "seed": 0}, "cache_dir": str(cache)})
    dm2.setup("fit")
    sample = dm2.train_set[0]
    assert sample is not None and dm2.targets.labelled == 0


def _write_dataset(root: Path, clips: int, frames: int):
    from mamakit.dataset import DatasetWriter
    from mamakit.synth import make_clip

    w = DatasetWriter(root)
    for i in range(clips):
        c = make_clip(i, frames, (48, 48))
        with w.clip(f"c{i}") as cw:
            for t in range(frames):
                cw.add(c.frames[t], c.alpha[t], mask=c.masks[t])
    return root


def test_student_corrupt_samples_skipped_and_counted(tmp_path, caplog):
    root = _write_dataset(tmp_path / "ds", 2, 3)
    bad = sorted((root / "clips" / "c1" / "frames").iterdir())[1]
    bad.write_bytes(b"not a png")
    dm = StudentData(**{**TINY_DATA, "source": "dataset", "root": str(root), "samples_per_epoch": 6})
    dm.setup("fit")
    system = StudentDistillation(student=TINY_STUDENT, tbptt=3)
    with caplog.at_level("WARNING", logger="mamakit"):
        _trainer(tmp_path, 3).fit(system, datamodule=dm)
    assert 0 < system._skipped <= 6
    assert any("corrupt sample" in r.getMessage() for r in caplog.records)


def test_student_mse_weight_adds_squared_alpha_error():
    torch.manual_seed(0)
    pha, target = torch.rand(2, 3, 1, 16, 16), torch.rand(2, 3, 1, 16, 16)
    fgr = torch.rand(2, 3, 3, 16, 16)
    args = (pha, fgr, target, fgr, torch.zeros(2), None, None)
    base, terms0 = StudentDistillation(student=TINY_STUDENT).clip_losses(*args)
    total, terms = StudentDistillation(student=TINY_STUDENT, loss_weights={"mse": 3.0}).clip_losses(*args)
    assert "mse" not in terms0 and "mse" in terms
    assert float(terms["mse"]) == pytest.approx(float(((pha - target) ** 2).mean()), rel=1e-6)
    assert float(total - base) == pytest.approx(3.0 * float(terms["mse"]), rel=1e-5)


def test_student_short_clips_and_bad_config_fail_before_training(tmp_path):
    root = _write_dataset(tmp_path / "ds", 1, 2)
    dm = StudentData(**{**TINY_DATA, "source": "dataset", "root": str(root), "clip_frames": 3})
    with pytest.raises(ConfigError, match="shorter than data.clip_frames=3"):
        dm.setup("fit")
    with pytest.raises(ConfigError, match="data.targets"):
        StudentData(targets="magic")
    with pytest.raises(ConfigError, match="loss_weights"):
        StudentDistillation(loss_weights={"l7": 1.0})


def test_student_nan_stops_with_last_good_checkpoint(tmp_path):
    dm = StudentData(**TINY_DATA)
    dm.setup("fit")
    _trainer(tmp_path, 2).fit(StudentDistillation(student=TINY_STUDENT, tbptt=3), datamodule=dm)
    good = tmp_path / "checkpoints" / "last.ckpt"
    assert good.is_file()
    before = good.stat().st_mtime_ns
    # an absurd learning rate makes the weights explode: the loss turns NaN/inf within a few steps
    system = StudentDistillation(student=TINY_STUDENT, tbptt=3, lr=1e30, warmup_steps=0, grad_clip=0.0)
    trainer = _trainer(tmp_path, 50)
    trainer.callbacks[0]._every_n_train_steps = 1000  # no new checkpoint of the exploding run
    with pytest.raises(WorkError, match=r"became (nan|inf).*last good checkpoint: .*last\.ckpt"):
        trainer.fit(system, datamodule=dm)
    assert good.stat().st_mtime_ns == before


def test_student_distill_cli_bad_inputs(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "manifest.jsonl").write_text("")
    recipe = _recipe(tmp_path, 2, data={"source": "dataset", "root": str(empty)})
    proc = run_cli("distill", "--config", recipe)
    assert_one_line_error(proc, 2, contains="no clips")
    proc = run_cli("distill", "--config", tmp_path / "missing.yaml")
    assert_one_line_error(proc, 2, contains="does not exist")


def test_distill_init_from_a_student_folder_starts_from_its_weights(tmp_path):
    """model.init_from (fine-tuning a trained student): the module starts from the given weights;
    a missing folder or weights of another configuration are one-line config errors."""
    import torch

    from mamakit.errors import ConfigError
    from mamakit.student.distill import StudentDistillation
    from mamakit.student.models import StudentConfig, StudentNet

    torch.manual_seed(3)
    src = StudentNet(StudentConfig.preset("small"))
    src.save_pretrained(tmp_path / "stage1")
    m = StudentDistillation(size="small", train_downsample_ratio=0.5, init_from=str(tmp_path / "stage1"))
    theirs = src.state_dict()
    for k, v in m.student.state_dict().items():
        assert torch.equal(v, theirs[k]), k
    assert m.student.config.downsample_ratio == 0.5  # the training ratio, weights from stage 1
    fresh = StudentDistillation(size="small")
    assert not all(torch.equal(v, theirs[k]) for k, v in fresh.student.state_dict().items())
    with pytest.raises(ConfigError, match="does not exist"):
        StudentDistillation(size="small", init_from=str(tmp_path / "nowhere"))
    with pytest.raises(ConfigError, match="does not match"):
        StudentDistillation(size="large", init_from=str(tmp_path / "stage1"))
    # a refiner with an extra alpha guide grows from a student without one: same weights elsewhere,
    # zero slope on the new guide
    grown = StudentDistillation(size="small", student={"refiner_extra": "mask"}, init_from=str(tmp_path / "stage1"))
    for k, v in grown.student.state_dict().items():
        if k in theirs and v.shape == theirs[k].shape:
            assert torch.equal(v, theirs[k]), k
    assert torch.count_nonzero(grown.student.refiner.conv[-1].weight[4]) == 0
    assert grown.student.refiner.conv[0].weight.shape[1] == src.refiner.conv[0].weight.shape[1] + 2


def test_student_train_only_freezes_the_other_parts_weights_and_statistics(tmp_path):
    """model.train_only trains the named parts; the rest keeps its weights *and* BatchNorm statistics
    (frozen parts stay in eval mode although Lightning puts the model in train mode)."""
    pl.seed_everything(0)
    dm = StudentData(**TINY_DATA)
    system = StudentDistillation(student=TINY_STUDENT, lr=1e-2, warmup_steps=0, tbptt=2,
                                 train_only=["head", "refiner"])
    before = copy.deepcopy(system.student.state_dict())
    _trainer(tmp_path, 3).fit(system, datamodule=dm)
    after = system.student.state_dict()
    changed = {k.split(".")[0] for k in before if not torch.equal(before[k], after[k])}
    assert changed == {"head", "refiner"}  # encoder/decoder weights and running stats untouched
    with pytest.raises(ConfigError, match="train_only"):
        StudentDistillation(student=TINY_STUDENT, train_only=["trunk"])
    with pytest.raises(ConfigError, match="train_only"):
        StudentDistillation(student=TINY_STUDENT, train_only=[])


def test_student_freeze_batchnorm_trains_on_the_exported_function(tmp_path):
    """model.freeze_batchnorm: every BatchNorm stays in eval mode during training, so a training step
    sees the function that is exported (train-mode output == eval output) and the running statistics
    are never updated, while the weights, BatchNorm scales and shifts included, still learn."""
    pl.seed_everything(0)
    dm = StudentData(**TINY_DATA)
    dm.setup("fit")
    batch = _fixed_batch(dm)
    system = StudentDistillation(student=TINY_STUDENT, lr=1e-2, warmup_steps=0, tbptt=2, freeze_batchnorm=True)
    bn = [(n, m) for n, m in system.student.named_modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert bn
    with torch.no_grad():  # a trained-like student: nonzero head (a fresh one outputs the mask) and
        for p in system.student.parameters():  # statistics unlike the batches', so the two modes differ
            p.add_(0.1 * torch.randn_like(p))
        for _, m in bn:
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2.0)

    def out(train: bool):
        system.train(train)
        system._keep_frozen_in_eval()
        with torch.no_grad():
            return system.student.forward_clip(batch["src"], batch["mask"], mask_valid=batch["mask_valid"])[0]

    assert torch.equal(out(True), out(False))
    before = copy.deepcopy(system.student.state_dict())
    _trainer(tmp_path, 3).fit(system, datamodule=dm)
    after = system.student.state_dict()
    stats = [k for k in before if k.endswith(("running_mean", "running_var"))]
    assert stats and all(torch.equal(before[k], after[k]) for k in stats)
    assert any(not torch.equal(before[f"{n}.weight"], after[f"{n}.weight"]) for n, _ in bn)
    # without the option, the same check fails: batch statistics are used and running ones move
    plain = StudentDistillation(student=TINY_STUDENT, lr=1e-2, warmup_steps=0, tbptt=2)
    plain.student.load_state_dict(before)
    plain.train()
    plain._keep_frozen_in_eval()
    with torch.no_grad():
        trained = plain.student.forward_clip(batch["src"], batch["mask"], mask_valid=batch["mask_valid"])[0]
    plain.eval()
    with torch.no_grad():
        evaluated = plain.student.forward_clip(batch["src"], batch["mask"], mask_valid=batch["mask_valid"])[0]
    assert not torch.allclose(trained, evaluated, atol=1e-3)
    # a list freezes only those parts' BatchNorms; an unknown part is a config error
    part = StudentDistillation(student=TINY_STUDENT, freeze_batchnorm=["encoder"])
    assert part._frozen and all(any(m is e for e in part.student.encoder.modules()) for m in part._frozen)
    assert len(part._frozen) < len(system._frozen)
    with pytest.raises(ConfigError, match="freeze_batchnorm"):
        StudentDistillation(student=TINY_STUDENT, freeze_batchnorm=["trunk"])


def _unknown(keys, allowed) -> list[str]:
    return sorted(set(keys) - set(allowed))


@pytest.mark.parametrize("recipe", sorted(p.name for p in (Path(__file__).parents[1] / "student" / "configs").glob("*.yaml")
                                          if not p.name.startswith("sam2-")))
def test_shipped_student_recipes_name_only_settings_that_exist(recipe):
    """Every shipped distillation recipe names only arguments the Lightning classes take and builds
    its student and mask-degradation configs: a misspelt key (``p_two_op``) would otherwise surface
    only after data generation, an hour into a recipe's instructions."""
    import dataclasses
    import inspect

    from mamakit.degrade import DegradeConfig
    from mamakit.student.losses import LossWeights
    from mamakit.student.models import StudentConfig

    cfg = yaml.safe_load((Path(__file__).parents[1] / "student" / "configs" / recipe).read_text())

    def params(fn):
        return [n for n in inspect.signature(fn).parameters if n != "self"]

    assert not _unknown(cfg, ["seed_everything", "trainer", "model", "data", "ckpt_path"])
    assert not _unknown(cfg.get("trainer", {}), params(pl.Trainer.__init__))
    model, data = cfg["model"], cfg["data"]
    assert not _unknown(model, params(StudentDistillation.__init__))
    if data.get("source") == "dataset" and not data.get("root"):
        data = {**data, "root": "DATA"}  # recipes for your own data take it as --data.root
    StudentData(**data)  # unknown keys: TypeError; bad sources/targets: ConfigError
    assert not _unknown(model.get("loss_weights") or {}, [f.name for f in dataclasses.fields(LossWeights)])
    StudentConfig.preset(model.get("size", "small"), **(model.get("student") or {}))
    DegradeConfig.from_dict(data.get("degrade"))


def test_degrade_config_from_a_recipe_mapping():
    """A recipe's ``degrade:`` mapping: YAML lists become tuples; a misspelt key is a ConfigError naming it."""
    from mamakit.degrade import DegradeConfig

    cfg = DegradeConfig.from_dict({"p_two_ops": 0.8, "downsample_factors": [16, 32]})
    assert cfg.p_two_ops == 0.8 and cfg.downsample_factors == (16, 32)
    assert DegradeConfig.from_dict(None) == DegradeConfig()
    with pytest.raises(ConfigError, match="p_two_op\\b.*p_two_ops"):
        DegradeConfig.from_dict({"p_two_op": 0.8})
