#!/usr/bin/env python3
"""`rondo store` from outside: only models go in, and what goes in comes
back out bit for bit. Uses the `rondo` binary ($RONDO_BIN); exits 77
(ctest: skipped) when numpy is missing."""

import os
import subprocess
import sys
import time

try:
    import numpy as np
except ImportError:
    print("skipped: numpy missing")
    sys.exit(77)

from cli_cases import check, run_cases  # noqa: E402

RONDO = os.environ.get("RONDO_BIN", "rondo")


def store(db, *args):
    return subprocess.run([RONDO, "store", "--db", db] + list(args),
                          capture_output=True, text=True, timeout=60)


def case_import_export_roundtrip(d):
    db = f"{d}/db"
    np.savez(f"{d}/m.npz", **{"0": np.arange(12, dtype=np.float32)})
    with open(f"{d}/notes.txt", "w") as f:
        f.write("hello")
    # `store` never creates a database: a combiner run makes one.
    p = subprocess.Popen([RONDO, "combiner", "--db", db, "--port", "0",
                          "--port-file", f"{d}/port"],
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    for _ in range(300):
        if os.path.exists(f"{d}/port"):
            break
        time.sleep(0.1)
    p.terminate()
    check(p.wait(timeout=30) == 0, "the combiner did not exit cleanly")
    r = store(db, "import", "bad", f"{d}/notes.txt")
    check(r.returncode == 1, f"non-model import exit {r.returncode}")
    check("notes.txt is not a model" in r.stderr
          and "not a ZIP archive" in r.stderr, r.stderr)
    check("bad" not in store(db, "list").stdout, "the refused file is listed")
    np.savez(f"{d}/empty.npz")
    r = store(db, "import", "empty", f"{d}/empty.npz")
    check(r.returncode == 1 and "it has no tensors" in r.stderr, r.stderr)
    r = store(db, "import", "m1", f"{d}/m.npz")
    check(r.returncode == 0, r.stderr)
    check(r.stdout.startswith("m1\t"), r.stdout)
    r = store(db, "export", "m1", f"{d}/back.npz")
    check(r.returncode == 0 and f"wrote {d}/back.npz" in r.stdout,
          r.stdout + r.stderr)
    with open(f"{d}/m.npz", "rb") as a, open(f"{d}/back.npz", "rb") as b:
        check(a.read() == b.read(), "exported bytes differ")
    r = store(db, "verify")
    check(r.returncode == 0 and "m1" in r.stdout, r.stdout + r.stderr)
    r = store(db, "delete", "m1")
    check(r.returncode == 0 and "deleted m1" in r.stdout, r.stdout + r.stderr)
    check("m1" not in store(db, "list").stdout, "m1 still listed")
    r = store(f"{d}/nowhere", "list")
    check(r.returncode == 1 and "no database at" in r.stderr, r.stderr)


CASES = {"import_export_roundtrip": case_import_export_roundtrip}


if __name__ == "__main__":
    run_cases(CASES, "rondo-store-")
