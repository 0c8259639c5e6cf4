"""ZunaModel: encoder + decoder with the low-level API of DESIGN.md, and checkpoint loading."""
from __future__ import annotations

import functools
import math
import threading
from collections import OrderedDict
from pathlib import Path

import torch
from torch import nn

from ..config import ModelConfig, read_config_json
from ..errors import CheckpointError, ZunaTypeError, ZunaValueError
from ..sampling import euler_sample, flow_times
from . import checkpoint as ckpt
from .decoder import Decoder
from .encoder import Encoder

PRECISIONS = ("fp32", "bf16")


def _one_call_at_a_time(method):
    """Run ``method`` under the model's lock (threads sharing a model queue up)."""
    @functools.wraps(method)
    def locked(self, *args, **kwargs):
        with self._call_lock:
            return method(self, *args, **kwargs)

    return locked


class ZunaModel(nn.Module):
    """A ZUNA masked diffusion autoencoder.

    Parameters
    ----------
    config : ModelConfig
        Architecture (``config.variant`` is "ZUNA" or "ZUNA1.1").

    Notes
    -----
    ``precision`` is "fp32" (exact, parity-tested) or "bf16": attention and SwiGLU GEMMs in bf16,
    except the encoder's attention projections (:attr:`encoder_tf32_parts`), which stay fp32 and run
    as TF32 on CUDA; norms, residuals, RoPE, the sampler state and the 32-wide token/latent and time
    projections in fp32 (on the CUDA fast path the decoder's token embedding and output projection
    run as TF32 GEMMs, :attr:`decoder_io_tf32`). The encoder carries the bf16 error into the
    samples: with its attention in TF32 and, on CUDA, its projections finished in GEMM epilogues
    from fp32 accumulators (:meth:`optimize`'s ``gemm_epilogues``), a 50-step ZUNA1.1
    reconstruction stays 0.6e-2 to 0.9e-2 (relative L2) from fp32 (benchmarks/results/gpu.md). For ZUNA this stays within 2e-2 of
    the official bf16 autocast inference and closer to fp32.
    On CUDA, :meth:`optimize` switches on fused projections, the Triton kernels
    (:mod:`zuna_lab.model.kernels`) and CUDA graphs of the whole sampling loop and of small encodes.
    """

    def __init__(self, config: ModelConfig):
        super().__init__()
        self.config = config
        self.encoder = Encoder(config)
        self.decoder = Decoder(config)
        self.precision = "fp32"
        self.source = None       # provenance, set by load_model
        self.revision = None
        self.is_random = False   # written by zuna_lab.testing: outputs are meaningless
        self.fused = False       # fused QKV / SwiGLU projections
        self.use_kernels = False  # Triton fast path (fused_forward of the blocks)
        self.cuda_graphs = False
        self._graphs = OrderedDict()
        # One call at a time: CUDA-graph buffers and torch's global TF32 flag are per-call state,
        # and dashboard sessions share one model across threads.
        self._call_lock = threading.RLock()

    @property
    def variant(self) -> str:
        return self.config.variant

    @property
    def device(self) -> torch.device:
        return self.encoder.embed.weight.device

    def n_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())

    #: In bf16, the encoder sub-layers ("attention", "feed_forward") whose GEMMs run in TF32 instead.
    encoder_tf32_parts: tuple = ("attention",)
    #: Encodes of at most this many tokens are replayed as CUDA graphs (launch-bound sizes).
    graph_encode_tokens = 4096

    def set_precision(self, precision: str) -> "ZunaModel":
        """Switch between "fp32" and "bf16" in place; returns the model."""
        if precision not in PRECISIONS:
            raise ZunaValueError(f"precision must be one of {PRECISIONS}, not {precision!r}.")
        matrix_dtype = torch.bfloat16 if precision == "bf16" else torch.float32
        from .layers import Attention, SwiGLU

        for module in self.modules():
            # bf16 for attention and SwiGLU projections (all but ~0.1 % of the FLOPs); the 32-wide
            # token and latent projections and the time conditioning stay fp32 for accuracy.
            if isinstance(module, (Attention, SwiGLU)):
                for child in module.children():
                    if isinstance(child, nn.Linear):
                        child.to(matrix_dtype)
            if isinstance(module, Attention):
                module.sdpa_dtype = None
        if precision == "bf16":
            # Encoder sub-layers kept in fp32 weights and run as TF32 GEMMs (encode() enables
            # TF32 around the encoder only), with SDPA still in bf16.
            for block in self.encoder.blocks:
                for part in self.encoder_tf32_parts:
                    module = getattr(block, part)
                    for child in module.children():
                        if isinstance(child, nn.Linear):
                            child.to(torch.float32)
                    if isinstance(module, Attention):
                        module.sdpa_dtype = torch.bfloat16
        self.precision = precision
        self._graphs.clear()
        if self.fused:
            self._fuse()
        return self

    def optimize(self, *, fused_projections=True, kernels=None, gemm_epilogues=None, compile_blocks=False,
                 cuda_graphs=None) -> "ZunaModel":
        """Speed options (defaults: all but compile_blocks on for CUDA, fused projections elsewhere).

        fused_projections: one GEMM for Q, K, V of self-attention, one for K, V of cross-attention
            and one for SwiGLU's two inputs; one for all AdaRMSNorm gains of the decoder.
        kernels: the Triton fast path: residual adds fused with the norms around them, QK-norm
            with 4-D RoPE, SwiGLU, each one kernel (:mod:`zuna_lab.model.kernels`); needs
            fused_projections and Triton. Compiles in seconds, cached on disk by Triton.
        gemm_epilogues: with kernels, where Triton GEMMs finish the projection in their epilogue
            (QK-norm + RoPE of each head; SwiGLU's silu(a) * b) from the fp32 accumulator instead of
            a cuBLAS GEMM rounding to bf16 before the separate kernel: "encoder" (default; it
            lowers the bf16 error of a reconstruction by ~20 % for ~0.3 % of its time), "all"
            (True; the decoder gains no accuracy and loses ~7 % speed) or "none" (False).
        compile_blocks: torch.compile each transformer block instead (used only without kernels;
            slower to start, kept for comparison).
        cuda_graphs: capture the whole sampling loop once per shape and replay it.
        """
        from . import kernels as kernel_module

        on_cuda = self.device.type == "cuda"
        self.fused = bool(fused_projections)
        if self.fused:
            self._fuse()
        else:
            for module in self.modules():
                for name in ("wqkv", "wkv", "w13", "gain_stack"):
                    if hasattr(module, name):
                        setattr(module, name, None)
        wanted = on_cuda if kernels is None else bool(kernels)
        if wanted and not (self.fused and kernel_module.available(self.device)):
            if kernels:
                raise ZunaValueError("kernels=True needs fused_projections=True, Triton and a CUDA device "
                                     "(or TRITON_INTERPRET=1 for CPU tests).")
            wanted = False
        self.use_kernels = wanted
        scopes = {None: "encoder", "encoder": "encoder", True: "all", "all": "all", False: "none", "none": "none"}
        if not isinstance(gemm_epilogues, (str, bool, type(None))) or gemm_epilogues not in scopes:
            raise ZunaValueError(f"gemm_epilogues must be 'encoder', 'all', 'none' (or None, True, False), "
                                 f"not {gemm_epilogues!r}.")
        scope = scopes[gemm_epilogues] if self.use_kernels else "none"
        from .layers import Attention, SwiGLU

        for part, wanted in ((self.encoder, scope != "none"), (self.decoder, scope == "all")):
            for module in part.modules():
                if isinstance(module, (Attention, SwiGLU)):
                    module.gemm_epilogue = wanted
        if compile_blocks and not self.use_kernels:
            from torch import _dynamo

            # shapes change with channels/epochs: let dynamo go dynamic instead of giving up
            _dynamo.config.recompile_limit = max(64, getattr(_dynamo.config, "recompile_limit", 8))
            for block in list(self.encoder.blocks) + list(self.decoder.blocks):
                block.compile()
        self.cuda_graphs = on_cuda if cuda_graphs is None else bool(cuda_graphs) and on_cuda
        self._graphs.clear()
        return self

    def _fuse(self):
        for module in self.modules():
            if hasattr(module, "fuse"):
                module.fuse()

    def _check_inputs(self, values: torch.Tensor, tok_idx: torch.Tensor, name: str):
        """Raise on bad shapes or dtypes; returns a function to call before returning results,
        which raises if tok_idx lies outside the RoPE range."""
        if not isinstance(values, torch.Tensor) or not isinstance(tok_idx, torch.Tensor):
            raise ZunaTypeError(f"{name} and tok_idx must be torch tensors, got {type(values).__name__} and {type(tok_idx).__name__}.")
        width = self.config.input_dim if name == "tokens" else self.config.latent_dim
        if values.ndim != 3 or values.shape[-1] != width:
            raise ZunaValueError(f"{name} must have shape [batch, n_tokens, {width}], got {list(values.shape)}.")
        if tok_idx.shape != (*values.shape[:2], 4):
            raise ZunaValueError(f"tok_idx must have shape [batch, n_tokens, 4] = {[*values.shape[:2], 4]}, got {list(tok_idx.shape)}.")
        if tok_idx.dtype.is_floating_point or tok_idx.dtype == torch.bool:
            raise ZunaTypeError(f"tok_idx must hold integer positions (torch.long), got {tok_idx.dtype}.")
        if not tok_idx.numel():
            return lambda: None
        bounds = torch.aminmax(tok_idx)

        def check_range():
            low, high = (int(v) for v in bounds)
            if low < 0 or high >= self.config.max_seqlen:
                raise ZunaValueError(
                    f"tok_idx values must lie in [0, {self.config.max_seqlen - 1}] for this checkpoint "
                    f"(got {low}..{high}); the epoch may be too long or the positions wrongly binned.")

        if tok_idx.device.type == "cpu":
            check_range()
            return lambda: None
        # On a GPU the range is read after the work is queued (positions only enter RoPE angles,
        # never an index, so out-of-range values cannot fault): no device sync in front of it.
        return check_range

    @_one_call_at_a_time
    @torch.no_grad()
    def encode(self, tokens: torch.Tensor, tok_idx: torch.Tensor) -> torch.Tensor:
        """Latents [B, S, 32] (float32) of tokens [B, S, 32] (÷ data_norm, clipped, masked = 0) at tok_idx [B, S, 4]."""
        check_range = self._check_inputs(tokens, tok_idx, "tokens")
        tokens = _to_device(tokens, self.device, torch.float32)
        tok_idx = _to_device(tok_idx, self.device, torch.long)
        forward = self.encoder.fused_forward if self.use_kernels else self.encoder
        with _tf32(self.precision == "bf16" and bool(self.encoder_tf32_parts)):
            if self.cuda_graphs and self.device.type == "cuda" and tokens.shape[0] * tokens.shape[1] <= self.graph_encode_tokens:
                latents = self._replay(("encode", tuple(tokens.shape)), forward, (tokens, tok_idx)).float()
            else:
                latents = forward(tokens, tok_idx).float()
        check_range()
        return latents

    @_one_call_at_a_time
    @torch.no_grad()
    def sample(self, latents: torch.Tensor, tok_idx: torch.Tensor, *, noise: torch.Tensor | None = None,
               steps: int = 50, cfg: float = 1.0, generator: torch.Generator | None = None,
               callback=None) -> torch.Tensor:
        """Decode latents [B, S, 32] by rectified flow; returns tokens [B, S, 32] (normalised units).

        ``noise`` is the standard-normal draw [B, S, 32] (scaled by the model's sigma inside);
        when None it is drawn from ``generator``.
        """
        check_range = self._check_inputs(latents, tok_idx, "latents")
        if not isinstance(steps, int) or steps < 1:
            raise ZunaValueError(f"steps must be a positive integer, got {steps!r}.")
        if not math.isfinite(float(cfg)):
            raise ZunaValueError(f"cfg must be a finite number, got {cfg!r}.")
        shape = (*latents.shape[:2], self.config.input_dim)
        if noise is None:
            noise = torch.randn(shape, generator=generator, dtype=torch.float32,
                                device=generator.device if generator is not None else "cpu")
        elif tuple(noise.shape) != shape:
            raise ZunaValueError(f"noise must have shape {list(shape)}, got {list(noise.shape)}.")
        latents = _to_device(latents, self.device, torch.float32)
        tok_idx = _to_device(tok_idx, self.device, torch.long)
        z = self.config.sigma * _to_device(noise, self.device, torch.float32)
        if self.cuda_graphs and self.device.type == "cuda":
            out = self._graphed_sample(latents, tok_idx, z, steps, float(cfg))
            check_range()
            if callback is not None:
                callback(steps, steps)
            return out
        out = self._sample(latents, tok_idx, z, steps, float(cfg), callback)
        check_range()
        return out

    #: Steps whose cross-attention K/V weights (4 MB a step for ZUNA) are formed at once.
    cross_kv_chunk = 64
    #: bf16 on CUDA: the decoder's 32-wide token embedding and output projections as TF32 GEMMs.
    decoder_io_tf32 = True

    def _sample(self, latents, tok_idx, z, steps, cfg, callback=None):
        decoder = self.decoder
        positions = decoder.positions(tok_idx)
        # The AdaRMSNorm gains depend on t alone: all steps at once, before the loop.
        gains = decoder.conditioning(flow_times(steps, device=z.device))
        # The unconditional branch (cfg != 1) sees zeroed latents, i.e. only the projection bias.
        conditions = [True] if cfg == 1.0 else [True, False]
        if not self.use_kernels:
            contexts = {key: decoder.context(latents if key else torch.zeros_like(latents)) for key in conditions}

            def velocity(state, k, conditional):
                return decoder.velocity(state, gains[k], contexts[conditional], positions)
        else:
            tf32 = self.precision == "bf16"
            factors = {key: decoder.context_factor(latents if key else torch.zeros_like(latents)) for key in conditions}
            k_gains = decoder.cross_k_gains()
            # the 32-wide token embedding and output projections as TF32 GEMMs in bf16 (the rest of
            # the step runs no fp32 GEMM)
            io_tf32 = tf32 and self.decoder_io_tf32
            chunk = {}

            def velocity(state, k, conditional):
                first = k - k % self.cross_kv_chunk
                if first not in chunk:
                    chunk.clear()
                    with _tf32(tf32):
                        chunk[first] = decoder.cross_kv_weights(gains[first:first + self.cross_kv_chunk])
                kv = decoder.fused_cross_kv(factors[conditional], chunk[first][k - first], positions, k_gains, tf32=tf32)
                with _tf32(io_tf32):
                    return decoder.fused_velocity(state, gains[k], positions, kv)

        return euler_sample(velocity, z, steps=steps, cfg=cfg, callback=callback).float()

    def _graphed_sample(self, latents, tok_idx, z, steps, cfg):
        """Replay the whole sampling loop as one CUDA graph (captured once per shape/steps/cfg)."""
        return self._replay(("sample", tuple(latents.shape), steps, cfg),
                            lambda *args: self._sample(*args, steps, cfg), (latents, tok_idx, z))

    def _replay(self, key, fn, inputs, max_graphs=8):
        """fn(*inputs) through a CUDA graph captured on the first call with this key."""
        entry = self._graphs.get(key)
        if entry is None:
            static = tuple(t.clone() for t in inputs)
            side = torch.cuda.Stream()
            side.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(side):      # warm-up: allocator, kernel compilation, off the graph
                fn(*static)
            torch.cuda.current_stream().wait_stream(side)
            graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(graph):
                out = fn(*static)
            entry = (graph, static, out)
            self._graphs[key] = entry
            while len(self._graphs) > max_graphs:
                self._graphs.popitem(last=False)
        self._graphs.move_to_end(key)
        graph, static, out = entry
        for target, value in zip(static, inputs):
            target.copy_(value)
        graph.replay()
        return out.clone()


def _to_device(tensor: torch.Tensor, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    """``tensor.to(device, dtype)``; host tensors go to a GPU through pinned memory, without waiting
    for the GPU work already queued (a copy from pageable memory would)."""
    if tensor.device.type == "cpu" and device.type == "cuda":
        return tensor.to(dtype).pin_memory().to(device, non_blocking=True)
    return tensor.to(device, dtype)


class _tf32:
    """Allow TF32 GEMMs inside the block only (the flag is global in torch)."""

    def __init__(self, enabled: bool):
        self.enabled = enabled

    def __enter__(self):
        self.previous = torch.backends.cuda.matmul.allow_tf32
        if self.enabled:
            torch.backends.cuda.matmul.allow_tf32 = True

    def __exit__(self, *exc):
        torch.backends.cuda.matmul.allow_tf32 = self.previous


def build_model(config: ModelConfig, *, device: str | torch.device = "cpu", meta: bool = False) -> ZunaModel:
    with torch.device("meta" if meta else device):
        return ZunaModel(config)


def load_checkpoint(config_path: str | Path, weights_path: str | Path, *, device="cpu",
                    precision: str = "fp32") -> ZunaModel:
    """Build a ZunaModel from an HF-layout ``config.json`` and ``model-*.safetensors`` (strict)."""
    from safetensors import safe_open
    from safetensors import SafetensorError

    model_fields = read_config_json(config_path)
    weights_path = Path(weights_path)
    if not weights_path.is_file():
        raise CheckpointError(f"No weights file at {weights_path}; expected model-00001-of-00001.safetensors next to config.json.")
    try:
        with safe_open(str(weights_path), framework="pt", device="cpu") as handle:
            stored_keys = list(handle.keys())
            bare = ckpt.strip_prefix(stored_keys)
            variant = ckpt.detect_variant(bare.values())
            fields = dict(model_fields)
            if ckpt.has_learned_dropout(bare.values()):
                fields.setdefault("dropout_type", "learnable")
            config = ModelConfig.from_hf(fields, variant=variant)
            model = build_model(config, meta=True)
            expected = ckpt.key_map(model, variant)
            reference = model.state_dict(keep_vars=True)
            unexpected = sorted(set(bare.values()) - set(expected))
            missing = sorted(set(expected) - set(bare.values()))
            if unexpected:
                raise CheckpointError(
                    f"Checkpoint key {unexpected[0]!r} is not part of a {variant} model"
                    + (f" (and {len(unexpected) - 1} more)" if len(unexpected) > 1 else "")
                    + "; the file was renamed or belongs to another architecture.")
            if missing:
                raise CheckpointError(
                    f"Checkpoint is missing key {missing[0]!r}"
                    + (f" (and {len(missing) - 1} more)" if len(missing) > 1 else "")
                    + f" of a {variant} model; the file is incomplete or its keys were renamed.")
            state = {}
            for stored, theirs in bare.items():
                ours = expected[theirs]
                tensor = handle.get_tensor(stored)
                want = tuple(reference[ours].shape)
                if tuple(tensor.shape) != want:
                    raise CheckpointError(
                        f"Checkpoint tensor {theirs!r} has shape {list(tensor.shape)} but config.json implies {list(want)}; "
                        "config.json and the weights do not belong together.")
                if not tensor.dtype.is_floating_point:
                    raise CheckpointError(f"Checkpoint tensor {theirs!r} has dtype {tensor.dtype}; expected float32 or bfloat16.")
                state[ours] = tensor.to(torch.float32)
    except SafetensorError as err:
        raise CheckpointError(
            f"{weights_path} is not a readable safetensors file ({err}); it is probably truncated — download it again.") from None
    model.load_state_dict(state, strict=True, assign=True)
    model = model.to(device).eval()
    model.is_random = bool(_random_marker(config_path))
    model.requires_grad_(False)
    return model.set_precision(precision)


def _random_marker(config_path) -> bool:
    import json

    try:
        return bool(json.loads(Path(config_path).read_text()).get("zuna_lab", {}).get("random", False))
    except (OSError, ValueError, AttributeError):
        return False


def resolve_device(device) -> torch.device:
    if device is None or device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(device)
    except (RuntimeError, TypeError):
        raise ZunaValueError(f"device must be 'auto', 'cpu', 'cuda' or 'cuda:N', not {device!r}.") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ZunaValueError("device='cuda' was asked for but torch sees no CUDA GPU; use device='auto' or 'cpu'.")
    return device


def load_model(source=None, *, device="auto", dtype=None, revision=None, cache_dir=None,
               local_files_only=None, verbose=None) -> ZunaModel:
    """Load a ZUNA checkpoint.

    Parameters
    ----------
    source : str | path | (path, path) | None
        Hugging Face repo id ("Zyphra/ZUNA" or "Zyphra/ZUNA1.1"), a local directory holding
        ``config.json`` and ``model-00001-of-00001.safetensors``, the safetensors file, or the
        pair of files. None means ``$ZUNA_LAB_MODEL`` if set, else "Zyphra/ZUNA".
    device : "auto" | "cpu" | "cuda" | torch.device
        "auto" picks CUDA when available.
    dtype : None | "fp32" | "bf16" | torch.float32 | torch.bfloat16
        Compute precision. None: bf16 on CUDA, fp32 on CPU.
    revision : str | None
        Hub revision (branch, tag or commit) to pin.
    cache_dir : path | None
        Hub cache directory (default: huggingface_hub's).
    local_files_only : bool | None
        Never touch the network (default: ``HF_HUB_OFFLINE``).
    verbose : bool | None
        Print where the weights came from.

    Returns
    -------
    model : ZunaModel
        In eval mode, with ``model.variant`` detected from the checkpoint keys.

    Examples
    --------
    >>> import zuna_lab as zl
    >>> model = zl.load_model("Zyphra/ZUNA", device="auto")          # doctest: +SKIP
    >>> model.variant                                                  # doctest: +SKIP
    'ZUNA'
    """
    from ..hub import resolve

    device = resolve_device(device)
    precision = _precision(dtype, device)
    resolved = resolve(source, revision=revision, cache_dir=cache_dir, local_files_only=local_files_only)
    model = load_checkpoint(resolved.config_path, resolved.weights_path, device=device, precision=precision)
    if device.type == "cuda":
        model.optimize()
    model.source, model.revision = resolved.source, resolved.revision or revision
    if verbose:
        print(f"Loaded {model.variant} ({model.n_parameters():,} parameters) from {resolved.source} "
              f"on {device} in {precision}.")
    return model


def _precision(dtype, device: torch.device) -> str:
    if dtype is None:
        return "bf16" if device.type == "cuda" else "fp32"
    names = {torch.float32: "fp32", torch.bfloat16: "bf16", "fp32": "fp32", "float32": "fp32",
             "bf16": "bf16", "bfloat16": "bf16"}
    if dtype not in names:
        raise ZunaValueError(f"dtype must be 'fp32' or 'bf16' (or the torch dtypes), not {dtype!r}.")
    return names[dtype]
