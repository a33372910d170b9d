#!/usr/bin/env bash
# Installs boltzflow's build and test dependencies from Debian (bookworm).
# Idempotent: packages already present are left alone. Needs root (or sudo).
set -euo pipefail

packages=(
  build-essential cmake
  libtrilinos-kokkos-dev libtrilinos-kokkos-kernels-dev   # Kokkos 3.4 (Serial) + Kokkos Kernels
  libopenmpi-dev openmpi-bin                              # MPI
  libhdf5-openmpi-dev hdf5-tools                          # HDF5 C API, h5dump
  libeigen3-dev libboost-program-options-dev libgtest-dev
  nlohmann-json3-dev                                      # JSON (metrics rows, --json reports)
  libopenblas0-pthread libopenblas-dev                    # BLAS behind KokkosBlas::gemm
  librandom123-dev                                        # test oracle for Philox
  slurm-wlm munge                                         # job scripts, tested on a local single-node SLURM
  python3                                                 # tests read JSON with a standard parser
  python3-h5py python3-matplotlib                         # jobs/plot.py (tested in CI)
)

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
  echo "install-deps: all ${#packages[@]} packages present"
  exit 0
fi
SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
echo "install-deps: installing ${missing[*]}"
$SUDO apt-get update
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y --no-install-recommends "${missing[@]}"
