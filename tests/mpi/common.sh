# Sourced by the MPI tests (tests/mpi/*.sh): the mpirun command line, synthetic data.
#   MPIRUN=(...)   mpirun as root if need be, more ranks than cores, everything on
#                  loopback (nothing leaves the machine), no core binding (the machine
#                  is shared); add --mca btl self,tcp to force TCP (as between machines)
# Exits 77 (CTest: skipped) when mpirun is missing.
mpirun_bin=${KITNN_MPIRUN:-$(command -v mpirun || true)}
if [[ -z "$mpirun_bin" || ! -x "$mpirun_bin" ]]; then
  echo "SKIP: mpirun not found (Debian: openmpi-bin)"; exit 77
fi
MPIRUN=("$mpirun_bin" --allow-run-as-root --oversubscribe --bind-to none
        --mca btl_tcp_if_include lo --mca oob_tcp_if_include lo)
# kitnn_compare_models (tests/mpi/compare_models.cpp): from CTest, else beside mnist_train
compare=${KITNN_COMPARE:-$bin/kitnn_compare_models}
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# synthetic DIR N: N training + 100 test images (tests/synthetic_mnist.sh)
synthetic() { "$here/../synthetic_mnist.sh" "$@"; }
fail() { echo "FAIL: $*"; exit 1; }
