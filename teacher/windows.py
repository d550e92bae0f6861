"""Overlapping windows streamed from a reader to a writer with bounded memory.

``stream_windows(pairs, run_window, window, overlap)`` consumes ``(frame, mask)`` pairs one by
one and yields one alpha per frame, in order. At most ``window`` frames (plus their alphas) are
held at any time, whatever the video length. Consecutive windows share ``overlap`` frames: in
the later window those frames are guided by the *previous window's soft alpha* instead of the
input mask, and the two predictions are blended linearly (weight of the new window rising
from 1/(overlap+1) to overlap/(overlap+1)). A change of frame size closes the current window
early: each window runs at its own size, and no overlap is carried across the change.
"""
from __future__ import annotations

from typing import Callable, Iterable, Iterator, Sequence

import numpy as np

from mamakit.errors import ConfigError

RunWindow = Callable[[Sequence[np.ndarray], Sequence[np.ndarray]], Sequence[np.ndarray]]


def stream_windows(pairs: Iterable[tuple[np.ndarray, np.ndarray]], run_window: RunWindow, window: int = 16,
                   overlap: int = 2) -> Iterator[np.ndarray]:
    if window < 1:
        raise ConfigError(f"window must be >= 1 frame, got {window}")
    if not 0 <= overlap < window:
        raise ConfigError(f"overlap must be in [0, window) = [0, {window}), got {overlap}")
    frames: list[np.ndarray] = []
    guides: list[np.ndarray] = []
    prev: list[np.ndarray] = []  # previous window's alpha for the first len(prev) entries (carried frames)

    def flush(final: bool) -> Iterator[np.ndarray]:
        nonlocal frames, guides, prev
        n_carry = len(prev)
        if len(frames) == n_carry:  # nothing new since the carry: the previous alphas stand
            out = list(prev)
            frames, guides, prev = [], [], []
            yield from out
            return
        alphas = list(run_window(frames, guides))
        if len(alphas) != len(frames):
            raise RuntimeError(f"window returned {len(alphas)} alphas for {len(frames)} frames")
        hold = 0 if final else min(overlap, len(frames) - n_carry)
        emit_upto = len(frames) - hold
        for i in range(emit_upto):
            a = alphas[i]
            if i < n_carry:
                w = (i + 1) / (n_carry + 1)
                a = ((1.0 - w) * prev[i] + w * a).astype(np.float32)
            yield a
        # carried frames: guided by this window's soft alpha in the next window
        frames = frames[emit_upto:]
        prev = [np.asarray(a, np.float32) for a in alphas[emit_upto:]]
        guides = list(prev)

    for frame, mask in pairs:
        if frames and frame.shape != frames[0].shape:
            yield from flush(final=True)
        frames.append(frame)
        guides.append(mask)
        if len(frames) >= window:
            yield from flush(final=False)
    if frames:
        yield from flush(final=True)
