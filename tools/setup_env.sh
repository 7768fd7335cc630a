#!/usr/bin/env bash
# Create (or reuse) the virtual environment at <repo>/.venv with everything
# detr_plugin needs. Safe to run repeatedly: once the requirements are installed
# it only checks a stamp file and returns in a second.
#
# GPU users: install your own CUDA build of torch into .venv first
#   python3 -m venv .venv && .venv/bin/pip install torch==<your version>
# and this script keeps it (it installs torch==2.13.0, the CPU wheel, only when
# no torch is importable; it refuses a torch older than requirements.txt says).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="$ROOT/.venv"
PY="$VENV/bin/python"
STAMP="$VENV/.detr_plugin_setup"
# the oldest torch the code runs on, as requirements.txt states it
MIN_TORCH="$(sed -n 's/^torch>=\([0-9.]*\).*/\1/p' "$ROOT/requirements.txt")"

# Refuse a torch older than MIN_TORCH (sort -V: 2.6 < 2.6.0 < 2.13.0+cpu).
check_torch_version() {
  local have="$1"
  if [ "$(printf '%s\n%s\n' "$MIN_TORCH" "$have" | sort -V | head -n1)" != "$MIN_TORCH" ]; then
    echo "[setup_env] torch $have is installed in $VENV, but detr_plugin needs torch>=$MIN_TORCH" \
      "(see requirements.txt: torch.nn.utils.get_total_norm, add_safe_globals with (object, name) pairs)." \
      "Upgrade it (GPU: pip install \"torch>=$MIN_TORCH\" from your CUDA wheel index; CPU:" \
      "$PY -m pip install torch==2.13.0), or delete $VENV, then run this script again." >&2
    return 1
  fi
}
if [ "${1:-}" = "--check-torch-version" ]; then  # test hook: no install
  check_torch_version "$2"
  exit
fi

# A GPU on this machine: nvidia-smi lists one, or the installed torch sees one.
# mmcv compiles its CUDA kernels only when it is told to (FORCE_CUDA=1) or sees
# CUDA while building; a wheel built on a CPU machine, also one in pip's cache,
# has none, and Deformable DETR/DINO then fail at their first forward.
has_gpu() {
  { command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L 2>/dev/null | grep -q GPU; } ||
    { [ -x "$PY" ] && "$PY" -c "import torch, sys; sys.exit(not torch.cuda.is_available())" 2>/dev/null; }
}
# mmcv's ops import; with a GPU, they were compiled with CUDA.
mmcv_ready() {
  if has_gpu; then
    "$PY" -c "import sys, mmcv.ops; sys.exit(mmcv.ops.get_compiling_cuda_version() == 'not available')" 2>/dev/null
  else
    "$PY" -c "import mmcv.ops" 2>/dev/null
  fi
}
# How mmcv is built here: its environment and pip flags.
mmcv_build() {
  if has_gpu; then
    echo "FORCE_CUDA=1 MMCV_WITH_OPS=1 MAX_JOBS=${MAX_JOBS:-$(nproc)} --no-cache-dir --force-reinstall --no-deps"
  else
    echo "MMCV_WITH_OPS=1 MAX_JOBS=${MAX_JOBS:-2}"
  fi
}
if [ "${1:-}" = "--mmcv-build" ]; then  # test hook: what it would run
  mmcv_build
  exit
fi

# The stamp records the files that define the environment; any change re-runs pip.
want="$(cat "$ROOT/requirements.txt" "$ROOT/requirements-test.txt" "$ROOT/setup.py" "$0" | sha256sum | cut -d' ' -f1)"
if [ -x "$PY" ] && [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$want" ] &&
    { ! has_gpu || mmcv_ready; }; then
  exit 0
fi

start=$(date +%s)
[ -x "$PY" ] || "${PYTHON:-python3}" -m venv "$VENV"
pip() { "$PY" -m pip --disable-pip-version-check "$@"; }

# mmcv's setup.py imports pkg_resources (gone in setuptools 81) and torch 2.13
# wants setuptools >= 77.0.3.
pip install -q "setuptools>=77.0.3,<81" wheel
if ! "$PY" -c "import torch" 2>/dev/null; then
  pip install -q torch==2.13.0
fi
check_torch_version "$("$PY" -c "import torch; print(torch.__version__)")"
# mmdet 3.3.0 asserts mmcv < 2.2; there is no prebuilt 2.1.0 wheel for this torch,
# so it is built from source with its ops (about 9 minutes on 2 cores, once: pip
# caches the wheel). Its setup.py imports torch, hence --no-build-isolation. With
# a GPU: its CUDA kernels too, never from the cache (mmcv_build above).
if ! mmcv_ready; then
  pip install -q numpy
  read -r -a build <<< "$(mmcv_build)"
  flags=() envs=()
  for word in "${build[@]}"; do
    if [[ "$word" == --* ]]; then flags+=("$word"); else envs+=("$word"); fi
  done
  if has_gpu; then  # mmcv's own dependencies first (--no-deps below)
    pip install -q addict mmengine==0.10.7 opencv-python packaging pillow pyyaml yapf
  fi
  env "${envs[@]}" "$PY" -m pip --disable-pip-version-check install \
    --no-build-isolation "${flags[@]}" mmcv==2.1.0
  if ! mmcv_ready; then
    echo "[setup_env] mmcv 2.1.0 was built, but its ops do not import" \
      "$(has_gpu && echo "with CUDA (mmcv.ops.get_compiling_cuda_version():" \
      "$("$PY" -c "import mmcv.ops; print(mmcv.ops.get_compiling_cuda_version())" 2>&1 | tail -n1)).")" \
      "Check that nvcc matches your torch's CUDA (python -c 'import torch;" \
      "print(torch.version.cuda)') and see docs/install.md." >&2
    exit 1
  fi
fi
pip install -q -r "$ROOT/requirements.txt" -r "$ROOT/requirements-test.txt"
pip install -q --no-build-isolation -e "$ROOT"
echo "$want" > "$STAMP"
echo "[setup_env] environment ready in $(( $(date +%s) - start )) s at $VENV"
