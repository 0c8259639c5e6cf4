"""Rectified-flow Euler sampler with classifier-free guidance, outside the model.

The state runs from t = 1 (noise) to t = 0 (signal): z <- z - dt * v(z, t) at t = i/steps,
i = steps ... 1. With ``cfg != 1`` a second, unconditional velocity (latents replaced by zeros)
is mixed in: v = v_uncond + cfg * (v_cond - v_uncond).
"""
from __future__ import annotations

from typing import Callable

import torch


def flow_times(steps: int, *, device=None) -> torch.Tensor:
    """The flow time of every step, [steps] fp32: t_k = (steps - k) / steps for k = 0 .. steps - 1.

    Formed as the official sampler forms them (fp32 ``1 / steps`` times the integer ``steps - k``),
    so that a velocity field can precompute whatever depends on t alone before the loop.
    """
    dt = torch.full((), 1.0 / steps, dtype=torch.float32, device=device)
    return dt * torch.arange(steps, 0, -1, dtype=torch.float32, device=device)


def euler_sample(velocity: Callable[[torch.Tensor, int, bool], torch.Tensor], z: torch.Tensor, *,
                 steps: int, cfg: float = 1.0, callback: Callable[[int, int], None] | None = None) -> torch.Tensor:
    """Integrate the flow from the initial state ``z`` [B, S, D] (already scaled noise).

    ``velocity(z, k, conditional)`` returns v [B, S, D] at step k, i.e. flow time
    ``flow_times(steps)[k]``. ``callback(step, steps)`` is called after every step (progress bars).
    """
    minus_dt = torch.full((), -1.0 / steps, dtype=torch.float32, device=z.device)
    for k in range(steps):
        v = velocity(z, k, True)
        if cfg != 1.0:
            v_uncond = velocity(z, k, False)
            v = v_uncond + cfg * (v - v_uncond)
        z = torch.addcmul(z, minus_dt, v)      # z - dt * v in one kernel
        if callback is not None:
            callback(k + 1, steps)
    return z
