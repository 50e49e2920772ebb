#!/usr/bin/env bash
# Install everything the tests need into .venv (idempotent), then run the whole test suite.
# Usage: bash scripts/test.sh [pytest args...]
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PY" -m venv .venv
# Install once per version of the requirements: later runs need no network at all.
stamp=".venv/.installed-$(cat requirements*.txt | sha256sum | cut -c1-16)-test"
if [ ! -f "$stamp" ]; then
  .venv/bin/python -m pip install -q --upgrade pip
  # --no-cache-dir: pip's wheel cache ignores the llama.cpp build flags in requirements-llm.txt,
  # so a wheel compiled elsewhere with other flags could be reused.
  .venv/bin/python -m pip install -q --no-cache-dir -r requirements-test.txt
  touch "$stamp"
fi
# Browser tests drive Debian's Chromium through Playwright (never `playwright install`).
if ! command -v chromium >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ]; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
  else
    sudo apt-get update -qq && sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
  fi
fi
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 GRADIO_ANALYTICS_ENABLED=False ANONYMIZED_TELEMETRY=False
exec .venv/bin/python -m pytest "$@"
