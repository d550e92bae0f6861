"""Training callbacks for SAM2-Matte."""
from __future__ import annotations

import logging
import time

import pytorch_lightning as pl

log = logging.getLogger(__name__)


class CpuBudget(pl.Callback):
    """Stop training once the process has used ``core_seconds`` of CPU time (all its threads).

    "20 minutes on 2 cores" is 2400 core-seconds: on a shared machine the wall time stretches,
    the compute does not. ``max_wall_seconds`` is a hard wall-clock stop on top.
    """

    def __init__(self, core_seconds: float = 2400.0, max_wall_seconds: float | None = None):
        self.core_seconds = float(core_seconds)
        self.max_wall_seconds = max_wall_seconds
        self._cpu0 = None
        self._wall0 = None

    def on_train_start(self, trainer, pl_module):
        self._cpu0, self._wall0 = time.process_time(), time.monotonic()

    def used(self) -> float:
        return 0.0 if self._cpu0 is None else time.process_time() - self._cpu0

    def wall(self) -> float:
        return 0.0 if self._wall0 is None else time.monotonic() - self._wall0

    def fraction(self) -> float:
        """How much of the budget is spent: CPU, or wall clock when that stop comes first."""
        f = self.used() / self.core_seconds
        if self.max_wall_seconds:
            f = max(f, self.wall() / self.max_wall_seconds)
        return f

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        wall = self.wall()
        pl_module.log("train/cpu_s", self.used(), batch_size=1)
        if self.used() >= self.core_seconds or (self.max_wall_seconds and wall >= self.max_wall_seconds):
            log.info("CPU budget reached: %.0f core-s in %.0f s wall (step %d)", self.used(), wall, trainer.global_step)
            trainer.should_stop = True
