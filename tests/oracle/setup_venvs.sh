#!/usr/bin/env bash
# Build the two oracle environments: the official `zuna` packages cannot share one
# environment (both install top-level `zuna`, `apps`, `lingua`). Each venv sees the
# system site-packages (torch, mne, numpy) and adds only what the official model imports.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="${ZUNA_LAB_ORACLE_DIR:-$here/../../.oracle}"
py="${PYTHON:-python3}"
for version in 0.1.1 1.1.6; do
  venv="$root/zuna-$version"
  if [ -x "$venv/bin/python" ] && "$venv/bin/python" -c "import zuna, apps, lingua" 2>/dev/null; then
    continue
  fi
  "$py" -m venv --system-site-packages "$venv"
  "$venv/bin/python" -m pip install -q --no-deps "zuna==$version"
  extra="einops omegaconf python-dotenv joblib matplotlib"
  if [ "$version" = "0.1.1" ]; then extra="$extra vector-quantize-pytorch"; fi
  "$venv/bin/python" -m pip install -q $extra
done
echo "oracle venvs ready under $root"
