"""The result type every teacher returns (numpy only)."""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass
class TeacherOutput:
    """``alpha``: ``[T,H,W]`` float32 in 0..1 at the input frames' size.

    ``info`` carries per-clip diagnostics (e.g. windows used, frames whose mask was empty).
    """

    alpha: np.ndarray
    info: dict = field(default_factory=dict)
