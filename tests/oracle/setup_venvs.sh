#!/usr/bin/env bash
# Build the two oracle environments: the official `zuna` packages cannot share one
# environment (both install top-level `zuna`, `apps`, `lingua`), so each gets its own venv.
#
# Each venv sees the ACTIVE environment's packages (the python3 that runs this script, a venv
# or not) through a .pth file, so both sides of a parity test run the very same torch, numpy,
# scipy and MNE, and only the code differs. (`venv --system-site-packages` would give the base
# interpreter's packages instead, which a fresh venv does not have.) The venv adds the official
# package and what it imports on top; anything the active environment lacks is installed into
# the venv, torch pinned to the CPU build (an unpinned torch pulls a multi-GB CUDA build).
# A venv that already imports everything from the same active environment is kept as it is.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="${ZUNA_LAB_ORACLE_DIR:-$here/../../.oracle}"
py="${PYTHON:-python3}"
torch_pin="${ZUNA_LAB_TORCH_PIN:-torch==2.13.0}"
mkdir -p "$root"
root="$(cd "$root" && pwd)"

# The active environment's package folders, in its own order.
active_sites="$("$py" -c 'import sys; print("\n".join(p for p in sys.path if p.endswith(("site-packages", "dist-packages"))))')"
# What tests/oracle/official_model.py and official_preprocess.py import, directly and through
# the official package (vector_quantize_pytorch, mne, scipy, matplotlib, dotenv ...).
imports="import torch, numpy, scipy, mne, safetensors.torch, omegaconf, zuna, lingua.args, apps.AY2latent_bci.transformer, apps.AY2latent_bci.eeg_data"
# The official packages' own dependencies (installed with --no-deps: their metadata also lists
# training-only packages), pinned to the versions the parity numbers were measured with.
common="numpy scipy mne matplotlib safetensors psutil tqdm einops==0.8.2 omegaconf==2.4.0 joblib==1.6.0 python-dotenv==1.2.2"

ready() {  # ready VENV VERSION: the venv imports everything, from this active environment
  local venv="$1" version="$2" pth
  [ -x "$venv/bin/python" ] || return 1
  pth="$(ls "$venv"/lib/python*/site-packages/zuna_lab_active_env.pth 2>/dev/null | head -n 1)"
  if [ -n "$pth" ] && [ "$(cat "$pth")" != "$active_sites" ]; then return 1; fi
  "$venv/bin/python" -W ignore -c "$imports
from importlib.metadata import version
assert version('zuna') == '$version', version('zuna')" >/dev/null 2>&1
}

# Check both venvs at once (each check spends seconds importing torch), then build what fails.
declare -A checks
for version in 0.1.1 1.1.6; do
  ready "$root/zuna-$version" "$version" & checks[$version]=$!
done
for version in 0.1.1 1.1.6; do
  venv="$root/zuna-$version"
  if wait "${checks[$version]}"; then
    continue
  fi
  echo "building the oracle venv for the official zuna==$version in $venv" >&2
  "$py" -m venv --clear "$venv"
  site="$("$venv/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"
  printf '%s\n' "$active_sites" > "$site/zuna_lab_active_env.pth"
  reqs="$common"
  if [ "$version" = "0.1.1" ]; then
    reqs="$reqs vector-quantize-pytorch==1.32.0 einx==0.4.3 loguru==0.7.3 frozendict==2.5.1 torch-einops-utils==0.2.0"
  fi
  # torch from the active environment when it has one (any version: both sides then use it).
  if ! "$venv/bin/python" -c "import torch" >/dev/null 2>&1; then reqs="$torch_pin $reqs"; fi
  # Requirements the active environment already satisfies are not installed again.
  "$venv/bin/python" -m pip install -q $reqs
  "$venv/bin/python" -m pip install -q --no-deps "zuna==$version"
  if ! ready "$venv" "$version"; then
    echo "ERROR: the oracle venv $venv cannot import the official zuna==$version and its dependencies:" >&2
    "$venv/bin/python" -c "$imports" >&2 || true
    exit 1
  fi
done
echo "oracle venvs ready under $root"
