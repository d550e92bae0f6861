"""``ClosedFormTeacher``: coarse mask -> adaptive trimap -> closed-form matting, per frame.

Per frame: (1) a mask that disagrees with both neighbours (empty, full, occluded, eroded far
beyond the band) is replaced by the previous mask (one frame of look-ahead); (2) the frame is
downscaled so its long side is at most ``solve_size``; (3) an adaptive trimap is built
(:mod:`.trimap`); (4) closed-form matting (Levin et al. 2008, pymatting's CG solver with an
incomplete-Cholesky preconditioner) solves only a crop around the unknown band; (5) the alpha is
upscaled bilinearly and refined with a guided filter on the full-resolution frame, then known
regions are re-imposed; (6) optional temporal smoothing (off by default). With ``trimap.snap`` (on)
step (4) runs twice: the second solve uses the band re-centred on GrabCut's boundary, keeping
unknown whatever the first solve found soft (see :mod:`.trimap`).
"""
from __future__ import annotations

import contextlib
import dataclasses
import io
import logging
from dataclasses import dataclass, field
from typing import Iterable, Iterator

import cv2
import numpy as np

from mamakit.errors import ConfigError, DependencyError
from mamakit.teacher.closed_form.trimap import TrimapConfig, make_trimap, snap_band
from mamakit.teacher.output import TeacherOutput
from mamakit.teacher.prep import check_clip, empty_mask, fit_mask

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ClosedFormOptions:
    solve_size: int = 1024           # long side (px) the matting is solved at; larger frames are downscaled
    epsilon: float = 1e-7            # closed-form Laplacian regulariser
    cg_tol: float = 1e-5             # CG relative tolerance
    cg_maxiter: int = 2000
    guided_radius: int = 4           # guided-filter radius at full resolution (upscale refinement)
    guided_eps: float = 1e-4
    repair_masks: bool = True        # replace a mask that disagrees with both neighbours
    repair_iou: float = 0.6          # "disagrees" = IoU below this with the previous mask ...
    repair_margin: float = 0.1       # ... or IoU(prev, next) - max(IoU with them) above this (1 = off)
    repair_area: float = 0.15        # ... and an area more than this fraction off its neighbours' mean
    temporal_smoothing: float = 0.0  # 0 = off (default); else EMA weight of the previous alpha in static pixels
    mask_prior: float = 0.0          # weight of a data term pulling the unknown band towards the (blurred) mask
    trimap: TrimapConfig = field(default_factory=TrimapConfig)

    def __post_init__(self):
        if self.solve_size < 16:
            raise ConfigError(f"solve_size must be >= 16 px, got {self.solve_size}")
        if not 0.0 <= self.temporal_smoothing < 1.0:
            raise ConfigError(f"temporal_smoothing must be in [0, 1), got {self.temporal_smoothing}")


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    union = np.logical_or(a, b).sum()
    return 1.0 if union == 0 else float(np.logical_and(a, b).sum() / union)


def guided_filter(guide: np.ndarray, src: np.ndarray, radius: int, eps: float) -> np.ndarray:
    """He et al.'s guided filter with a grey guide (box filters, O(N))."""
    I = guide.astype(np.float32)
    p = src.astype(np.float32)
    k = (2 * radius + 1, 2 * radius + 1)
    mean_I = cv2.boxFilter(I, -1, k)
    mean_p = cv2.boxFilter(p, -1, k)
    cov = cv2.boxFilter(I * p, -1, k) - mean_I * mean_p
    var = cv2.boxFilter(I * I, -1, k) - mean_I * mean_I
    a = cov / (var + eps)
    b = mean_p - a * mean_I
    return cv2.boxFilter(a, -1, k) * I + cv2.boxFilter(b, -1, k)


def _solve_with_prior(img: np.ndarray, trimap: np.ndarray, prior: np.ndarray, opts) -> np.ndarray:
    """Closed-form matting with a mask data term: (L_U + λI) α_U = −R α_K + λ prior_U."""
    import scipy.sparse as sp
    from pymatting.laplacian.cf_laplacian import cf_laplacian
    from pymatting.preconditioner.ichol import ichol
    from pymatting.solver.cg import cg
    from pymatting.util.util import trimap_split

    is_fg, _is_bg, is_known, is_unknown = trimap_split(trimap)
    L = cf_laplacian(img, epsilon=opts.epsilon, is_known=is_known)
    L_U = L[is_unknown, :][:, is_unknown]
    R = L[is_unknown, :][:, is_known]
    lam = float(opts.mask_prior)
    A = (L_U + lam * sp.identity(L_U.shape[0], format="csr")).tocsr()
    b = -R.dot(is_fg[is_known].astype(np.float64)) + lam * prior.ravel()[is_unknown].astype(np.float64)
    x = trimap.copy().ravel()
    x[is_unknown] = cg(A, b, M=ichol(A), rtol=opts.cg_tol, maxiter=opts.cg_maxiter)
    return np.clip(x, 0, 1).reshape(trimap.shape)


class ClosedFormTeacher:
    name = "closed-form"
    version = "1.0"

    def __init__(self, options: ClosedFormOptions | None = None):
        try:
            import pymatting  # noqa: F401
        except ImportError as exc:
            raise DependencyError(
                f"pymatting is not installed for the closed-form teacher: install it with "
                f"`pip install \"mamakit[teacher]\"` ({exc})") from exc
        self.options = options or ClosedFormOptions()
        self.weights = "none"

    @classmethod
    def build(cls, **options) -> "ClosedFormTeacher":
        trimap = options.pop("trimap", None)
        if isinstance(trimap, dict):
            options["trimap"] = TrimapConfig(**trimap)
        elif trimap is not None:
            options["trimap"] = trimap
        try:
            return cls(ClosedFormOptions(**options))
        except TypeError as exc:
            raise ConfigError(f"bad closed-form teacher option: {exc}") from exc

    def _solve(self, small: np.ndarray, small_mask: np.ndarray, trimap: np.ndarray, info: dict) -> np.ndarray:
        """Closed-form alpha (float64, solve resolution) for a trimap, on a crop around its unknown band."""
        from pymatting import estimate_alpha_cf

        opts = self.options
        sh, sw = trimap.shape
        alpha_s = (trimap >= 0.75).astype(np.float64)
        unknown = trimap == 0.5
        if not unknown.any():
            return alpha_s
        ys, xs = np.nonzero(unknown)
        pad = 4
        y0, y1 = max(0, ys.min() - pad), min(sh, ys.max() + pad + 1)
        x0, x1 = max(0, xs.min() - pad), min(sw, xs.max() + pad + 1)
        crop_t = trimap[y0:y1, x0:x1]
        if not (crop_t != 0.5).any():  # no known pixel to anchor the solve: keep the mask
            alpha_s[y0:y1, x0:x1] = small_mask[y0:y1, x0:x1]
            return alpha_s
        img = small[y0:y1, x0:x1].astype(np.float64) / 255.0
        with contextlib.redirect_stdout(io.StringIO()):  # pymatting prints preconditioner warnings
            if opts.mask_prior > 0:
                sigma = max(1.0, info["band"] / 2)
                prior = cv2.GaussianBlur((small_mask >= 0.5).astype(np.float32), (0, 0), sigma)
                a = _solve_with_prior(img, crop_t, prior[y0:y1, x0:x1], opts)
            else:
                a = estimate_alpha_cf(img, crop_t, laplacian_kwargs={"epsilon": opts.epsilon},
                                      cg_kwargs={"rtol": opts.cg_tol, "maxiter": opts.cg_maxiter})
        alpha_s[y0:y1, x0:x1] = a
        return alpha_s

    # -- one frame ---------------------------------------------------------------------------------
    def matte(self, frame: np.ndarray, mask: np.ndarray) -> tuple[np.ndarray, dict]:
        """One frame (uint8 HxWx3) + its mask (float HxW at the frame size) -> alpha float32 HxW."""
        opts = self.options
        h, w = mask.shape
        if empty_mask(mask):
            return np.zeros((h, w), np.float32), {"empty": True}
        if float(mask.min()) > 1 - 1e-3:
            return np.ones((h, w), np.float32), {"full": True}
        scale = min(1.0, opts.solve_size / max(h, w))
        sw, sh = max(8, int(round(w * scale))), max(8, int(round(h * scale)))
        small = cv2.resize(frame, (sw, sh), interpolation=cv2.INTER_AREA) if scale < 1 else frame
        small_mask = cv2.resize(mask, (sw, sh), interpolation=cv2.INTER_AREA) if scale < 1 else mask
        trimap, info = make_trimap(small, small_mask, opts.trimap)
        alpha_s = self._solve(small, small_mask, trimap, info)
        if opts.trimap.snap:
            # pass 2: the band re-centred on GrabCut's boundary; whatever pass 1 found soft (hair,
            # transparency) stays unknown, so snapping narrows the band only where it is solid
            lo = opts.trimap.snap_keep_soft
            soft = ((alpha_s > lo) & (alpha_s < 1 - lo) & (trimap == 0.5)).astype(np.uint8)
            soft = cv2.dilate(soft, np.ones((3, 3), np.uint8)).astype(bool) & (trimap == 0.5)
            snapped = snap_band(small, small_mask >= 0.5, trimap, info["band"], opts.trimap, keep_unknown=soft)
            info["snapped"] = snapped is not None
            if snapped is not None:
                trimap = snapped
                trimap[(small_mask > 0.05) & (small_mask < 0.95)] = 0.5
                alpha_s = self._solve(small, small_mask, trimap, info)
        if scale < 1:
            up = cv2.resize(alpha_s.astype(np.float32), (w, h), interpolation=cv2.INTER_LINEAR)
            gray = cv2.cvtColor(frame, cv2.COLOR_RGB2GRAY).astype(np.float32) / 255.0
            r = max(opts.guided_radius, int(round(1 / scale)))
            refined = guided_filter(gray, up, r, opts.guided_eps)
            tri_up = cv2.resize(trimap.astype(np.float32), (w, h), interpolation=cv2.INTER_NEAREST)
            refined = np.where(tri_up == 1.0, 1.0, np.where(tri_up == 0.0, 0.0, refined))
            alpha = refined
        else:
            alpha = alpha_s
        info["scale"] = scale
        return np.clip(alpha, 0.0, 1.0).astype(np.float32), info

    # -- streams -----------------------------------------------------------------------------------
    def _repaired(self, pairs: Iterable[tuple[np.ndarray, np.ndarray]]) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """Two frames of look-ahead: a mask that disagrees with its neighbours while they agree with
        each other is an isolated faulty frame (eroded, dilated, occluded); use the neighbour's mask.
        Inside a clip the neighbours are the previous and next masks; the first frame is checked
        against the next two, the last against the previous two."""
        if not self.options.repair_masks:
            yield from pairs
            return
        thr = self.options.repair_iou
        window: list[tuple[np.ndarray, np.ndarray]] = []   # up to 3 pending frames: cur, next, next2
        done: list[np.ndarray] = []                          # the last two masks already yielded

        def bad(cur, a, b) -> bool:
            if not (cur.shape == a.shape == b.shape):
                return False
            bc, ba, bb = cur >= 0.5, a >= 0.5, b >= 0.5
            i_ca, i_cb, i_ab = _iou(bc, ba), _iou(bc, bb), _iou(ba, bb)
            outlier = i_ca < thr and i_cb < thr and i_ab >= thr
            # ... or the neighbours agree with each other clearly better than with it (an occlusion)
            outlier = outlier or (i_ab >= 0.5 and i_ab - max(i_ca, i_cb) > self.options.repair_margin)
            if not outlier:
                return False
            # every fault kind (dropped, full, occluded, leaking) changes the area; fast motion or
            # rotation of a thin object lowers IoU at the same area and is not a fault
            ref = 0.5 * (float(ba.sum()) + float(bb.sum()))
            return abs(np.log((float(bc.sum()) + 1.0) / (ref + 1.0))) > np.log(1.0 + self.options.repair_area)

        def emit(frame, mask, nxt: list[np.ndarray]):
            if done and nxt:
                if bad(mask, done[-1], nxt[0]):
                    log.debug("mask looks faulty (disagrees with both neighbours): using the previous mask")
                    mask = done[-1]
            elif not done and len(nxt) >= 2:
                if bad(mask, nxt[0], nxt[1]):
                    log.debug("first mask looks faulty (disagrees with the next two): using the next mask")
                    mask = nxt[0]
            elif len(done) >= 2 and not nxt:
                if bad(mask, done[-1], done[-2]):
                    log.debug("last mask looks faulty (disagrees with the previous two): using the previous mask")
                    mask = done[-1]
            done.append(mask)
            del done[:-2]
            return frame, mask

        for item in pairs:
            window.append(item)
            if len(window) == 3:
                f, m = window.pop(0)
                yield emit(f, m, [w[1] for w in window])
        while window:
            f, m = window.pop(0)
            yield emit(f, m, [w[1] for w in window])

    def stream(self, pairs: Iterable[tuple[np.ndarray, np.ndarray]]) -> Iterator[np.ndarray]:
        fitted = ((f, fit_mask(m, f.shape[1], f.shape[0])) for f, m in pairs)
        s = self.options.temporal_smoothing
        prev_a = prev_f = None
        for frame, mask in self._repaired(fitted):
            alpha, _ = self.matte(frame, mask)
            if s > 0 and prev_a is not None and prev_a.shape == alpha.shape:
                static = np.abs(frame.astype(np.int16) - prev_f.astype(np.int16)).max(axis=2) < 12
                alpha = np.where(static, (1 - s) * alpha + s * prev_a, alpha).astype(np.float32)
            prev_a, prev_f = alpha, frame
            yield alpha

    def __call__(self, frames: np.ndarray, masks: np.ndarray) -> TeacherOutput:
        frames, masks = check_clip(frames, masks)
        alpha = np.stack(list(self.stream(zip(frames, masks))))
        return TeacherOutput(alpha=alpha, info={"teacher": self.name})

    def describe(self) -> dict:
        return {"name": self.name, "version": self.version, "weights": self.weights,
                "options": dataclasses.asdict(self.options)}
