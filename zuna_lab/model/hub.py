"""Where the weights come from: a Hugging Face repo id, a local directory, or the two files.

Hub downloads go through ``huggingface_hub`` (its cache, ``HF_HOME``/``cache_dir``,
``HF_HUB_OFFLINE``, ``HF_ENDPOINT`` and revisions all apply). Before asking the hub, one HEAD
request to its endpoint is tried with a short timeout (``ZUNA_LAB_HUB_TIMEOUT`` seconds, default
3): when nothing answers, only the local cache is read, so an offline machine gets its cached
snapshot, or the error, within seconds instead of after ``huggingface_hub``'s ~20 s of retries.
The error says how to pass a local directory instead.
"""
from __future__ import annotations

import os
import re
import ssl
import threading
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from ..errors import CheckpointError, WeightsUnavailableError, ZunaTypeError

CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model-00001-of-00001.safetensors"
DEFAULT_SOURCE = "Zyphra/ZUNA"
PROBE_TIMEOUT = 3.0     # seconds; ZUNA_LAB_HUB_TIMEOUT overrides it
_REPO_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


@dataclass(frozen=True)
class ResolvedWeights:
    config_path: Path
    weights_path: Path
    source: str            # what the user asked for (repo id or path)
    revision: str | None   # the commit the files came from, when known


def default_source() -> str:
    """``ZUNA_LAB_MODEL`` when set (tutorials and tests point it at a local checkpoint), else Zyphra/ZUNA."""
    return os.environ.get("ZUNA_LAB_MODEL") or DEFAULT_SOURCE


def resolve(source=None, *, revision: str | None = None, cache_dir: str | os.PathLike | None = None,
            local_files_only: bool | None = None) -> ResolvedWeights:
    """Find ``config.json`` and the safetensors file for ``source``.

    ``source`` is a repo id ("Zyphra/ZUNA", "Zyphra/ZUNA1.1"), a local directory holding the two
    files, a path to the safetensors file (config.json beside it), or a (config, weights) pair.
    """
    source = default_source() if source is None else source
    if isinstance(source, (tuple, list)):
        if len(source) != 2:
            raise ZunaTypeError("A checkpoint given as files must be a pair (config.json path, safetensors path).")
        config_path, weights_path = (Path(p).expanduser() for p in source)
        _check_local(config_path, weights_path)
        return ResolvedWeights(config_path, weights_path, str(weights_path), None)
    if not isinstance(source, (str, os.PathLike)):
        raise ZunaTypeError(f"source must be a repo id, a directory or a file path, not {type(source).__name__}.")
    path = Path(source).expanduser()
    if path.is_dir():
        config_path, weights_path = path / CONFIG_NAME, path / WEIGHTS_NAME
        if not weights_path.exists():
            candidates = sorted(path.glob("*.safetensors"))
            if len(candidates) == 1:
                weights_path = candidates[0]
        _check_local(config_path, weights_path)
        return ResolvedWeights(config_path, weights_path, str(path), _snapshot_revision(path))
    if path.is_file():
        if path.suffix != ".safetensors":
            raise CheckpointError(f"{path} is not a .safetensors file; pass the checkpoint directory or its safetensors file.")
        config_path = path.parent / CONFIG_NAME
        _check_local(config_path, path)
        return ResolvedWeights(config_path, path, str(path), _snapshot_revision(path.parent))
    source = str(source)
    if not _REPO_ID.match(source) or source.startswith((".", "/", "~")):
        raise CheckpointError(
            f"{source!r} is neither an existing directory or file nor a Hugging Face repo id like 'Zyphra/ZUNA'.")
    return _download(source, revision=revision, cache_dir=cache_dir, local_files_only=local_files_only)


def _check_local(config_path: Path, weights_path: Path):
    if not config_path.is_file():
        raise CheckpointError(f"No {CONFIG_NAME} at {config_path}; a ZUNA checkpoint holds {CONFIG_NAME} and {WEIGHTS_NAME}.")
    if not weights_path.is_file():
        raise CheckpointError(f"No weights at {weights_path}; a ZUNA checkpoint holds {CONFIG_NAME} and {WEIGHTS_NAME}.")


def _snapshot_revision(directory: Path) -> str | None:
    # Inside an HF cache the snapshot folder is named by the commit hash.
    name = directory.name
    return name if re.fullmatch(r"[0-9a-f]{40}", name) and directory.parent.name == "snapshots" else None


def hub_endpoint() -> str:
    """The hub's base URL as ``huggingface_hub`` uses it (``HF_ENDPOINT``, default https://huggingface.co)."""
    try:
        from huggingface_hub import constants

        return constants.ENDPOINT
    except (ImportError, AttributeError):
        return os.environ.get("HF_ENDPOINT", "https://huggingface.co").rstrip("/")


def hub_offline() -> bool:
    """True when ``HF_HUB_OFFLINE`` asks never to contact the hub."""
    return os.environ.get("HF_HUB_OFFLINE", "0").strip().lower() in ("1", "true", "yes", "on")


def hub_unreachable(endpoint: str | None = None, timeout: float | None = None) -> str | None:
    """Why the hub cannot be reached (a few words), or None when it answers.

    One HTTP HEAD request to the endpoint (through the proxy the environment configures) within
    ``timeout`` seconds (default ``ZUNA_LAB_HUB_TIMEOUT`` or 3), name lookup included. Any HTTP
    answer counts as reachable, and so does a TLS certificate the default context rejects
    (``huggingface_hub`` may be configured with other certificates): it then decides itself.
    """
    endpoint = endpoint or hub_endpoint()
    if timeout is None:
        try:
            timeout = float(os.environ.get("ZUNA_LAB_HUB_TIMEOUT", PROBE_TIMEOUT))
        except ValueError:
            timeout = PROBE_TIMEOUT
    if not urllib.parse.urlsplit(endpoint).hostname:
        return f"{endpoint!r} is not a URL"
    outcome = []

    def probe():   # in a thread: a hanging name lookup has no timeout of its own
        try:
            urllib.request.urlopen(urllib.request.Request(endpoint, method="HEAD"), timeout=timeout).close()
            outcome.append(None)
        except urllib.error.HTTPError:                   # the hub (or a proxy) answered
            outcome.append(None)
        except (urllib.error.URLError, OSError, ValueError) as err:
            reason = getattr(err, "reason", err)
            if isinstance(reason, ssl.SSLCertVerificationError):
                outcome.append(None)
            else:
                outcome.append(getattr(reason, "strerror", None) or str(reason) or type(reason).__name__)

    worker = threading.Thread(target=probe, daemon=True, name="zuna_lab-hub-probe")
    worker.start()
    worker.join(timeout + 0.5)
    if not outcome:
        return f"no answer from {endpoint} within {timeout:g} s"
    return None if outcome[0] is None else f"{endpoint}: {outcome[0]}"


def _unreachable(message: str, reason: str) -> WeightsUnavailableError:
    """The error for weights the hub could not deliver; ``.hub_unreachable`` holds the short reason."""
    error = WeightsUnavailableError(message.format(reason))
    error.hub_unreachable = reason
    return error


def _download(repo_id: str, *, revision, cache_dir, local_files_only) -> ResolvedWeights:
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import (EntryNotFoundError, LocalEntryNotFoundError, RepositoryNotFoundError,
                                        RevisionNotFoundError)

    reason = "local_files_only=True" if local_files_only else None
    if local_files_only is None:
        reason = "HF_HUB_OFFLINE is set" if hub_offline() else hub_unreachable()
        local_files_only = reason is not None     # offline or unreachable: the cache only, no retries
    unreachable = (
        f"Could not get {repo_id!r} from the Hugging Face hub (offline or unreachable: {{}}); "
        f"download its {CONFIG_NAME} and {WEIGHTS_NAME} on a connected machine and pass that directory, "
        f"e.g. zuna_lab.load_model('/path/to/ZUNA'), or set ZUNA_LAB_MODEL=/path/to/ZUNA.")
    try:
        paths = [Path(hf_hub_download(repo_id, name, revision=revision, cache_dir=cache_dir,
                                      local_files_only=local_files_only))
                 for name in (CONFIG_NAME, WEIGHTS_NAME)]
    except LocalEntryNotFoundError as err:   # offline mode, or no connection and nothing cached
        raise _unreachable(unreachable, reason or type(err).__name__) from None
    except (RepositoryNotFoundError, RevisionNotFoundError) as err:
        raise WeightsUnavailableError(
            f"The Hugging Face repo {repo_id!r}" + (f" at revision {revision!r}" if revision else "")
            + f" was not found ({type(err).__name__}); check the name, e.g. 'Zyphra/ZUNA' or 'Zyphra/ZUNA1.1'.") from None
    except EntryNotFoundError:
        raise WeightsUnavailableError(
            f"The Hugging Face repo {repo_id!r} has no {CONFIG_NAME} + {WEIGHTS_NAME}; it is not a ZUNA checkpoint repo.") from None
    except Exception as err:  # DNS, proxy, timeouts, HTTP errors: huggingface_hub raises several types
        raise _unreachable(unreachable, type(err).__name__) from None
    config_path, weights_path = paths
    return ResolvedWeights(config_path, weights_path, repo_id, _snapshot_revision(weights_path.parent))
