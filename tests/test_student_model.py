"""StudentNet contract: shapes, states, budgets, streaming == clip, save/load, checkpoint loading."""
from __future__ import annotations

import pytest
import torch

from mamakit.errors import ConfigError
from mamakit.student import load_student
from mamakit.student.models import StudentConfig, StudentNet, count_flops, count_parameters


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _tiny():
    return StudentConfig(decoder_channels=(16, 12, 8, 8, 8))


def test_student_default_budgets():
    """The shipped default (small) fits <= 4M params and <= 2 GFLOPs (FLOPs = 2 x MACs) at 1280x720."""
    model = StudentNet(StudentConfig.preset("small"))
    params = count_parameters(model)
    flops = count_flops(model, 720, 1280)
    assert params <= 4_000_000, params
    assert flops <= 2_000_000_000, flops
    assert flops > 200_000_000  # the counter really counted the convs
    large = StudentNet(StudentConfig.preset("large"))
    assert count_parameters(large) > params
    assert count_flops(large, 720, 1280) <= 10_000_000_000


def test_student_shapes_and_states():
    torch.manual_seed(0)
    model = StudentNet(_tiny()).eval()
    assert model.state_names() == ["r1", "r2", "r3", "r4"]
    state = model.initial_state(2, 90, 130)
    assert all(float(s.abs().sum()) == 0 for s in state)
    src, guide = torch.rand(2, 3, 90, 130), torch.rand(2, 1, 90, 130)
    with torch.no_grad():
        pha, fgr, *new = model(src, guide, *state)
    assert pha.shape == (2, 1, 90, 130) and fgr.shape == (2, 3, 90, 130)
    assert [tuple(s.shape) for s in new] == [tuple(s.shape) for s in state]
    assert float(pha.min()) >= 0 and float(pha.max()) <= 1
    with pytest.raises(ValueError, match="4 state tensors"):
        model(src, guide)


def test_student_streaming_equals_clip():
    """Frame-by-frame streaming (batch 1, guide fallback to previous alpha) == forward_clip on a batch."""
    torch.manual_seed(0)
    model = StudentNet(_tiny()).eval()
    B, T, H, W = 2, 5, 64, 96
    src, guide = torch.rand(B, T, 3, H, W), (torch.rand(B, T, 1, H, W) > 0.5).float()
    valid = torch.tensor([[True, False, False, True, False], [True, True, False, False, False]])
    with torch.no_grad():
        pha_clip, fgr_clip, final = model.forward_clip(src, guide, mask_valid=valid)
        for b in range(B):
            state = model.initial_state(1, H, W)
            prev = None
            for t in range(T):
                g = guide[b:b + 1, t] if valid[b, t] else prev
                pha, fgr, *state = model(src[b:b + 1, t], g, *state)
                prev = pha
                torch.testing.assert_close(pha[0], pha_clip[b, t], atol=1e-5, rtol=1e-4)
                torch.testing.assert_close(fgr[0], fgr_clip[b, t], atol=1e-5, rtol=1e-4)
    # the recurrent state really carries something from frame to frame
    assert all(float(s.abs().sum()) > 0 for s in final)
    assert not torch.allclose(pha_clip[:, 0], pha_clip[:, 1])


def test_student_save_load_roundtrip(tmp_path):
    torch.manual_seed(0)
    model = StudentNet(_tiny()).eval()
    model.save_pretrained(tmp_path / "s")
    again = load_student(tmp_path / "s")
    assert again.config == model.config
    x, g = torch.rand(1, 3, 48, 64), torch.rand(1, 1, 48, 64)
    st = model.initial_state(1, 48, 64)
    with torch.no_grad():
        for a, b in zip(model(x, g, *st), again(x, g, *st)):
            assert torch.equal(a, b)
    other = StudentNet(StudentConfig(decoder_channels=(16, 12, 8, 8, 4)))
    with pytest.raises(ConfigError, match="does not match"):
        other.load_weights(model.state_dict())
    with pytest.raises(ConfigError, match="not a student folder"):
        load_student(tmp_path)
    with pytest.raises(ConfigError, match="does not exist"):
        load_student(tmp_path / "nope")


def test_student_config_errors():
    with pytest.raises(ConfigError, match="unknown"):
        StudentConfig.preset("huge")
    with pytest.raises(ConfigError, match="encoder"):
        StudentConfig(encoder="resnet")
    with pytest.raises(ConfigError, match="unknown keys"):
        StudentConfig.from_dict({"bogus": 1})


def test_student_guide_residual_starts_at_the_mask_and_old_configs_keep_their_format():
    import torch

    from mamakit.student.models import StudentConfig, StudentNet

    torch.manual_seed(0)
    g = torch.rand(1, 1, 72, 128)
    src = torch.rand(1, 3, 72, 128)
    new = StudentNet(StudentConfig.preset("small", guide_residual=True)).eval()
    assert new.config.guide_residual and not StudentConfig.preset("small").guide_residual
    with torch.no_grad():
        pha, _, *_ = new(src, g, *new.initial_state(1, 72, 128))
    assert torch.equal(pha, g)  # untrained: exactly the mask, at full resolution
    d = new.config.to_dict()
    d.pop("guide_residual")  # a config.json written before the field existed
    old = StudentNet(StudentConfig.from_dict(d)).eval()
    assert not old.config.guide_residual
    with torch.no_grad():
        pha_old, _, *_ = old(src, g, *old.initial_state(1, 72, 128))
    assert (pha_old - g).abs().max() > 0.05  # the old format blurs the mask through the trunk


def _refiner_inputs():
    """Random (fine_src, base_src, base_fgr, base_pha, base_hid) for a 4x refinement of 18x30 -> 72x120."""
    from torch.nn import functional as F

    fine = torch.rand(1, 3, 72, 120)
    base = F.interpolate(fine, size=(18, 30), mode="bilinear", align_corners=False)
    return fine, base, torch.rand(1, 3, 18, 30), torch.rand(1, 1, 18, 30), torch.randn(1, 8, 18, 30)


def _guided_filter_by_hand(ref, fine, base, fgr, pha, hid, smooth: int = 0):
    """The textbook deep guided filter, written out: ``A * x + b`` with A, b from the trunk's local
    statistics (box-averaged once more when ``smooth``), bilinearly upsampled."""
    from torch.nn import functional as F

    from mamakit.student.models.refiner import box_filter

    bx = torch.cat([base, base.mean(1, keepdim=True)], 1)
    by = torch.cat([fgr, pha], 1)
    mx, my = box_filter(bx, 1), box_filter(by, 1)
    A = ref.conv(torch.cat([box_filter(bx * by, 1) - mx * my, box_filter(bx * bx, 1) - mx * mx, hid], 1))
    b = my - A * mx
    if smooth:
        A, b = box_filter(A, smooth), box_filter(b, smooth)
    up = lambda t: F.interpolate(t, size=tuple(fine.shape[-2:]), mode="bilinear", align_corners=False)  # noqa: E731
    return up(A) * torch.cat([fine, fine.mean(1, keepdim=True)], 1) + up(b)


def test_student_refiner_is_the_guided_filter_and_alpha_only_matches():
    """The refiner's full-resolution output is the locally linear model ``A * x + b`` with A, b
    bilinearly upsampled from the trunk (x = RGB for the foreground, the gray mean for alpha);
    the alpha-only path (two 1-channel resizes, 1/3 folded into A) gives the same alpha."""
    from mamakit.student.models.refiner import DeepGuidedFilterRefiner

    torch.manual_seed(0)
    ref = DeepGuidedFilterRefiner(hidden_in=8).eval()
    with torch.no_grad():
        for m in ref.conv:  # non-trivial BatchNorm statistics
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.2, 0.2)
                m.running_var.uniform_(0.5, 1.5)
    inputs = _refiner_inputs()
    with torch.no_grad():
        out_fgr, out_pha, memory = ref(*inputs, want_fgr=True)
        none, pha_only, _ = ref(*inputs, want_fgr=False)
        want = _guided_filter_by_hand(ref, *inputs)
    assert none is None and memory is None
    assert float(want.std()) > 0.05  # not a constant map
    assert torch.allclose(out_fgr, want[:, :3], atol=1e-5)
    assert torch.allclose(out_pha, want[:, 3:], atol=1e-5)
    assert torch.allclose(pha_only, want[:, 3:], atol=1e-5)


def _frame_box_state(model, h: int, w: int, box: tuple[int, int, int, int]):
    """A random frame, a box mask (rows y0:y1, columns x0:x1) and the model's zero state."""
    y0, y1, x0, x1 = box
    g = torch.zeros(1, 1, h, w)
    g[..., y0:y1, x0:x1] = 1.0
    return torch.rand(1, 3, h, w), g, model.initial_state(1, h, w)


@pytest.mark.parametrize("extra", ["mask", "chroma"])
def test_student_refiner_extra_guide_extends_a_trained_student_and_is_used(extra):
    """refiner_extra adds a second full-resolution alpha guide (the coarse mask, or a learned colour
    projection). A student grown by grow_state computes exactly what it did before (new
    slope zero); a non-zero slope changes alpha by that slope times the extra guide, at full resolution;
    the alpha-only path agrees with the full one; unknown names are a ConfigError."""
    import dataclasses

    torch.manual_seed(1)
    base = StudentNet(dataclasses.replace(_tiny(), downsample_ratio=0.25)).eval()
    with torch.no_grad():  # a "trained" refiner: non-zero slopes
        for p in base.refiner.conv[-1].parameters():
            p.normal_(0, 0.3)
    grown = StudentNet(dataclasses.replace(base.config, refiner_extra=extra)).eval()
    grown.load_weights(grown.grow_state(base.state_dict()))
    src, g, st = _frame_box_state(base, 72, 128, (20, 50, 30, 90))
    with torch.no_grad():
        want, _, *_ = base(src, g, *st)
        same, _, *_ = grown(src, g, *st)
        assert torch.equal(want, same)
        bias = grown.refiner.conv[-1].bias
        bias[4] = 0.5  # a constant slope 0.5 on the extra guide (and the local mean it removes)
        moved, _, *_ = grown(src, g, *st)
        alpha_only, *_ = grown.forward_alpha(src, g, *st)
    assert torch.allclose(moved, alpha_only, atol=1e-6)
    assert (moved - want).abs().max() > 0.05
    if extra == "mask":  # the mask's own full-resolution edge shows up in alpha
        edge = (moved - want)[..., 30:40, 25:35].abs().amax()
        assert edge > 0.1, edge
    with pytest.raises(ConfigError, match="refiner_extra"):
        StudentConfig(refiner_extra="depth")
    assert StudentConfig.from_dict({k: v for k, v in base.config.to_dict().items()
                                    if k != "refiner_extra"}).refiner_extra == "none"


def test_student_coarse_blocks_grow_a_trained_student_exactly_and_are_used():
    """coarse_blocks adds identity-initialised residual blocks at 1/16: grow_state makes the bigger
    student compute exactly what the smaller one did; moving a block's last conv changes alpha; old
    configs (no key) read as 0; out-of-range counts are a ConfigError."""
    import dataclasses

    torch.manual_seed(2)
    base = StudentNet(dataclasses.replace(_tiny(), downsample_ratio=0.5)).eval()
    with torch.no_grad():  # a "trained" head and 1/16 context (at random init both are ~0)
        for p in base.head.parameters():
            p.normal_(0, 0.3)
        base.decoder.context.proj[1].bias.fill_(0.5)
    grown = StudentNet(dataclasses.replace(base.config, coarse_blocks=2)).eval()
    assert len(grown.decoder.coarse) == 2 and len(base.decoder.coarse) == 0
    grown.load_weights(grown.grow_state(base.state_dict()))
    src, g, st = _frame_box_state(base, 64, 96, (16, 48, 24, 72))
    with torch.no_grad():
        want, _, *s0 = base(src, g, *st)
        same, _, *s1 = grown(src, g, *st)
        assert torch.equal(want, same) and all(torch.equal(a, b) for a, b in zip(s0, s1))
        grown.decoder.coarse[1].conv2.weight.normal_(0, 0.5)
        moved, _, *_ = grown(src, g, *st)
    # exactly equal before, different now: the block is on the path (a random-init decoder damps it)
    assert float((moved - want).abs().max()) > 1e-6
    with pytest.raises(ConfigError, match="coarse_blocks"):
        StudentConfig(coarse_blocks=-1)
    assert StudentConfig.from_dict({k: v for k, v in base.config.to_dict().items()
                                    if k != "coarse_blocks"}).coarse_blocks == 0


def test_student_trunk_resize_area_is_a_block_mean_and_equals_bilinear_at_2x():
    import torch.nn.functional as F

    from mamakit.student.models.matting_net import shrink

    torch.manual_seed(0)
    x = torch.rand(2, 4, 72, 128)
    bilinear = F.interpolate(x, size=(36, 64), mode="bilinear", align_corners=False)
    # an exact 2x: the same numbers either way, so students trained at ratio 0.5 can switch
    assert torch.allclose(shrink(x, (36, 64), "area"), bilinear, atol=1e-6)
    # an exact 4x: every pixel counts (block mean); bilinear samples only 2x2 of each 4x4 block
    area4 = shrink(x, (18, 32), "area")
    assert torch.allclose(area4, x.reshape(2, 4, 18, 4, 32, 4).mean(dim=(3, 5)), atol=1e-6)
    assert (shrink(x, (18, 32), "bilinear") - area4).abs().max() > 0.1
    # a non-integer factor: block mean by the integer part, then bilinear; a constant stays constant
    c = torch.full((1, 1, 72, 128), 0.3)
    assert shrink(c, (25, 45), "area").shape == (1, 1, 25, 45)
    assert torch.allclose(shrink(c, (25, 45), "area"), torch.full((1, 1, 25, 45), 0.3))
    # a thin line moving by one pixel: the area trunk input moves smoothly, bilinear blinks
    frames = torch.zeros(5, 1, 80, 80)
    for t in range(5):
        frames[t, 0, :, 20 + t] = 1.0
    area = [float(shrink(f[None], (16, 16), "area").sum()) for f in frames]
    point = [float(shrink(f[None], (16, 16), "bilinear").sum()) for f in frames]
    assert max(area) - min(area) < 1e-4 and max(point) - min(point) > 1.0


def test_student_trunk_resize_config():
    assert StudentConfig().trunk_resize == "area"
    with pytest.raises(ConfigError, match="trunk_resize"):
        StudentConfig(trunk_resize="nearest")
    d = StudentConfig(trunk_resize="bilinear").to_dict()
    assert StudentConfig.from_dict(d).trunk_resize == "bilinear"
    m = StudentNet(StudentConfig(decoder_channels=(16, 12, 8, 8, 8), downsample_ratio=0.25)).eval()
    src, g = torch.rand(1, 3, 72, 128), torch.rand(1, 1, 72, 128)
    with torch.no_grad():
        a = m(src, g, *m.initial_state(1, 72, 128))[0]
        m.config = StudentConfig(decoder_channels=(16, 12, 8, 8, 8), downsample_ratio=0.25, trunk_resize="bilinear")
        b = m(src, g, *m.initial_state(1, 72, 128))[0]
    assert a.shape == b.shape == (1, 1, 72, 128) and (a - b).abs().max() > 0  # the setting is used


def test_student_refiner_smooth_is_a_box_mean_of_the_coefficients_and_a_deployment_setting():
    """refiner_smooth=s box-filters A and b (radius s) before they are upsampled (He et al.'s
    mean_a, mean_b); reconfigure() switches it, and the other deployment settings, on a trained
    student without touching its weights, and refuses settings that would need other weights."""
    from mamakit.student.models.refiner import DeepGuidedFilterRefiner

    torch.manual_seed(0)
    ref = DeepGuidedFilterRefiner(hidden_in=8, smooth=1).eval()
    inputs = _refiner_inputs()
    with torch.no_grad():
        out_fgr, out_pha, _ = ref(*inputs, want_fgr=True)
        _, pha_only, _ = ref(*inputs, want_fgr=False)
        want = _guided_filter_by_hand(ref, *inputs, smooth=1)
        ref.smooth = 0
        _, unsmoothed, _ = ref(*inputs, want_fgr=False)
    assert torch.allclose(out_fgr, want[:, :3], atol=1e-5) and torch.allclose(out_pha, want[:, 3:], atol=1e-5)
    assert torch.allclose(pha_only, want[:, 3:], atol=1e-5)
    assert (unsmoothed - pha_only).abs().max() > 1e-3  # the setting is used

    net = StudentNet(_tiny()).eval()
    before = {k: v.clone() for k, v in net.state_dict().items()}
    assert net.reconfigure(refiner_smooth=1, refiner_radius=2, trunk_resize="bilinear") is net
    assert (net.config.refiner_smooth, net.config.refiner_radius) == (1, 2)
    assert (net.refiner.smooth, net.refiner.radius) == (1, 2)
    assert all(torch.equal(before[k], v) for k, v in net.state_dict().items())
    with pytest.raises(ConfigError, match="cannot change after training"):
        net.reconfigure(decoder_channels=(8, 8, 8, 8, 8))
    with pytest.raises(ConfigError, match="refiner_smooth"):
        net.reconfigure(refiner_smooth=-1)
    # a saved student keeps its settings
    assert StudentConfig.from_dict(net.config.to_dict()).refiner_smooth == 1


def test_student_alpha_memory_grows_a_trained_student_exactly_and_carries_the_previous_alpha():
    """alpha_memory adds a fifth state (a0: the trunk-resolution alpha, zeros at the start) that enters
    the encoder's first conv: grow_state makes the grown student compute exactly what the source did,
    frame after frame; a0' is the frame's trunk alpha (in 0..1, the trunk's shape); once its weights
    move, the previous alpha changes this frame's answer; streaming equals the clip path; old configs
    read as False."""
    import dataclasses

    torch.manual_seed(4)
    base = StudentNet(dataclasses.replace(_tiny(), downsample_ratio=0.5)).eval()
    with torch.no_grad():
        for p in base.head.parameters():
            p.normal_(0, 0.3)
    grown = StudentNet(dataclasses.replace(base.config, alpha_memory=True)).eval()
    assert grown.state_names() == ["r1", "r2", "r3", "r4", "a0"] and base.state_names() == ["r1", "r2", "r3", "r4"]
    grown.load_weights(grown.grow_state(base.state_dict()))
    src, g, st = _frame_box_state(base, 64, 96, (16, 48, 24, 72))
    sg = grown.initial_state(1, 64, 96)
    assert [tuple(s.shape) for s in sg[:4]] == [tuple(s.shape) for s in st] and tuple(sg[4].shape) == (1, 1, 32, 48)
    with torch.no_grad():
        for _ in range(3):  # the memory is fed back, and still changes nothing
            want, _, *st = base(src, g, *st)
            same, _, *sg = grown(src, g, *sg)
            assert torch.equal(want, same)
        a0 = sg[4]
        assert 0 <= float(a0.min()) and float(a0.max()) <= 1 and float(a0.std()) > 0.01
        grown.encoder.stages[0][0][0].weight[:, 4].normal_(0, 0.5)
        moved, _, *_ = grown(src, g, *sg)
        fresh, _, *_ = grown(src, g, *grown.initial_state(1, 64, 96))
    assert float((moved - fresh).abs().max()) > 1e-3  # the previous alpha is on the path
    clip_src, clip_g = torch.rand(1, 4, 3, 64, 96), g[:, None].repeat(1, 4, 1, 1, 1)
    with torch.no_grad():
        clip, _, _ = grown.forward_clip(clip_src, clip_g)
        s = grown.initial_state(1, 64, 96)
        for t in range(4):
            p, _, *s = grown(clip_src[:, t], clip_g[:, t], *s)
            assert torch.equal(p, clip[:, t])
    with pytest.raises(ValueError, match="5 state tensors"):
        grown(src, g, *st)
    assert StudentConfig.from_dict({k: v for k, v in base.config.to_dict().items()
                                    if k != "alpha_memory"}).alpha_memory is False


def test_student_stabilizer_blends_the_carried_coefficients_and_is_a_deployment_setting():
    """stabilizer=w adds a state c0 [1,3,h,w] at the trunk size: this frame's alpha coefficients
    (slope on the gray, offset) become coef + c0[2] * (c0[:2] - coef), and c0' holds the blended
    coefficients and w. A zero c0 (the start) changes nothing; weight 1 takes the carried
    coefficients whole, weight 0.5 the midpoint; the alpha-only pass agrees; training refuses it."""
    import dataclasses

    from torch.nn import functional as F

    torch.manual_seed(5)
    cfg = dataclasses.replace(_tiny(), downsample_ratio=0.5)
    base = StudentNet(cfg).eval()
    with torch.no_grad():
        for p in [*base.head.parameters(), *base.refiner.conv[-1].parameters()]:
            p.normal_(0, 0.3)
    net = StudentNet(cfg).eval()
    net.load_state_dict(base.state_dict())
    assert net.reconfigure(stabilizer=0.5) is net and net.state_names()[-1] == "c0"
    assert net.state_carry() == {"r1": "copy", "r2": "copy", "r3": "copy", "r4": "copy", "c0": "flow"}
    src, g, st = _frame_box_state(base, 64, 96, (16, 48, 24, 72))
    s0 = net.initial_state(1, 64, 96)
    assert tuple(s0[-1].shape) == (1, 3, 32, 48) and not s0[-1].any()
    gray3 = src.sum(dim=1, keepdim=True)

    def render(coef):
        up = F.interpolate(coef, size=(64, 96), mode="bilinear", align_corners=False)
        return torch.clamp(up[:, :1] * gray3 + up[:, 1:], 0, 1)

    with torch.no_grad():
        want, _, *_ = base(src, g, *st)
        got, _, *s1 = net(src, g, *s0)
        assert torch.allclose(got, want, atol=1e-6)  # zero weight: the unstabilised student
        c0 = s1[-1]
        assert torch.allclose(c0[:, 2], torch.full_like(c0[:, 2], 0.5))
        assert torch.allclose(render(c0[:, :2]), got, atol=1e-5)  # c0' is this frame's coefficients
        other = torch.randn(1, 2, 32, 48) * 0.3
        whole, _, *_ = net(src, g, *s0[:-1], torch.cat([other, torch.ones(1, 1, 32, 48)], 1))
        half, _, *_ = net(src, g, *s0[:-1], torch.cat([other, torch.full((1, 1, 32, 48), 0.5)], 1))
        alpha_only, *_ = net.forward_alpha(src, g, *s0[:-1], torch.cat([other, torch.full((1, 1, 32, 48), 0.5)], 1))
    assert torch.allclose(whole, render(other), atol=1e-5)
    assert torch.allclose(half, render((other + c0[:, :2]) / 2), atol=1e-5)
    assert torch.equal(half, alpha_only)
    assert float((half - got).abs().max()) > 1e-2  # the carried coefficients are used
    with pytest.raises(ConfigError, match="stabilizer"):
        net.reconfigure(stabilizer=1.0)
    with pytest.raises(ConfigError, match="stabilizer needs the refiner"):
        StudentConfig(stabilizer=0.5, refiner_extra="mask")
    from mamakit.student.distill import StudentDistillation

    with pytest.raises(ConfigError, match="deployment setting"):
        StudentDistillation(student={"stabilizer": 0.5})


def test_student_stream_carries_the_stabilizer_by_flow():
    """mamakit.student.stream runs a clip as the runtime does: with stabilizer 0 it is the plain
    frame-by-frame loop; with stabilizer > 0 the first frame is unchanged and later frames differ."""
    import numpy as np

    from mamakit.student import stream

    torch.manual_seed(6)
    net = StudentNet(_tiny()).eval()  # ratio 0.4
    with torch.no_grad():
        for p in [*net.head.parameters(), *net.refiner.conv[-1].parameters()]:
            p.normal_(0, 0.3)
    rng = np.random.default_rng(0)
    tex = (rng.random((80, 140, 3)) * 255).astype(np.uint8)
    frames = np.stack([tex[4 + t: 4 + t + 72, 6 + 2 * t: 6 + 2 * t + 128] for t in range(4)])
    masks = np.zeros((4, 72, 128), np.float32)
    masks[:, 20:50, 30:90] = 1
    plain = stream(net, frames, masks)
    with torch.no_grad():
        s = net.initial_state(1, 72, 128)
        for t in range(4):
            src = torch.from_numpy(frames[t]).permute(2, 0, 1)[None].float() / 255
            p, _, *s = net(src, torch.from_numpy(masks[t])[None, None], *s)
            assert np.array_equal(p[0, 0].numpy(), plain[t])
    net.reconfigure(stabilizer=0.5)
    steady = stream(net, frames, masks)
    assert np.array_equal(steady[0], plain[0])
    assert np.abs(steady[1:] - plain[1:]).max() > 1e-3
    own = stream(net, frames, masks, first_frame_only=True)
    assert np.array_equal(own[0], steady[0]) and np.abs(own[1:] - steady[1:]).max() > 1e-4
