"""The student network (plain ``nn.Module`` parts; no Lightning needed to build or export it)."""
from .matting_net import (CONFIG_NAME, PRESETS, WEIGHTS_NAME, StudentConfig, StudentNet, count_flops,
                          count_parameters, stream)

__all__ = ["StudentNet", "StudentConfig", "PRESETS", "CONFIG_NAME", "WEIGHTS_NAME", "count_parameters",
           "count_flops", "stream"]
