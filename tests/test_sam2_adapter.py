"""SAM2-Matte's explicit-bank streaming steps reproduce SAM2's own ``track_step`` exactly."""
from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("sam2")


def _sam2_reference(sam, frames, point, label, num_frames, mask=None):
    """Run SAM2Base.track_step (SAM2's own memory handling, complex RoPE) over a clip."""
    output_dict = {"cond_frame_outputs": {}, "non_cond_frame_outputs": {}}
    logits = []
    for i in range(frames.shape[0]):
        from mamakit.student.sam2matte.adapter import IMG_MEAN, IMG_STD

        img = (frames[i:i + 1] - torch.tensor(IMG_MEAN).view(1, 3, 1, 1)) / torch.tensor(IMG_STD).view(1, 3, 1, 1)
        bo = sam.forward_image(img)
        _, feats, pos, sizes = sam._prepare_backbone_features(bo)
        pin = {"point_coords": point, "point_labels": label} if i == 0 and mask is None else None
        min_ = mask if i == 0 else None
        out = sam.track_step(frame_idx=i, is_init_cond_frame=(i == 0), current_vision_feats=feats,
                             current_vision_pos_embeds=pos, feat_sizes=sizes, point_inputs=pin, mask_inputs=min_,
                             output_dict=output_dict, num_frames=num_frames)
        key = "cond_frame_outputs" if i == 0 else "non_cond_frame_outputs"
        output_dict[key][i] = out
        logits.append(out["pred_masks_high_res"])
    return torch.cat(logits)


@pytest.mark.parametrize("max_ptrs", [16, 4])
def test_sam2_adapter_matches_sam2_track_step(max_ptrs):
    """Our real-valued RoPE + fixed-size masked bank == SAM2's complex RoPE + dict bank, 10 frames
    (more than the 7-memory window and, with 4 pointers, more than the pointer window)."""
    import dataclasses

    from mamakit.student.sam2matte.config import tiny_config
    from mamakit.student.sam2matte.model import Sam2Matte

    torch.manual_seed(0)
    cfg = dataclasses.replace(tiny_config(128), refiner=False, max_obj_ptrs=max_ptrs)
    model = Sam2Matte(cfg).eval()
    # random weights blank every frame through the object-score gate; open it so logits are compared
    with torch.no_grad():
        head = model.sam.sam_mask_decoder.pred_obj_score_head
        last = head.layers[-1] if hasattr(head, "layers") else head
        last.bias.fill_(5.0)
    frames = torch.rand(10, 3, 128, 128)
    point = torch.tensor([[[60.0, 50.0]]])
    label = torch.ones(1, 1, dtype=torch.int32)
    with torch.no_grad():
        ref = _sam2_reference(model.sam, frames, point, label, num_frames=10_000)
        ours = model.track_clip(frames[None], point, label)["logits"][0]
    assert ref.shape[0] == ours.shape[0] == 10
    assert ref.abs().max() < 500, "object gate closed: the comparison would be vacuous"
    err = (ref[:, 0] - ours).abs().amax(dim=(1, 2))
    assert float(err.max()) < 2e-3, f"per-frame max |Δlogit| {err.tolist()}"


def test_sam2_official_checkpoint_format_loads_strictly(tmp_path):
    """An official-format checkpoint ({"model": state_dict}, torch.save) loads strictly into the
    matching architecture and is refused, with one clear error, by a different one."""
    import dataclasses

    from mamakit.errors import ConfigError
    from mamakit.student.sam2matte.adapter import load_sam2_checkpoint
    from mamakit.student.sam2matte.config import sam21_config, tiny_config
    from mamakit.student.sam2matte.model import Sam2Matte

    torch.manual_seed(1)
    src = Sam2Matte(tiny_config(128))
    path = tmp_path / "sam2_official_format.pt"
    torch.save({"model": src.sam.state_dict()}, path)
    dst = Sam2Matte(tiny_config(256))  # another input size: SAM2 weights do not depend on it
    load_sam2_checkpoint(dst.sam, path)
    for k, v in src.sam.state_dict().items():
        assert torch.equal(v, dst.sam.state_dict()[k]), k
    other = Sam2Matte(dataclasses.replace(tiny_config(128), overrides=(*tiny_config().overrides, "model.memory_attention.num_layers=3")))
    with pytest.raises(ConfigError, match="does not match its config"):
        load_sam2_checkpoint(other.sam, path)
    # the production preset is the official SAM2.1 hiera-t architecture (38.9 M parameters)
    official = Sam2Matte(dataclasses.replace(sam21_config("tiny", 256), refiner=False))
    n = sum(p.numel() for p in official.sam.parameters())
    assert abs(n - 38.9e6) < 0.2e6, n


def test_sam2_adapter_mask_prompt_matches_sam2_track_step():
    """A first-frame mask prompt takes SAM2's mask-as-output path (the mask becomes the prompted
    frame's logits +-10 and its memory), as in SAM2's own ``track_step``; later frames agree."""
    import dataclasses

    from mamakit.student.sam2matte.config import tiny_config
    from mamakit.student.sam2matte.model import Sam2Matte

    torch.manual_seed(0)
    model = Sam2Matte(dataclasses.replace(tiny_config(128), refiner=False)).eval()
    with torch.no_grad():
        head = model.sam.sam_mask_decoder.pred_obj_score_head
        last = head.layers[-1] if hasattr(head, "layers") else head
        last.bias.fill_(5.0)
    frames = torch.rand(5, 3, 128, 128)
    mask = torch.zeros(1, 1, 128, 128)
    mask[..., 30:90, 40:100] = 1.0
    with torch.no_grad():
        ref = _sam2_reference(model.sam, frames, None, None, num_frames=10_000, mask=mask)
        ours = model.track_clip(frames[None], mask_inputs=mask)
    assert torch.equal(ours["logits"][0, 0], mask[0, 0] * 20 - 10)
    assert float(ours["obj_score"][0, 0]) == 10.0
    err = (ref[:, 0] - ours["logits"][0]).abs().amax(dim=(1, 2))
    assert float(err.max()) < 2e-3, f"per-frame max |Δlogit| {err.tolist()}"


def test_sam2_feat_norm_gives_unit_scale_features_and_exports(tmp_path):
    """feat_norm: the top-level features are layer-normalised per position (no weights), the same
    weights without it give the raw features, old configs load without it, and the encoder graph
    with the norm exports to ONNX with parity."""
    import dataclasses

    import numpy as np

    from mamakit.student.sam2matte.config import Sam2MatteConfig, tiny_config
    from mamakit.student.sam2matte.model import Sam2Matte

    torch.manual_seed(0)
    cfg = dataclasses.replace(tiny_config(128), feat_norm=True)
    assert Sam2MatteConfig.from_dict(cfg.to_dict()).feat_norm
    old = {k: v for k, v in tiny_config(128).to_dict().items() if k != "feat_norm"}
    assert Sam2MatteConfig.from_dict(old).feat_norm is False
    normed = Sam2Matte(cfg).eval()
    raw = Sam2Matte(tiny_config(128)).eval()
    raw.load_weights(normed.state_dict())
    image = torch.rand(1, 3, 128, 128)
    with torch.no_grad():
        f, h0, h1 = normed.encode(image)
        g, g0, g1 = raw.encode(image)
    torch.testing.assert_close(f.mean(1), torch.zeros_like(f.mean(1)), atol=1e-5, rtol=0)
    torch.testing.assert_close(f.var(1, unbiased=False), torch.ones_like(f.mean(1)), atol=1e-3, rtol=0)
    assert (g.var(1) - 1).abs().max() > 1e-2  # the raw features are not unit-scale: the norm does something
    torch.testing.assert_close(f, torch.nn.functional.layer_norm(g.permute(0, 2, 3, 1), (g.shape[1],)).permute(0, 3, 1, 2))
    torch.testing.assert_close(h0, g0)

    ort = pytest.importorskip("onnxruntime")

    class Encoder(torch.nn.Module):
        def __init__(self, m):
            super().__init__()
            self.m = m

        def forward(self, x):
            return self.m.encode(x)

    path = tmp_path / "encoder.onnx"
    torch.onnx.export(Encoder(normed), (image,), str(path), opset_version=17, dynamo=False,
                      input_names=["image"], output_names=["feat", "high0", "high1"])
    got = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(["feat"], {"image": image.numpy()})[0]
    assert np.abs(got - f.numpy()).max() < 1e-4


def _tiny_model_object_present():
    """A random-weight tiny Sam2Matte (seed 0) whose object-score head says "object present"
    everywhere, so the occlusion gate does not empty the logits."""
    from mamakit.student.sam2matte.config import tiny_config
    from mamakit.student.sam2matte.model import Sam2Matte

    torch.manual_seed(0)
    m = Sam2Matte(tiny_config(128)).eval()
    with torch.no_grad():
        [lin for lin in m.sam.sam_mask_decoder.pred_obj_score_head.modules()
         if isinstance(lin, torch.nn.Linear)][-1].bias.add_(100.0)
    return m


def test_sam2_drop_highres_zeroes_only_the_flagged_clips_skips():
    """Training option drop_highres: the flagged clip's masks come without the decoder's high-res
    skip features (same as zeroing them), the other clip's output is unchanged."""
    m = _tiny_model_object_present()
    frames = torch.rand(2, 3, 3, 128, 128)
    mask = (torch.rand(2, 1, 128, 128) > 0.5).float()
    with torch.no_grad():
        ref = m.track_clip(frames, None, None, mask)["logits"]
        got = m.track_clip(frames, None, None, mask, drop_highres=torch.tensor([True, False]))["logits"]
        enc = m.encode
        m.encode = lambda x: (lambda f, h0, h1: (f, h0 * 0, h1 * 0))(*enc(x))
        zero = m.track_clip(frames, None, None, mask)["logits"]
    torch.testing.assert_close(got[1], ref[1])
    torch.testing.assert_close(got[0], zero[0])
    assert (got[0, 1:] - ref[0, 1:]).abs().max() > 1e-3  # tracked frames: the skips matter at random init


def test_sam2_drop_highres_per_frame_and_prompted_frame_option():
    """Per-frame drop_highres [B,T]: flagging only frame 0 of clip 0 changes that frame's output to
    the skip-less one (as the per-clip drop) and leaves clip 1 alone. The training option
    p_drop_highres_prompt (default off) flags exactly the prompted frame."""
    import numpy as np

    from mamakit.student.sam2matte.system import Sam2MatteSystem, simulate_prompt

    m = _tiny_model_object_present()
    frames = torch.rand(2, 3, 3, 128, 128)
    alpha0 = torch.zeros(2, 128, 128)
    alpha0[:, 30:80, 40:100] = 1.0
    pts, lbs, _ = simulate_prompt(alpha0, "box", np.random.default_rng(0))
    per = torch.zeros(2, 3, dtype=torch.bool)
    per[0, 0] = True
    with torch.no_grad():
        ref = m.track_clip(frames, pts, lbs)["logits"]
        got = m.track_clip(frames, pts, lbs, drop_highres=per)["logits"]
        clip = m.track_clip(frames, pts, lbs, drop_highres=torch.tensor([True, False]))["logits"]
    torch.testing.assert_close(got[1], ref[1])
    torch.testing.assert_close(got[0, 0], clip[0, 0])
    assert (got[0, 0] - ref[0, 0]).abs().max() > 1e-3  # the prompted frame lost its skips
    assert (got[0, 1:] - clip[0, 1:]).abs().max() > 1e-3  # the tracked frames kept theirs

    seen = []
    for p in (0.0, 1.0):
        sysm = Sam2MatteSystem(model={"preset": "tiny", "image_size": 128}, freeze=[], low_res=None,
                               p_drop_highres_prompt=p, prompt_probs={"click": 0.0, "box": 1.0, "mask": 0.0})
        fwd = sysm.forward
        sysm.forward = lambda *a, **k: (seen.append(k.get("drop_highres")), fwd(*a, **k))[1]
        batch = {"frames": frames, "alpha": alpha0[:, None].expand(2, 3, 128, 128).contiguous()}
        sysm._step(batch, "train")
    assert seen[0] is None  # default off
    assert seen[1].shape == (2, 3) and bool(seen[1][:, 0].all()) and not bool(seen[1][:, 1:].any())
