"""load_model: weights (hub or a folder) → the reference model → below fp32, its CUDA or CPU fast path.

The one place that joins :mod:`zuna_lab.model.hub`, the reference model (:mod:`zuna_lab.model`), the
CUDA fast path (:mod:`zuna_lab.fast`) and the CPU fast path (:mod:`zuna_lab.fast.cpu`), so that
the reference model knows neither.
"""
from __future__ import annotations

import importlib
import threading

import torch

from ..errors import ZunaValueError
from ..logs import logger, verbose
from ..model import ZunaModel, load_checkpoint

__all__ = ["load_model", "resolve_device"]

#: What a process's first ``embed`` or ``reconstruct`` imports (MNE's readers, filters and epochs,
#: SciPy's signal tools, dask.array: xarray looks for it when it builds a Dataset), and every MNE
#: file reader — about a second that :func:`load_model` spends on a thread while the weights load,
#: instead of in the first call.
FIRST_CALL_MODULES = ("mne.io", "mne.filter", "mne.epochs", "mne.channels", "scipy.signal", "dask.array",
                      "tqdm.auto")
_imports = []


def _import_ahead() -> threading.Thread | None:
    """Import :data:`FIRST_CALL_MODULES` on a thread, once per process; returns the thread the first time."""
    if _imports:
        return None

    def work():
        for name in FIRST_CALL_MODULES:
            try:
                importlib.import_module(name)
            except Exception:       # noqa: BLE001 — an optional one missing is imported (or not) when used
                pass
        import mne.io       # mne.io.read_raw imports every reader to find the one for a file's extension

        for name in dir(mne.io):
            if name.startswith("read_raw_"):
                getattr(mne.io, name)

    thread = threading.Thread(target=work, name="zuna_lab-imports", daemon=True)
    _imports.append(thread)
    thread.start()
    return thread


def resolve_device(device) -> torch.device:
    if device is None or device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(device)
    except (RuntimeError, TypeError):
        raise ZunaValueError(f"device must be 'auto', 'cpu', 'cuda' or 'cuda:N', not {device!r}.") from None
    if device.type not in ("cpu", "cuda"):       # 'meta' holds no values, other backends are not supported
        raise ZunaValueError(f"device must be 'auto', 'cpu', 'cuda' or 'cuda:N', not {str(device)!r}.")
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ZunaValueError("device='cuda' was asked for but torch sees no CUDA GPU; use device='auto' or 'cpu'.")
    return device


@verbose
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
    dtype : None | "fp32" | "mixed" | "fp16" | "bf16" | torch.float32 | torch.float16 | torch.bfloat16
        Compute precision. None: on CUDA "mixed", the fast path :func:`zuna_lab.fast.build`
        (the encoder in fp16, the decoder in bf16, with fp32 accumulation, norms, residuals and
        sampler state; "bf16" where Triton is missing); on a CPU that multiplies bf16 natively
        (AVX512-BF16 or AMX, :func:`zuna_lab.fast.cpu.native_bf16`) "bf16", the CPU fast path
        :func:`zuna_lab.fast.cpu.build_cpu` (bf16 only where the error budget allows); "fp32" on
        other CPUs. On CUDA, "fp16" runs the decoder in fp16 too (closer to exact, ~6 % slower)
        and "bf16" all in bf16 (for weights whose activations overflow fp16; a model with fp16
        parts turns to bf16 by itself when that happens). "fp32" always gives the exact
        reference model. "mixed" and "fp16" are for CUDA only.
    revision : str | None
        Hub revision (branch, tag or commit) to pin.
    cache_dir : path | None
        Hub cache directory (default: huggingface_hub's).
    local_files_only : bool | None
        Never touch the network (default: ``HF_HUB_OFFLINE``).
    verbose : bool | str | int | None
        The log level of this call, as in MNE (None: the current level, see
        :func:`zuna_lab.set_log_level`); at "info" it logs where the weights came from.

    Returns
    -------
    model : ZunaModel
        In eval mode, with ``model.variant`` detected from the checkpoint keys; on CUDA below fp32 a
        :class:`~zuna_lab.fast.FastZunaModel` (a ZunaModel subclass); on the CPU in bf16 the
        reference model with faster modules (``model.cpu_policy`` says which).

    Examples
    --------
    >>> import zuna_lab as zl
    >>> model = zl.load_model("Zyphra/ZUNA", device="auto")          # doctest: +SKIP
    >>> model.variant                                                  # doctest: +SKIP
    'ZUNA'
    """
    from ..model.hub import resolve

    device = resolve_device(device)
    precision = _precision(dtype, device)
    importing = _import_ahead()
    resolved = resolve(source, revision=revision, cache_dir=cache_dir, local_files_only=local_files_only)
    fast = device.type == "cuda" and precision != "fp32"
    # the fast paths are built from the exact fp32 weights
    model = load_checkpoint(resolved.config_path, resolved.weights_path, device=device,
                            precision="fp32" if device.type in ("cuda", "cpu") else precision)
    if device.type == "cpu" and precision == "bf16":
        from ..fast.cpu import build_cpu     # the CPU fast path (zuna_lab/fast/cpu.py)

        model = build_cpu(model, copy_model=False)
    if fast:
        from .. import fast as fast_path  # the CUDA fast path (zuna_lab/fast), built from the exact weights

        if fast_path.available(device):
            model = fast_path.build(model, fast_path.FastOptions(precision=precision))
            model.prime()       # a first call's one-time costs, while MNE imports on its thread
        else:       # no Triton: the plain model in bf16 (_precision refused fp16 and mixed before loading)
            model.set_precision(precision)
    model.source, model.revision = resolved.source, resolved.revision or revision
    if importing is not None:
        importing.join()          # what the weights' loading did not hide is paid here, not in the first call
    logger.info("load_model: %s (%s parameters) from %s on %s in %s.", model.variant, f"{model.n_parameters():,}",
                resolved.source, device, precision)
    return model


def _precision(dtype, device: torch.device) -> str:
    if dtype is None:
        if device.type == "cpu":
            from ..fast.cpu import native_bf16

            return "bf16" if native_bf16() else "fp32"
        if device.type == "cuda":
            from ..fast import available     # fp16 is the fast path's; the plain model runs bf16

            return "mixed" if available(device) else "bf16"
        return "fp32"
    names = {torch.float32: "fp32", torch.bfloat16: "bf16", torch.float16: "fp16", "fp32": "fp32",
             "float32": "fp32", "bf16": "bf16", "bfloat16": "bf16", "fp16": "fp16", "float16": "fp16",
             "mixed": "mixed"}
    if dtype not in names:
        raise ZunaValueError(f"dtype must be 'fp32', 'mixed', 'fp16' or 'bf16' (or the torch dtypes), not {dtype!r}.")
    if names[dtype] in ("mixed", "fp16"):
        if device.type != "cuda":
            raise ZunaValueError(f"dtype={names[dtype]!r} is the CUDA fast path's; on {device.type} use dtype='bf16' "
                                 "or 'fp32'.")
        from ..fast import available

        if not available(device):
            raise ZunaValueError(f"dtype={names[dtype]!r} needs the CUDA fast path, i.e. Triton (pip install triton); "
                                 "use dtype='bf16' or 'fp32' without it.")
    return names[dtype]
