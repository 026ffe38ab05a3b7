#!/bin/sh
# run.sh SCRIPT [ARGS...]: run SCRIPT (a .py file of this package) with the
# first Python interpreter that has numpy, among: $FMNIST_PYTHON (if set),
# /usr/bin/python3, python3 (first on PATH).  Arguments are passed through
# unchanged and relative paths stay relative to the caller's directory.

if [ $# -lt 1 ]; then
    echo "run.sh: usage: run.sh SCRIPT.py [ARGS...]" >&2
    exit 2
fi
script=$1
shift

here=$(CDPATH= cd -- "$(dirname -- "$0")" && pwd) || exit 2
case $script in
    /*) ;;
    *) script=$here/$script ;;
esac
if [ ! -f "$script" ]; then
    echo "run.sh: error: no such script: $script" >&2
    exit 2
fi

# find_spec only looks numpy up (much faster than importing it).
probe='import importlib.util, sys; sys.exit(importlib.util.find_spec("numpy") is None)'
tried=
for py in ${FMNIST_PYTHON:+"$FMNIST_PYTHON"} /usr/bin/python3 python3; do
    if ! command -v "$py" >/dev/null 2>&1; then
        tried="$tried
  $py: not found"
        continue
    fi
    if "$py" -c "$probe" >/dev/null 2>&1; then
        # One BLAS thread per process: clients run side by side on few cores.
        OPENBLAS_NUM_THREADS=${OPENBLAS_NUM_THREADS:-1}
        OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
        MKL_NUM_THREADS=${MKL_NUM_THREADS:-1}
        export OPENBLAS_NUM_THREADS OMP_NUM_THREADS MKL_NUM_THREADS
        exec "$py" "$script" "$@"
    fi
    tried="$tried
  $py ($(command -v "$py")): cannot import numpy"
done

echo "run.sh: error: no Python interpreter with numpy found; tried:$tried
Install numpy for the system Python (apt-get install python3-numpy) or point
FMNIST_PYTHON at an interpreter that has numpy." >&2
exit 127
