#!/usr/bin/env bash
# The GPU checks of issue 7 in one call, for a session with a lent GPU (H100/H200; its image has
# CUDA, PyTorch, CuPy, pybind11, scikit-build-core, cmake and ninja, and no registry access).
#   1. builds and installs thermossl with the CUDA kernels (THERMOSSL_CUDA=ON), timed;
#   2. runs the kernel tests on torch CUDA and CuPy (GPU parity), tests/test_cuda.py (zero-copy,
#      streams, CuPy in/out) and the CPU suite;
#   3. runs the CUDA benchmarks (bench/compare_cuda.py), quick then full sizes.
# Everything goes to $OUT (default ./cuda-check-out): build.log, pytest-*.txt, bench-*.json/.txt.
#   bash bench/cuda_device_check.sh            # full run (~5-8 minutes on an H100)
#   QUICK=1 bash bench/cuda_device_check.sh    # skip the full-size benchmark
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-$PWD/cuda-check-out}
mkdir -p "$OUT"
PYTHON=${PYTHON:-python3}
{ nvidia-smi; nvcc --version; "$PYTHON" -c "import torch; print('torch', torch.__version__, torch.version.cuda)"; } \
  > "$OUT/env.txt" 2>&1

start=$(date +%s)
CMAKE_ARGS="-DTHERMOSSL_CUDA=ON ${CMAKE_ARGS:-}" "$PYTHON" -m pip install --no-build-isolation --no-deps -v . \
  > "$OUT/build.log" 2>&1 || { echo "build failed: see $OUT/build.log"; tail -40 "$OUT/build.log"; exit 1; }
echo "build: $(( $(date +%s) - start )) s" | tee "$OUT/build-time.txt"

(cd /tmp && "$PYTHON" -c "import thermossl.cuda as c; print('is_available', c.is_available(), 'devices', c.device_count())") \
  | tee "$OUT/available.txt"
# GPU parity: the kernel tests' torch-cuda and cupy parameters (the `backend` fixture), then what
# is device-specific (zero-copy, streams, CuPy in/out).
"$PYTHON" -m pytest -q -rs tests/test_gibbs.py tests/test_special.py tests/test_balancing.py tests/test_thermo.py \
  -k "torch-cuda or cupy" 2>&1 | tee "$OUT/pytest-parity.txt" | tail -30
"$PYTHON" -m pytest -q -rs tests/test_cuda.py tests/test_cuda_available.py tests/test_backends.py 2>&1 \
  | tee "$OUT/pytest-cuda.txt" | tail -30
"$PYTHON" -m pytest -q -x --ignore=tests/test_install.py --ignore=tests/test_readme.py 2>&1 \
  | tee "$OUT/pytest-all.txt" | tail -5
"$PYTHON" bench/compare_cuda.py --quick --json "$OUT/bench-quick.json" 2>&1 | tee "$OUT/bench-quick.txt"
if [ -z "${QUICK:-}" ]; then
  "$PYTHON" bench/compare_cuda.py --json "$OUT/bench-full.json" 2>&1 | tee "$OUT/bench-full.txt"
fi
# Profiler evidence of no host-device copy of the matrix (only O(N + K) transfers expected).
if command -v nsys >/dev/null; then
  nsys profile -o "$OUT/gibbs" --force-overwrite true --stats=true "$PYTHON" -c "
import torch, thermossl
E = torch.randn(65536, 3000, device='cuda')
for _ in range(3): thermossl.gibbs(E, 0.1); thermossl.sinkhorn(E, 0.05, n_iter=3)
torch.cuda.synchronize()" > "$OUT/nsys-stats.txt" 2>&1 || true
  rm -f "$OUT"/gibbs.nsys-rep "$OUT"/gibbs.sqlite
fi
echo "done: $OUT"
