"""The options of the CUDA fast path: one frozen dataclass, whose defaults are what ``load_model`` builds."""
from __future__ import annotations

from dataclasses import dataclass

from ..errors import ZunaValueError


@dataclass(frozen=True)
class FastOptions:
    """How :func:`zuna_lab.fast.build` builds the fast path.

    Parameters
    ----------
    precision : "bf16" | "fp32"
        "bf16" (default): bf16 GEMMs, except the encoder's attention projections and the
        decoder's 32-wide token projections, which run as TF32; norms, residuals, RoPE and the
        sampler state in fp32. "fp32": the same kernels with every product in exact fp32 (no
        TF32), e.g. to test the kernels against the reference model.
    cuda_graphs : bool
        Replay the whole sampling loop (and encodes of at most
        :data:`zuna_lab.fast.runner.GRAPH_ENCODE_TOKENS` tokens) as one CUDA graph per input
        shape, captured on the first call (default True; CUDA only). Each captured shape keeps its
        activations on the GPU: :meth:`FastZunaModel.clear_graphs` releases them.
    """

    precision: str = "bf16"
    cuda_graphs: bool = True

    def __post_init__(self):
        if self.precision not in ("bf16", "fp32"):
            raise ZunaValueError(f"FastOptions.precision must be 'bf16' or 'fp32', not {self.precision!r}.")
        if not isinstance(self.cuda_graphs, bool):
            raise ZunaValueError(f"FastOptions.cuda_graphs must be True or False, not {self.cuda_graphs!r}.")
