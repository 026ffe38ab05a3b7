#!/bin/sh
# run.sh SCRIPT [ARGS...]: runs SCRIPT (a .py file of this package) with the
# first Python that has numpy among $RONDO_TEST_PYTHON (if set),
# /usr/bin/python3 and python3 (first on PATH).
here=$(CDPATH= cd -- "$(dirname -- "$0")" && pwd) || exit 2
script=$here/$1
shift
probe='import importlib.util, sys; sys.exit(importlib.util.find_spec("numpy") is None)'
for py in ${RONDO_TEST_PYTHON:+"$RONDO_TEST_PYTHON"} /usr/bin/python3 python3; do
    if command -v "$py" >/dev/null 2>&1 && "$py" -c "$probe" 2>/dev/null; then
        OPENBLAS_NUM_THREADS=1 exec "$py" "$script" "$@"
    fi
done
echo "run.sh: no Python interpreter with numpy found" >&2
exit 127
