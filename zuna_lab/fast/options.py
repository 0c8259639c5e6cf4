"""The options of the CUDA fast path: one frozen dataclass, whose defaults are what ``load_model`` builds."""
from __future__ import annotations

from dataclasses import dataclass

import torch

from ..errors import ZunaValueError

#: The fast path's precisions and the dtype of their wide GEMM operands.
PRECISIONS = {"fp16": torch.float16, "bf16": torch.bfloat16, "fp32": torch.float32}


@dataclass(frozen=True)
class FastOptions:
    """How :func:`zuna_lab.fast.build` builds the fast path.

    Parameters
    ----------
    precision : "fp16" | "bf16" | "fp32"
        "fp16" (default): every wide GEMM and the attention take fp16 operands with fp32
        accumulation (the tensor cores' bf16 speed, 8x finer rounding than bf16); the decoder's
        32-wide token projections run as TF32; norms, residuals, RoPE and the sampler state stay
        fp32. A call whose fp16 activations overflow (beyond 65504) is run again in bf16, and the
        model stays in bf16 (:meth:`FastZunaModel.encode`). "bf16": bf16 GEMMs, except the
        encoder's attention projections (TF32), for weights whose activations overflow fp16.
        "fp32": the same kernels with every product in exact fp32 (no TF32), e.g. to test the
        kernels against the reference model.
    cuda_graphs : bool
        Replay the whole sampling loop (and encodes of at most
        :data:`zuna_lab.fast.runner.GRAPH_ENCODE_TOKENS` tokens) as one CUDA graph per input
        shape, captured on the first call (default True; CUDA only). Each captured shape keeps its
        activations on the GPU: :meth:`FastZunaModel.clear_graphs` releases them.
    """

    precision: str = "fp16"
    cuda_graphs: bool = True

    def __post_init__(self):
        if self.precision not in PRECISIONS:
            raise ZunaValueError(f"FastOptions.precision must be 'fp16', 'bf16' or 'fp32', not {self.precision!r}.")
        if not isinstance(self.cuda_graphs, bool):
            raise ZunaValueError(f"FastOptions.cuda_graphs must be True or False, not {self.cuda_graphs!r}.")
