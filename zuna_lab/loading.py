"""load_model: weights (hub or a folder) → the reference model → on CUDA in bf16, its fast path.

The one place that joins :mod:`zuna_lab.hub`, the reference model (:mod:`zuna_lab.model`) and
the CUDA fast path (:mod:`zuna_lab.fast`), so that neither model package knows the other.
"""
from __future__ import annotations

import torch

from .errors import ZunaValueError
from .model import ZunaModel, load_checkpoint

__all__ = ["load_model", "resolve_device"]


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
        Compute precision. None: bf16 on CUDA, fp32 on CPU. On CUDA, bf16 gives the fast path
        (:func:`zuna_lab.fast.build`) and "fp32" the exact
        reference model.
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
        In eval mode, with ``model.variant`` detected from the checkpoint keys; on CUDA in bf16 a
        :class:`~zuna_lab.fast.FastZunaModel` (a ZunaModel subclass).

    Examples
    --------
    >>> import zuna_lab as zl
    >>> model = zl.load_model("Zyphra/ZUNA", device="auto")          # doctest: +SKIP
    >>> model.variant                                                  # doctest: +SKIP
    'ZUNA'
    """
    from .hub import resolve

    device = resolve_device(device)
    precision = _precision(dtype, device)
    resolved = resolve(source, revision=revision, cache_dir=cache_dir, local_files_only=local_files_only)
    fast = device.type == "cuda" and precision == "bf16"
    model = load_checkpoint(resolved.config_path, resolved.weights_path, device=device,
                            precision="fp32" if fast else precision)
    if fast:
        from . import fast as fast_path     # the CUDA fast path (zuna_lab/fast), built from the exact weights

        if fast_path.available(device):
            model = fast_path.build(model)
        else:
            model.set_precision(precision)
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
