#!/usr/bin/env bash
# The prepared GPU check (one H100/H200, about 8 minutes): NumPy = CuPy tests, then MD speed.
#
#   here (once, with network):  bash scripts/gpu_check.sh --fetch-wheels   # ase wheel into .whl/ (ignored)
#   on the device machine:      bash scripts/gpu_check.sh                   # results under $OUT (or ./gpu_check/)
#
# 1. the GPU tests: every test marked `gpu` (neighbour list, scatter kernel, Morse / MTP / MaxVol on
#    CuPy against NumPy to 1e-10) and tests/test_mtp_model.py::test_cupy_matches_numpy (MLIP's cubic
#    level 16 and the 3-species level 10; the fused kernel with its run-time check), the NEP and
#    backend-provenance tests, with MULTISCALE_BACKEND=cupy; JUnit XML and the log to the output folder;
# 2. benchmarks/md_speed.py on CuPy at 1e3, 1e4, 1e5, 1e6 atoms for MTP levels 10 and 16 (float64),
#    each size skipped when the previous one projects past 90 s; one JSON file;
# 3. the same at 1e3 and 1e4 atoms, level 10, with the neighbour list checked every step and every 20
#    steps (md.neighbor_check_every; its rebuilds at the checks by the padded builder, no read): what one
#    host read per step costs on the device.
# The machine needs CuPy, numpy, scipy, h5py, pytest (its image has them) and ase (carried as a wheel).
set -uo pipefail
cd "$(dirname "$0")/.."

if [ "${1:-}" = "--fetch-wheels" ]; then
  grep -qx '/.whl/' .git/info/exclude 2>/dev/null || echo '/.whl/' >> .git/info/exclude
  python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux2014_x86_64 -d .whl "ase>=3.22"
  ls .whl
  exit 0
fi

OUT_DIR="${OUT:-$PWD/gpu_check}"
mkdir -p "$OUT_DIR"
export PYTHONUNBUFFERED=1 OPENBLAS_NUM_THREADS=1 OMP_NUM_THREADS=1 MPLBACKEND=Agg
if ! python3 -c "import ase" 2>/dev/null; then
  if ls .whl/*.whl >/dev/null 2>&1; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site .whl/*.whl || exit 1
    export PYTHONPATH="/tmp/site${PYTHONPATH:+:$PYTHONPATH}"
  else
    echo "ase is missing: run 'bash scripts/gpu_check.sh --fetch-wheels' where pip works and carry .whl" >&2
    exit 1
  fi
fi
export PYTHONPATH="$PWD:$PWD/tests${PYTHONPATH:+:$PYTHONPATH}"
python3 -c "import cupy; print('GPU:', cupy.cuda.runtime.getDeviceProperties(0)['name'].decode(), 'CuPy', cupy.__version__)" \
  | tee "$OUT_DIR/device.txt"

status=0
MULTISCALE_BACKEND=cupy timeout 300 python3 -m pytest -q -p no:cacheprovider --junitxml="$OUT_DIR/gpu_tests.xml" \
  -m "gpu or not slow" tests/test_md_kernels.py tests/test_maxvol_gpu.py tests/test_mtp_fused.py \
  "tests/test_mtp_model.py::test_cupy_matches_numpy" tests/test_nep.py tests/test_backend.py tests/test_md_io.py \
  2>&1 | tee "$OUT_DIR/gpu_tests.log" || status=1

timeout 240 python3 benchmarks/md_speed.py --backend cupy --sizes 1000,10000,100000,1000000 --levels 10,16 \
  --max-seconds 90 --json "$OUT_DIR/md_speed.json" 2>&1 | tee "$OUT_DIR/md_speed.log" || status=1

timeout 60 python3 benchmarks/md_speed.py --backend cupy --sizes 1000,10000 --levels 10 --nep none \
  --check-every 1,20 --json "$OUT_DIR/md_speed_checks.json" 2>&1 | tee "$OUT_DIR/md_speed_checks.log" || status=1
exit $status
