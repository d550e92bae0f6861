"""mamakit.metrics: hand-computed cases and agreement with a second, loop-based implementation
(written here independently from FIELD_GUIDE §4) on real alphamatting ground truth."""
from __future__ import annotations

import json
import math
from collections import deque

import cv2
import numpy as np
import pytest

from mamakit import metrics as M
from mamakit.errors import InputError
from mamakit.io import read_alpha, write_alpha_png


# ------------------------------------------------------------------ reference implementation
def ref_gauss_kernel(sigma=1.4):
    eps = 1e-2
    half = math.ceil(sigma * math.sqrt(-2 * math.log(math.sqrt(2 * math.pi) * sigma * eps)))
    size = 2 * half + 1
    hx = np.zeros((size, size))
    for i in range(size):
        for j in range(size):
            u = (i - half, j - half)
            gy = math.exp(-u[0] ** 2 / (2 * sigma ** 2)) / (sigma * math.sqrt(2 * math.pi))
            gx = math.exp(-u[1] ** 2 / (2 * sigma ** 2)) / (sigma * math.sqrt(2 * math.pi))
            hx[i, j] = gy * (-u[1] * gx / sigma ** 2)
    hx /= math.sqrt((hx ** 2).sum())
    return hx, hx.T


def ref_filter_replicate(img, k):
    """Correlation with replicate borders, one kernel tap at a time."""
    r = k.shape[0] // 2
    pad = np.pad(img, r, mode="edge")
    out = np.zeros_like(img)
    H, W = img.shape
    for i in range(k.shape[0]):
        for j in range(k.shape[1]):
            out += k[i, j] * pad[i: i + H, j: j + W]
    return out


def ref_grad(p, t):
    def norm(a):
        return (a - a.min()) / (a.max() - a.min()) if a.max() > a.min() else np.zeros_like(a)
    hx, hy = ref_gauss_kernel()
    def mag(a):
        return np.sqrt(ref_filter_replicate(a, hx) ** 2 + ref_filter_replicate(a, hy) ** 2)
    return ((mag(norm(p)) - mag(norm(t))) ** 2).sum() / 1e3


def ref_largest_component_bfs(mask):
    """4-connected components by breadth-first search (tiny arrays only)."""
    H, W = mask.shape
    seen = np.zeros_like(mask, bool)
    best = []
    for y in range(H):
        for x in range(W):
            if mask[y, x] and not seen[y, x]:
                comp, q = [], deque([(y, x)])
                seen[y, x] = True
                while q:
                    cy, cx = q.popleft()
                    comp.append((cy, cx))
                    for dy, dx in ((1, 0), (-1, 0), (0, 1), (0, -1)):
                        ny, nx = cy + dy, cx + dx
                        if 0 <= ny < H and 0 <= nx < W and mask[ny, nx] and not seen[ny, nx]:
                            seen[ny, nx] = True
                            q.append((ny, nx))
                if len(comp) > len(best):
                    best = comp
    out = np.zeros_like(mask, bool)
    for y, x in best:
        out[y, x] = True
    return out


def ref_largest_component_scipy(mask):
    from scipy import ndimage
    lab, n = ndimage.label(mask, structure=[[0, 1, 0], [1, 1, 1], [0, 1, 0]])
    if n == 0:
        return np.zeros_like(mask, bool)
    sizes = np.bincount(lab.ravel())[1:]
    return lab == (1 + int(np.argmax(sizes)))


def ref_conn(p, t, largest):
    thresholds = [i / 10 for i in range(0, 11)]
    lmap = -np.ones_like(p)
    for i in range(1, len(thresholds)):
        omega = largest((p >= thresholds[i]) & (t >= thresholds[i]))
        flag = (lmap == -1) & ~omega
        lmap[flag] = thresholds[i - 1]
    lmap[lmap == -1] = 1
    pd, td = p - lmap, t - lmap
    pphi = 1 - pd * (pd >= 0.15)
    tphi = 1 - td * (td >= 0.15)
    return np.abs(pphi - tphi).sum() / 1e3


def ref_all(preds, gts, largest):
    rows = []
    for k, (p, t) in enumerate(zip(preds, gts)):
        row = {"mad": np.abs(p - t).mean() * 1e3, "mse": ((p - t) ** 2).mean() * 1e3,
               "sad": np.abs(p - t).sum() / 1e3, "grad": ref_grad(p, t), "conn": ref_conn(p, t, largest)}
        if k == 0:
            row["dtssd"] = 0.0
        else:
            d = (p - preds[k - 1]) - (t - gts[k - 1])
            row["dtssd"] = math.sqrt((d ** 2).sum() / d.size) * 1e2
        rows.append(row)
    return rows


def _close(a, b, rel=1e-6):
    return abs(a - b) <= rel * max(abs(a), abs(b)) + 1e-12


# ------------------------------------------------------------------ hand-computed cases
def test_core_metrics_hand_computed():
    p = np.array([[0.0, 1.0], [0.5, 0.5]])
    t = np.zeros((2, 2))
    assert M.mad(p, t) == pytest.approx(500.0)
    assert M.mse(p, t) == pytest.approx(375.0)
    assert M.sad(p, t) == pytest.approx(0.002)
    # dtSSD: one pixel of two changes by 1 in the prediction only -> sqrt(1/2) x 1e2, frame 0 = 0
    p0, p1, g = np.zeros((1, 2)), np.array([[1.0, 0.0]]), np.zeros((1, 2))
    assert M.dtssd_frame(p1, p0, g, g) == pytest.approx(100 * math.sqrt(0.5))
    assert M.dtssd([p0, p1], [g, g]) == pytest.approx(50 * math.sqrt(0.5))
    # Conn: GT all ones; one prediction pixel at 0.05 drops out at theta 0.1 (level 0):
    # d_pred = 0.05 < 0.15 -> phi 1; d_gt = 1 -> phi 0; other pixels identical -> Conn = 1 / 1e3
    t1 = np.ones((2, 2))
    p2 = np.array([[1.0, 1.0], [1.0, 0.05]])
    assert M.conn(p2, t1) == pytest.approx(1e-3)
    assert M.conn(t1, t1) == 0.0
    # the level map by hand: island of 0.95 separated from a 1.0 region
    p3 = np.array([[1.0, 1.0, 0.0, 0.95]])
    lv = M.connectivity_levels(p3, np.ones_like(p3))
    np.testing.assert_allclose(lv, [[1.0, 1.0, 0.0, 0.0]])  # col 3 is not in the largest comp at 0.1
    # Grad: kernel size and norm, invariance to min-max scaling, symmetric, zero on constants
    g1, dg1 = M.gaussian_derivative_kernels(1.4)
    assert len(g1) == 9 and np.outer(g1, dg1).__pow__(2).sum() == pytest.approx(1.0)
    ramp = np.tile(np.linspace(0, 1, 16), (16, 1))
    assert M.grad(ramp, 0.2 + 0.5 * ramp) == pytest.approx(0.0, abs=1e-12)
    assert M.grad(np.full((8, 8), 0.3), np.zeros((8, 8))) == 0.0
    rnd = np.random.default_rng(0).random((12, 12))
    assert M.grad(rnd, ramp[:12, :12]) == pytest.approx(M.grad(ramp[:12, :12], rnd))
    # a vertical step edge: the reference loop filter gives the same magnitude map
    step = np.zeros((10, 10)); step[:, 5:] = 1
    mag = M.gradient_magnitude(step)
    hx, hy = ref_gauss_kernel()
    ref = np.sqrt(ref_filter_replicate(step, hx) ** 2 + ref_filter_replicate(step, hy) ** 2)
    np.testing.assert_allclose(mag, ref, rtol=1e-10, atol=1e-12)
    assert mag[:, 4].min() > 0.3 and mag[:, 0].max() < 1e-3
    # uint8 / uint16 inputs are rescaled
    assert M.mad(np.full((2, 2), 255, np.uint8), np.ones((2, 2))) == 0.0
    assert M.mad(np.full((2, 2), 65535, np.uint16), np.zeros((2, 2))) == pytest.approx(1000.0)
    with pytest.raises(InputError, match="size"):
        M.mad(np.zeros((2, 3)), np.zeros((3, 2)))


def test_core_metrics_conn_small_random_vs_bfs():
    rng = np.random.default_rng(3)
    for _ in range(5):
        t = np.clip(cv2.GaussianBlur(rng.random((14, 17)), (0, 0), 1.5) * 2 - 0.5, 0, 1)
        p = np.clip(t + rng.normal(0, 0.15, t.shape), 0, 1)
        assert _close(M.conn(p, t), ref_conn(p, t, ref_largest_component_bfs))


# ------------------------------------------------------------------ real GT agreement
def _real_pairs(shared_data, names=("GT01", "GT04", "GT13")):
    gts, preds = [], []
    rng = np.random.default_rng(0)
    for n in names:
        t = read_alpha(shared_data / "alphamatting" / "gt_training_lowres" / f"{n}.png").astype(np.float64)
        t = t[:320, :480]  # one size for the sequence (dtSSD), still real GT structure
        p = cv2.GaussianBlur(t, (0, 0), 1.8)
        p = np.clip(p + rng.normal(0, 0.03, p.shape) + np.roll(t, 2, axis=1) * 0.05, 0, 1)
        p = np.round(p * 255) / 255  # what a PNG prediction looks like (exercises threshold ties)
        gts.append(t)
        preds.append(p)
    return preds, gts


def test_core_metrics_agree_with_reference_on_real_gt(shared_data):
    preds, gts = _real_pairs(shared_data)
    res = M.evaluate(preds, gts, names=["a", "b", "c"])
    ref = ref_all(preds, gts, ref_largest_component_scipy)
    assert res["frames"] == 3 and [r["frame"] for r in res["per_frame"]] == ["a", "b", "c"]
    for r, q in zip(res["per_frame"], ref):
        for k in M.METRICS:
            assert _close(r[k], q[k]), (k, r[k], q[k])
    for k in M.METRICS:
        assert _close(res[k], float(np.mean([q[k] for q in ref]))), k
    assert res["grad"] > 0.1 and res["conn"] > 0.1 and res["dtssd"] > 0.1  # not a trivial case


def test_core_metrics_eval_cli_json(tmp_path, shared_data):
    from conftest import run_cli

    preds, gts = _real_pairs(shared_data, ("GT02", "GT05"))
    (tmp_path / "p").mkdir()
    (tmp_path / "g").mkdir()
    for i, (p, t) in enumerate(zip(preds, gts)):
        write_alpha_png(tmp_path / "p" / f"{i:04d}.png", p, bits=16)
        write_alpha_png(tmp_path / "g" / f"{i:04d}.png", t, bits=8)
    out = tmp_path / "m.json"
    proc = run_cli("eval", "--pred", tmp_path / "p", "--gt", tmp_path / "g", "--json", out)
    assert proc.returncode == 0, proc.stderr
    assert "MAD" in proc.stdout and "dtSSD" in proc.stdout
    data = json.loads(out.read_text())
    assert set(M.METRICS) | {"frames", "per_frame"} == set(data)
    assert data["frames"] == 2 and len(data["per_frame"]) == 2
    assert all(isinstance(data[k], float) for k in M.METRICS)
    pr = [read_alpha(tmp_path / "p" / f"{i:04d}.png").astype(np.float64) for i in range(2)]
    gr = [read_alpha(tmp_path / "g" / f"{i:04d}.png").astype(np.float64) for i in range(2)]
    ref = ref_all(pr, gr, ref_largest_component_scipy)
    for k in M.METRICS:
        assert _close(data[k], float(np.mean([q[k] for q in ref]))), k
    assert f"{data['mad']:.4f}" in proc.stdout


def test_core_metrics_eval_cli_dataset_mode(tmp_path):
    from conftest import run_cli
    from mamakit.dataset import Dataset
    from mamakit.synth import synth_dataset

    synth_dataset(tmp_path / "ds", clips=2, frames=3, size=(40, 32), seed=2)
    ds = Dataset(tmp_path / "ds")
    for clip in ds:  # perfect predictions = the GT itself, except the first frame of each clip
        (tmp_path / "pred" / clip.id).mkdir(parents=True)
        for i, a in enumerate(clip.alpha()):
            write_alpha_png(tmp_path / "pred" / clip.id / f"{clip.names[i]}.png", a if i else 1 - a)
    proc = run_cli("eval", "--pred", tmp_path / "pred", "--gt", tmp_path / "ds", "--json", tmp_path / "r.json")
    assert proc.returncode == 0, proc.stderr
    data = json.loads((tmp_path / "r.json").read_text())
    assert data["frames"] == 6 and {r["clip"] for r in data["per_frame"]} == set(ds.ids)
    assert [r["mad"] > 0 for r in data["per_frame"]] == [True, False, False] * 2
    assert data["per_frame"][3]["dtssd"] == 0.0  # a new clip restarts dtSSD
