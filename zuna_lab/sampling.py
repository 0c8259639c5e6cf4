"""Rectified-flow Euler sampler with classifier-free guidance, outside the model.

The state runs from t = 1 (noise) to t = 0 (signal): z <- z - dt * v(z, t) at t = i/steps,
i = steps ... 1. With ``cfg != 1`` a second, unconditional velocity (latents replaced by zeros)
is mixed in: v = v_uncond + cfg * (v_cond - v_uncond).
"""
from __future__ import annotations

from typing import Callable

import torch


def euler_sample(velocity: Callable[[torch.Tensor, torch.Tensor, bool], torch.Tensor], z: torch.Tensor, *,
                 steps: int, cfg: float = 1.0, callback: Callable[[int, int], None] | None = None) -> torch.Tensor:
    """Integrate the flow from the initial state ``z`` [B, S, D] (already scaled noise).

    ``velocity(z, t, conditional)`` returns v [B, S, D] for flow times t [B].
    ``callback(step, steps)`` is called after every step (progress bars).
    """
    bsz = z.shape[0]
    # dt and t exactly as the official sampler forms them (fp32 1/steps times i).
    dt = torch.full((bsz,), 1.0 / steps, dtype=torch.float32, device=z.device)
    dt_state = dt.view(-1, 1, 1)
    for i in range(steps, 0, -1):
        t = dt * i
        v = velocity(z, t, True)
        if cfg != 1.0:
            v_uncond = velocity(z, t, False)
            v = v_uncond + cfg * (v - v_uncond)
        z = z - dt_state * v
        if callback is not None:
            callback(steps - i + 1, steps)
    return z
