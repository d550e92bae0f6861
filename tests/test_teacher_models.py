"""VideoMaMa teacher (tiny random weights of the real diffusers classes) and its building blocks."""
from __future__ import annotations

import json

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("diffusers")

from mamakit.errors import ConfigError  # noqa: E402


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _clip(t=4, h=48, w=64, seed=0):
    rng = np.random.default_rng(seed)
    frames = rng.integers(0, 255, (t, h, w, 3), dtype=np.uint8)
    masks = np.zeros((t, h, w), np.float32)
    masks[:, h // 4: 3 * h // 4, w // 4: 3 * w // 4] = 1.0
    return frames, masks


@pytest.fixture(scope="module")
def tiny():
    from mamakit.teacher import VideoMaMaTeacher

    return VideoMaMaTeacher.tiny(seed=0, window=3, overlap=1, processing_size=(64, 64))


def test_teacher_official_unet_param_count_on_meta_device():
    from diffusers import UNetSpatioTemporalConditionModel

    from mamakit.teacher.videomama.config import OFFICIAL_UNET_CONFIG, OFFICIAL_UNET_PARAMS_12

    with torch.device("meta"):
        unet = UNetSpatioTemporalConditionModel(**OFFICIAL_UNET_CONFIG)
    assert unet.config.in_channels == 12
    assert unet.conv_in.weight.shape[1] == 12
    assert sum(p.numel() for p in unet.parameters()) == OFFICIAL_UNET_PARAMS_12 == 1_524_634_602
    with torch.device("meta"):
        stock = UNetSpatioTemporalConditionModel(**{**OFFICIAL_UNET_CONFIG, "in_channels": 8})
    assert sum(p.numel() for p in stock.parameters()) == 1_524_623_082


def test_teacher_tiny_contract_and_determinism(tiny):
    from mamakit.teacher import TeacherOutput, build_teacher

    frames, masks = _clip()
    out = tiny(frames, masks)
    assert isinstance(out, TeacherOutput)
    assert out.alpha.shape == (4, 48, 64) and out.alpha.dtype == np.float32
    assert 0.0 <= out.alpha.min() and out.alpha.max() <= 1.0
    assert out.alpha.std() > 0  # a real network ran
    again = tiny(frames, masks)
    np.testing.assert_array_equal(out.alpha, again.alpha)  # deterministic: mode() + fixed seed
    t2 = build_teacher("videomama", tiny=True, seed=0, window=3, overlap=1, processing_size=(64, 64))
    np.testing.assert_allclose(t2(frames, masks).alpha, out.alpha, atol=1e-6)
    assert tiny.name == "videomama" and tiny.version
    # the mask conditions the output
    other = tiny(frames, 1.0 - masks)
    assert np.abs(other.alpha - out.alpha).max() > 1e-4


def test_teacher_conditioning_matches_field_guide(tiny):
    """Rebuild the 12-channel UNet input by hand and compare with the pipeline's result."""
    pipe = tiny.pipeline
    frames, masks = _clip(t=2, h=64, w=128)
    x = torch.from_numpy(frames.astype(np.float32)).permute(0, 3, 1, 2) / 127.5 - 1
    m = torch.from_numpy(masks).unsqueeze(1)
    gen = torch.Generator().manual_seed(42)
    got = pipe(x, m, generator=gen)
    with torch.no_grad():
        rgb = pipe.vae.encode(x).latent_dist.mode()              # unscaled latents
        mlat = pipe.vae.encode((m * 2 - 1).repeat(1, 3, 1, 1)).latent_dist.mode()
        noise = torch.randn((1, 2, 4, 8, 16), generator=torch.Generator().manual_seed(42))
        inp = torch.cat([noise, rgb[None], mlat[None]], dim=2)
        assert inp.shape[2] == 12
        out = pipe.unet(inp, torch.tensor([1.0]), encoder_hidden_states=torch.zeros(1, 1, 32),
                        added_time_ids=torch.tensor([[7.0, 127.0, 0.0]])).sample
        img = pipe.vae.decode(out[0] / 0.18215, num_frames=2).sample
        ref = (img / 2 + 0.5).clamp(0, 1).mean(1)
    torch.testing.assert_close(got, ref, atol=1e-5, rtol=1e-5)


def test_teacher_nine_channel_variant_and_euler_steps():
    from mamakit.teacher import VideoMaMaTeacher

    frames, masks = _clip(t=2)
    nine = VideoMaMaTeacher.tiny(seed=1, in_channels=9, processing_size=(64, 64))
    assert nine.pipeline.mask_mode == "resize"
    a9 = nine(frames, masks).alpha
    assert a9.shape == (2, 48, 64)
    multi = VideoMaMaTeacher.tiny(seed=1, steps=3, processing_size=(64, 64))
    from mamakit.teacher.schedulers import EulerSampler

    assert isinstance(multi.pipeline.sampler, EulerSampler)
    calls = []
    orig = multi.pipeline.unet.forward

    def counting(*a, **k):
        calls.append(1)
        return orig(*a, **k)

    multi.pipeline.unet.forward = counting
    am = multi(frames, masks).alpha
    assert len(calls) == 3 and am.shape == (2, 48, 64) and np.isfinite(am).all()


def test_teacher_windows_bounded_and_blended():
    from mamakit.teacher.windows import stream_windows

    seen = []

    def run(frames, guides):
        seen.append((len(frames), [float(g.mean()) for g in guides]))
        return [np.full(f.shape[:2], 0.5 + 0.1 * len(seen), np.float32) for f in frames]

    frames = [np.zeros((4, 4, 3), np.uint8)] * 10
    masks = [np.ones((4, 4), np.float32)] * 10
    out = list(stream_windows(zip(frames, masks), run, window=4, overlap=2))
    assert len(out) == 10
    assert max(n for n, _ in seen) <= 4
    # window 2 starts with the 2 carried frames, guided by window 1's soft alpha (0.6)
    assert seen[1][1][:2] == pytest.approx([0.6, 0.6]) and seen[1][1][2] == pytest.approx(1.0)
    # carried frames are blended: frame 2 = 2/3*0.6 + 1/3*0.7, frame 3 = 1/3*0.6 + 2/3*0.7
    assert out[2].mean() == pytest.approx(0.6 * 2 / 3 + 0.7 / 3, abs=1e-5)
    assert out[3].mean() == pytest.approx(0.6 / 3 + 0.7 * 2 / 3, abs=1e-5)
    # a size change closes the window: each window runs at one size
    seen.clear()
    sizes = [np.zeros((4, 4, 3), np.uint8)] * 3 + [np.zeros((6, 5, 3), np.uint8)] * 3
    out = list(stream_windows(zip(sizes, [np.ones(s.shape[:2], np.float32) for s in sizes]), run, 4, 1))
    assert [o.shape for o in out] == [(4, 4)] * 3 + [(6, 5)] * 3
    with pytest.raises(ConfigError):
        list(stream_windows(iter([]), run, window=4, overlap=4))


def test_teacher_long_stream_sizes_resize_and_empty(tiny):
    frames, masks = _clip(t=5)
    small_masks = masks[:, ::2, ::2].copy()  # masks of another size are resized
    small_masks[3] = 0
    out = tiny(frames, small_masks).alpha
    assert out.shape == (5, 48, 64)
    assert out[3].max() == 0.0 and out[2].max() > 0  # empty mask -> alpha 0
    # keep-aspect processing size: long side fitted, sides multiples of 64
    from mamakit.teacher.videomama.teacher import VideoMaMaOptions, processing_size_for

    assert processing_size_for(1920, 1088, VideoMaMaOptions(keep_aspect=True)) == (1024, 576)
    assert processing_size_for(1000, 1000, VideoMaMaOptions(keep_aspect=True)) == (1024, 1024)
    assert processing_size_for(600, 1200, VideoMaMaOptions(keep_aspect=True, processing_size=(512, 288))) == (256, 512)


def test_teacher_widen_unet_keeps_stock_behaviour():
    from diffusers import UNetSpatioTemporalConditionModel

    from mamakit.teacher import widen_unet
    from mamakit.teacher.videomama.config import TINY_UNET_CONFIG

    torch.manual_seed(0)
    stock = UNetSpatioTemporalConditionModel(**{**TINY_UNET_CONFIG, "in_channels": 8}).eval()
    for n in (12, 9):
        wide = widen_unet(stock, n).eval()
        assert wide.config.in_channels == n
        assert torch.all(wide.conv_in.weight[:, 8:] == 0)
        x = torch.randn(1, 2, 8, 8, 8)
        extra = torch.randn(1, 2, n - 8, 8, 8)
        kw = dict(encoder_hidden_states=torch.zeros(1, 1, 32), added_time_ids=torch.tensor([[7.0, 127.0, 0.0]]))
        with torch.no_grad():
            a = stock(x, 1.0, **kw).sample
            b = wide(torch.cat([x, extra], 2), 1.0, **kw).sample
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)
    with pytest.raises(ConfigError):
        widen_unet(stock, 10)


def test_teacher_pipeline_refuses_eight_input_unet():
    from diffusers import AutoencoderKLTemporalDecoder, UNetSpatioTemporalConditionModel

    from mamakit.teacher.schedulers import OneStepSampler
    from mamakit.teacher.videomama.config import TINY_UNET_CONFIG, TINY_VAE_CONFIG
    from mamakit.teacher.videomama.pipeline import VideoMaMaPipeline

    unet = UNetSpatioTemporalConditionModel(**{**TINY_UNET_CONFIG, "in_channels": 8})
    with pytest.raises(ConfigError, match="8 input channels"):
        VideoMaMaPipeline(unet, AutoencoderKLTemporalDecoder(**TINY_VAE_CONFIG), OneStepSampler())


def test_teacher_sequential_offload_hooks_keep_results(tiny):
    from mamakit.teacher import VideoMaMaTeacher
    from mamakit.teacher.videomama.teacher import _sequential_offload

    frames, masks = _clip(t=2)
    ref = tiny(frames, masks).alpha
    other = VideoMaMaTeacher.tiny(seed=0, window=3, overlap=1, processing_size=(64, 64))
    _sequential_offload(other.pipeline.unet, torch.device("cpu"))
    _sequential_offload(other.pipeline.vae, torch.device("cpu"))
    np.testing.assert_allclose(other(frames, masks).alpha, ref, atol=1e-6)
