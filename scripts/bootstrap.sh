#!/usr/bin/env bash
# Idempotent set-up used by both README commands (scripts/main.sh and scripts/test.sh).
# - as root: installs Debian's dataset-fashion-mnist (real data) and chromium + chromium-driver
#   (browser test); elsewhere it says what it skipped and the project falls back cleanly.
# - creates .venv and installs mcbench with its test extras.
set -euo pipefail
cd "$(dirname "$0")/.."

APT_PACKAGES=(dataset-fashion-mnist chromium chromium-driver)
missing=()
for p in "${APT_PACKAGES[@]}"; do
  dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
done
if [ "${#missing[@]}" -gt 0 ]; then
  if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
    echo "[bootstrap] apt-get install ${missing[*]}"
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}") >/dev/null \
      || echo "[bootstrap] WARNING: could not install ${missing[*]}; Fashion-MNIST falls back to digits and the browser test skips"
  else
    echo "[bootstrap] not root: skipping Debian packages ${missing[*]} (Fashion-MNIST falls back to digits; browser test skips)"
  fi
fi

PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  echo "[bootstrap] creating .venv"
  "$PY" -m venv .venv
fi
stamp=.venv/.mcbench-installed
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
  echo "[bootstrap] pip install -e .[test] (first run installs torch: several minutes)"
  .venv/bin/python -m pip install -q --upgrade pip
  .venv/bin/python -m pip install -q -e ".[test]"
  touch "$stamp"
fi
