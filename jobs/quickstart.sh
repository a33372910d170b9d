#!/usr/bin/env bash
# One command from a fresh Debian machine to a real run:
#   installs the dependencies, builds boltzflow (Release) in ./build, and runs
#   the main job on its built-in default on 2 MPI ranks.
# Usage: bash jobs/quickstart.sh [extra options for the main job]
set -euo pipefail
cd "$(dirname "$0")/.."
bash cmake/install-deps.sh
# Built for this machine's CPU (-march=native): the vector units carry the
# network's element-wise work. Drop BOLTZFLOW_NATIVE for a portable binary.
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release -DBOLTZFLOW_NATIVE=ON
cmake --build build -j"$(nproc)"
mpiflags=()
if mpirun --version 2>/dev/null | grep -q "Open MPI"; then
  mpiflags+=(--oversubscribe)
  [ "$(id -u)" -eq 0 ] && mpiflags+=(--allow-run-as-root)
fi
# The main job: a training run on the built-in default configuration (the
# deformation-trajectory CNF on the gmm4 mixture, 10^3 steps, about a minute
# on 2 cores), in a fresh run directory; extra arguments are passed on.
out="runs/quickstart-$(date +%Y%m%d-%H%M%S)"
mpirun "${mpiflags[@]}" -np 2 build/boltzflow train --out "$out" "$@"
