"""The options of the CUDA fast path: one frozen dataclass, whose defaults are what ``load_model`` builds."""
from __future__ import annotations

from dataclasses import dataclass

import torch

from ..errors import ZunaValueError

#: The fast path's precisions: the dtypes of the encoder's and the decoder's wide GEMM operands (in "mixed"
#: the decoder's first FastOptions.decoder_fp16_blocks blocks take fp16).
PRECISIONS = {"mixed": (torch.float16, torch.bfloat16), "fp16": (torch.float16, torch.float16),
              "bf16": (torch.bfloat16, torch.bfloat16), "fp32": (torch.float32, torch.float32)}


@dataclass(frozen=True)
class FastOptions:
    """How :func:`zuna_lab.fast.build` builds the fast path.

    Parameters
    ----------
    precision : "mixed" | "fp16" | "bf16" | "fp32"
        "mixed" (default): the encoder's GEMMs and attention take fp16 operands (8x finer rounding
        than bf16, the same tensor-core speed), so do the decoder's first ``decoder_fp16_blocks``
        blocks, its other blocks bf16 (an all-fp16 decoder cost 6 % of the throughput on an H100);
        accumulation, norms, residuals, RoPE and the sampler state in fp32, the decoder's 32-wide
        token projections as TF32, its cross-attention key/value weights (used in fp32, once per
        64 steps) stored in fp16. Latents within 2.6e-3 and 50-step samples within 6.7e-3 of the
        exact path on the benchmark's checkpoint and three weight families (H100,
        benchmarks/results/precision.md). "fp16": the decoder in fp16 too (samples within 2.4e-3,
        6 % slower). "bf16": bf16 GEMMs, the encoder's attention projections in TF32. A call whose
        fp16 activations overflow (beyond 65504) is run again in bf16, and the model stays in
        bf16. "fp32": the same kernels with every product in exact fp32 (no TF32), e.g. to test
        the kernels against the reference model.
    cuda_graphs : bool
        Replay each sampler step (and encodes of at most
        :data:`zuna_lab.fast.runner.GRAPH_ENCODE_TOKENS` tokens) as a CUDA graph, captured on the
        first call of each input shape (one step's launches: a new shape costs milliseconds);
        default True, CUDA only. Each captured shape keeps its activations on the GPU:
        :meth:`FastZunaModel.clear_graphs` releases them.
    decoder_fp16_blocks : int
        In "mixed": how many of the decoder's first blocks take fp16 operands (their
        cross-attention with its keys and values, self-attention and SwiGLU); the decoder's
        rounding costs the samples most in its first blocks. Default 2: the samples' largest error
        on the benchmark's checkpoint 6.7e-3 (0 blocks: 8.6e-3, 8.7e-3 before the K/V weights
        were fp16; 3: 5.8e-3; 4: 5.3e-3), for 0.8 % of the throughput at 32 x 12 and 8 x 64
        (3: 1.1 %, 4: 1.6 %); 1 x 12 unchanged (H100).
        Other precisions ignore it.
    """

    precision: str = "mixed"
    cuda_graphs: bool = True
    decoder_fp16_blocks: int = 2

    def __post_init__(self):
        if self.precision not in PRECISIONS:
            raise ZunaValueError(f"FastOptions.precision must be 'mixed', 'fp16', 'bf16' or 'fp32', not {self.precision!r}.")
        if not isinstance(self.cuda_graphs, bool):
            raise ZunaValueError(f"FastOptions.cuda_graphs must be True or False, not {self.cuda_graphs!r}.")
        blocks = self.decoder_fp16_blocks
        if isinstance(blocks, bool) or not isinstance(blocks, int) or blocks < 0:
            raise ZunaValueError(f"FastOptions.decoder_fp16_blocks must be a whole number >= 0, not {blocks!r}.")
