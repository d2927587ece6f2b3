#!/usr/bin/env bash
# Idempotent set-up of the run-time environment (see ../shared/ENVIRONMENT.md):
#   1. Debian's FEniCSx stack (dolfinx 0.5.2, PETSc, petsc4py, mpi4py, h5py) via apt;
#   2. a venv in .venv made from Debian's python with --system-site-packages;
#   3. this package and its extras installed with pip under the numpy/scipy
#      constraints that keep Debian's compiled modules working (numpy < 2).
# A second run with nothing to do only checks stamps and returns in seconds.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
VENV="$ROOT/.venv"
EXTRAS="${BOOTSTRAP_EXTRAS:-dev}"

APT_PACKAGES="python3-dolfinx python3-mpi4py python3-petsc4py python3-h5py python3-meshio
  python3-yaml python3-venv python3-pip libopenblas0-pthread libglu1-mesa libxcursor1
  libxft2 libxinerama1 openmpi-bin"

say() { printf '[bootstrap] %s\n' "$*"; }

have_system_stack() {
  /usr/bin/python3 -c "import dolfinx, petsc4py, mpi4py, h5py, yaml, meshio" >/dev/null 2>&1
}

if ! have_system_stack; then
  if [ -r /etc/debian_version ] && [ "$(id -u)" = 0 ]; then
    say "installing Debian's FEniCSx stack with apt (about 1.5 minutes)"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    # shellcheck disable=SC2086
    apt-get install -y -qq --no-install-recommends $APT_PACKAGES >/dev/null
  else
    cat >&2 <<MSG
[bootstrap] Debian's FEniCSx stack is missing and cannot be installed here
            (this needs Debian 12 and root). Install it yourself, then rerun:
  on Debian/Ubuntu as root:
    apt-get install --no-install-recommends $(echo $APT_PACKAGES)
  anywhere else, with conda (see README, 'Other systems'):
    conda env create -f environment.yml && conda activate multiscale
    pip install -e '.[dev]' --no-deps
MSG
    exit 1
  fi
fi

if [ ! -x "$VENV/bin/python" ]; then
  say "creating $VENV from Debian's /usr/bin/python3 (--system-site-packages)"
  /usr/bin/python3 -m venv --system-site-packages "$VENV"
fi

# numpy 2 breaks every module Debian compiled against numpy 1 (petsc4py, dolfinx, h5py, scipy).
printf 'numpy==1.24.2\nscipy==1.10.1\n' > "$VENV/constraints.txt"

STAMP="$VENV/.installed-$EXTRAS"
HASH=$(cat pyproject.toml scripts/bootstrap.sh | sha256sum | cut -c1-16)
if [ ! -f "$STAMP" ] || [ "$(cat "$STAMP")" != "$HASH" ]; then
  say "installing the package and extras [$EXTRAS] with pip"
  PIP_CONSTRAINT="$VENV/constraints.txt" "$VENV/bin/pip" install -q --disable-pip-version-check \
    -e ".[$EXTRAS]"
  echo "$HASH" > "$STAMP"
fi
say "environment ready: $VENV"
