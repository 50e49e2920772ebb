#!/usr/bin/env bash
# Install the app into .venv (idempotent) and run it on the built-in corpus.
# Usage: bash scripts/run.sh [app.py options...]   (see: bash scripts/run.sh --help)
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PY" -m venv .venv
# Install once per version of the requirements: later runs need no network at all.
stamp=".venv/.installed-$(cat requirements.txt | sha256sum | cut -c1-16)-run"
if [ ! -f "$stamp" ]; then
  .venv/bin/python -m pip install -q --upgrade pip
  .venv/bin/python -m pip install -q -r requirements.txt
  touch "$stamp"
fi
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 GRADIO_ANALYTICS_ENABLED=False ANONYMIZED_TELEMETRY=False
exec .venv/bin/python app.py "$@"
