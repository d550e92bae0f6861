"""Loading VideoMaMa from local folders (official layout, fp16 variant, single file), the
videomama teacher through `mamakit label`, and SAM2 mask sources (random weights, small size)."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("diffusers")

from mamakit.errors import ConfigError  # noqa: E402
from mamakit.io import read_alpha, write_alpha_png, write_image  # noqa: E402


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory):
    from mamakit.teacher.make_tiny import make_tiny

    return make_tiny(tmp_path_factory.mktemp("tiny") / "teacher", seed=3)


def _clip(t=3, h=48, w=64):
    rng = np.random.default_rng(0)
    frames = rng.integers(0, 255, (t, h, w, 3), dtype=np.uint8)
    masks = np.zeros((t, h, w), np.float32)
    masks[:, 10:38, 16:48] = 1
    return frames, masks


def test_teacher_load_official_layout_variants_and_single_file(tiny_dir, tmp_path):
    from safetensors.torch import save_file

    from mamakit.teacher import VideoMaMaTeacher, load_videomama

    base, vm = Path(tiny_dir["base_model"]), Path(tiny_dir["unet"])
    assert (base / "vae" / "config.json").is_file() and (vm / "unet" / "config.json").is_file()
    assert json.loads((vm / "unet" / "config.json").read_text())["in_channels"] == 12
    frames, masks = _clip()
    opts = dict(processing_size=(64, 64), window=4, overlap=1)
    loaded = VideoMaMaTeacher.from_pretrained(base, vm, **opts)
    ref = VideoMaMaTeacher.tiny(seed=3, **opts)
    # the same weights: equal to float32 rounding (seen: 1.1e-6 on one pixel of 9216 on a loaded CI machine);
    # a wrong or missing tensor moves alpha by orders of magnitude more
    np.testing.assert_allclose(loaded(frames, masks).alpha, ref(frames, masks).alpha, atol=1e-5)
    # a single .safetensors UNet + config.json
    unet, _ = load_videomama(base, vm)
    single = tmp_path / "single"
    single.mkdir()
    save_file(unet.state_dict(), str(single / "videomama.safetensors"))
    (single / "my_config.json").write_text((vm / "unet" / "config.json").read_text())
    with pytest.raises(ConfigError, match="--unet-config"):
        load_videomama(base, single / "videomama.safetensors")
    u2, _ = load_videomama(base, single / "videomama.safetensors", unet_config=single / "my_config.json")
    for (k, a), (_, b) in zip(sorted(unet.state_dict().items()), sorted(u2.state_dict().items())):
        assert torch.equal(a, b), k
    # the fp16 variant (as SVD-XT ships its VAE) loads as fp16
    from mamakit.teacher.make_tiny import make_tiny

    half = make_tiny(tmp_path / "half", seed=3, fp16_variant=True)
    assert (Path(half["base_model"]) / "vae" / "diffusion_pytorch_model.fp16.safetensors").is_file()
    u16, v16 = load_videomama(half["base_model"], half["unet"], dtype="fp16")
    assert u16.dtype == torch.float16 and v16.dtype == torch.float16
    with pytest.raises(ConfigError, match="expected BASE/vae"):
        load_videomama(tmp_path / "nowhere", vm)


def test_teacher_label_videomama_tiny_dir_end_to_end(tiny_dir, tmp_path):
    from mamakit.cli import main

    frames, masks = _clip(t=3)
    fdir, mdir = tmp_path / "f", tmp_path / "m"
    fdir.mkdir()
    mdir.mkdir()
    for t in range(3):
        write_image(fdir / f"{t:05d}.png", frames[t])
        write_alpha_png(mdir / f"{t:05d}.png", masks[t, ::2, ::2])  # masks of another size
    out = tmp_path / "out"
    rc = main(["-q", "label", "--teacher", "videomama", "--base-model", tiny_dir["base_model"], "--unet",
               tiny_dir["unet"], "--source", str(fdir), "--masks", str(mdir), "--out", str(out), "--size", "64x64",
               "--window", "2", "--overlap", "1", "--device", "cpu", "--threads", "1"])
    assert rc == 0
    alphas = [read_alpha(out / "alpha" / f"{t:05d}.png") for t in range(3)]
    assert all(a.shape == (48, 64) for a in alphas)
    q = json.loads((out / "quality.json").read_text())
    assert q["alpha"] == "teacher:videomama@1.0" and q["teacher"]["options"]["processing_size"] == [64, 64]


def test_teacher_sam2_first_frame_and_prompts(tmp_path):
    pytest.importorskip("sam2")
    from mamakit.teacher.sam2_masks import Sam2Masks, build_sam2_predictor, parse_prompt

    pred = build_sam2_predictor(None, None, image_size=128, random_weights=True)
    assert pred.image_size == 128
    frames, masks = _clip(t=2)
    sam = Sam2Masks(pred)
    out = sam.propagate(list(frames), first_mask=masks[0])
    assert [m.shape for m in out] == [(48, 64)] * 2 and all(m.dtype == np.float32 for m in out)
    # the conditioning frame reproduces the given mask
    a, b = out[0] >= 0.5, masks[0] >= 0.5
    assert (a & b).sum() / (a | b).sum() > 0.97
    out = sam.propagate(list(frames), prompts=[parse_prompt("box=16,10,48,38")], prompt_frame=1)
    assert len(out) == 2 and all(0 <= m.min() and m.max() <= 1 for m in out)
    with pytest.raises(ConfigError):
        parse_prompt("point=1")
    with pytest.raises(ConfigError, match="--sam2-checkpoint"):
        build_sam2_predictor(None, None, image_size=128)


def test_teacher_label_first_frame_mask_through_sam2(tmp_path):
    pytest.importorskip("sam2")
    from mamakit.cli import main

    frames, masks = _clip(t=2)
    fdir = tmp_path / "f"
    fdir.mkdir()
    for t in range(2):
        write_image(fdir / f"{t:05d}.png", frames[t])
    first = tmp_path / "first.png"
    write_alpha_png(first, masks[0])
    out = tmp_path / "out"
    rc = main(["-q", "label", "--teacher", "closed-form", "--source", str(fdir), "--masks", str(first),
               "--sam2-random-weights", "--sam2-image-size", "128", "--out", str(out), "--threads", "1"])
    assert rc == 0
    assert sorted(p.name for p in (out / "alpha").iterdir()) == ["00000.png", "00001.png"]
    q = json.loads((out / "quality.json").read_text())
    # frame 0 is conditioned on the given mask, so its alpha agrees with it
    a0 = read_alpha(out / "alpha" / "00000.png") > 0.5
    m0 = masks[0] > 0.5
    assert (a0 & m0).sum() / (a0 | m0).sum() > 0.8 and q["frames"] == 2
