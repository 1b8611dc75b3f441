#!/usr/bin/env bash
# Idempotent set-up used by both README commands (scripts/main.sh and scripts/test.sh).
# - as root: installs Debian's dataset-fashion-mnist (real data), chromium + chromium-driver
#   (browser test), libjemalloc2 (the allocator the mcbench CLI preloads for stable latency) and
#   ninja-build (torch.utils.cpp_extension builds the XNOR-Net packed-bit kernel with it);
#   elsewhere it says what it skipped and the project falls back cleanly (glibc tunables for malloc).
# - creates .venv and installs mcbench with its test extras.
set -euo pipefail
cd "$(dirname "$0")/.."

APT_PACKAGES=(dataset-fashion-mnist chromium chromium-driver libjemalloc2 ninja-build g++)
missing=()
for p in "${APT_PACKAGES[@]}"; do
  dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
done
if [ "${#missing[@]}" -gt 0 ]; then
  if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
    echo "[bootstrap] apt-get install ${missing[*]}"
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}") >/dev/null \
      || echo "[bootstrap] WARNING: could not install ${missing[*]}; Fashion-MNIST falls back to digits, the browser test skips, malloc uses glibc tunables"
  else
    echo "[bootstrap] not root: skipping Debian packages ${missing[*]} (Fashion-MNIST falls back to digits; browser test skips; malloc uses glibc tunables)"
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
  # No pip cache: the wheels (torch with its CUDA libraries, ~3 GB) would otherwise sit on disk twice, once
  # in the cache and once installed; a CI run once failed with "No space left on device" here.
  free_kb=$(df -Pk . | awk 'NR==2 {print $4}')
  if [ "${free_kb:-0}" -lt $((8 * 1024 * 1024)) ]; then
    echo "[bootstrap] WARNING: $((free_kb / 1024)) MiB free here; installing torch and its CUDA libraries needs about 8 GiB"
  fi
  export PIP_NO_CACHE_DIR=1
  .venv/bin/python -m pip install -q --upgrade pip
  .venv/bin/python -m pip install -q -e ".[test]"
  touch "$stamp"
fi
