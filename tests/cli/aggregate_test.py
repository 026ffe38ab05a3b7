#!/usr/bin/env python3
"""`rondo aggregate` from outside: its FedAvg against numpy, its verdicts.

Each case writes FEDn-style npz models with numpy (STORED and DEFLATE),
runs the `rondo` binary ($RONDO_BIN) and checks what a user would check:
the output model, the accepted/rejected lines and the exit code. Exits 77
(ctest: skipped) when numpy is missing, rather than passing.
"""

import os
import subprocess
import sys

try:
    import numpy as np
except ImportError:
    print("skipped: numpy missing")
    sys.exit(77)

from cli_cases import check, run_cases  # noqa: E402

RONDO = os.environ.get("RONDO_BIN", "rondo")

# Tensors shaped like a small network's, float32, as FEDn's numpyhelper
# saves them: keys "0".."N-1".
SHAPES = [(30, 20), (20,), (20, 5), (5,)]


def model(seed, scale=1.0):
    rng = np.random.default_rng(seed)
    return [(rng.standard_normal(s) * scale).astype(np.float32)
            for s in SHAPES]


def save(path, tensors, deflate=False):
    arrays = {str(i): t for i, t in enumerate(tensors)}
    (np.savez_compressed if deflate else np.savez)(path, **arrays)


def load(path):
    with np.load(path) as z:
        return [z[str(i)] for i in range(len(z.files))]


def run(args):
    return subprocess.run([RONDO, "aggregate"] + args, capture_output=True,
                          text=True, timeout=120)


def fedavg_reference(updates):
    """Σ nᵢxᵢ / Σ nᵢ in float64, added in order, rounded once to float32:
    the arithmetic Rondo documents, so the result must match bit for bit."""
    total = sum(n for _, n in updates)
    out = []
    for i in range(len(SHAPES)):
        acc = np.zeros(SHAPES[i], dtype=np.float64)
        for tensors, n in updates:
            acc = acc + np.float64(n) * tensors[i].astype(np.float64)
        out.append((acc / total).astype(np.float32))
    return out


def case_fedavg_matches_numpy(d):
    base = model(0)
    save(f"{d}/base.npz", base)
    ups = [(model(1), 120), (model(2, 3.0), 80), (model(3, 0.1), 7)]
    args = ["-o", f"{d}/out.npz", f"{d}/base.npz"]
    for k, (t, n) in enumerate(ups):
        # The middle one DEFLATE, as FEDn's clients write them.
        save(f"{d}/u{k}.npz", t, deflate=(k == 1))
        args.append(f"{d}/u{k}.npz:{n}")
    r = run(args)
    check(r.returncode == 0, f"exit {r.returncode}: {r.stderr}")
    for k in range(3):
        check(f"accepted {d}/u{k}.npz" in r.stdout, r.stdout)
    check("fedavg of 3 of 3 updates" in r.stdout, r.stdout)
    got = load(f"{d}/out.npz")
    want = fedavg_reference(ups)
    for i, (g, w) in enumerate(zip(got, want)):
        check(g.dtype == np.float32 and g.shape == w.shape,
              f"tensor {i}: {g.dtype} {g.shape}")
        check(np.array_equal(g, w),
              f"tensor {i}: max |rondo - numpy| = {np.abs(g - w).max()}")


def case_bad_updates_do_not_count(d):
    base = model(0)
    save(f"{d}/base.npz", base)
    good1, good2 = model(1), model(2)
    wrong_shape = model(3)
    wrong_shape[2] = np.zeros((5, 20), dtype=np.float32)
    with_nan = model(4)
    with_nan[0][7, 3] = np.nan
    save(f"{d}/good1.npz", good1)
    save(f"{d}/good2.npz", good2)
    save(f"{d}/shape.npz", wrong_shape)
    save(f"{d}/nan.npz", with_nan)
    with open(f"{d}/junk.npz", "wb") as f:
        f.write(b"not a zip file at all")
    r = run(["-o", f"{d}/out.npz", f"{d}/base.npz", f"{d}/good1.npz:100",
             f"{d}/shape.npz:100", f"{d}/nan.npz:100", f"{d}/junk.npz:100",
             f"{d}/good2.npz:0", f"{d}/good2.npz:100"])
    check(r.returncode == 0, f"exit {r.returncode}: {r.stderr}")
    lines = r.stdout.splitlines()
    check(lines[0].startswith(f"accepted {d}/good1.npz"), lines[0])
    check(lines[1].startswith(f"rejected {d}/shape.npz") and "'2'" in lines[1]
          and "(5, 20)" in lines[1], lines[1])
    check(lines[2].startswith(f"rejected {d}/nan.npz") and "NaN" in lines[2]
          and "'0'" in lines[2], lines[2])
    check(lines[3].startswith(f"rejected {d}/junk.npz"), lines[3])
    check(lines[4].startswith(f"rejected {d}/good2.npz")
          and "num_examples" in lines[4], lines[4])
    check(lines[5].startswith(f"accepted {d}/good2.npz"), lines[5])
    check("fedavg of 2 of 6 updates" in r.stdout, r.stdout)
    # Exactly the mean of the two good ones: the rejected weights never count.
    got = load(f"{d}/out.npz")
    want = fedavg_reference([(good1, 100), (good2, 100)])
    for i, (g, w) in enumerate(zip(got, want)):
        check(np.array_equal(g, w), f"tensor {i} differs")


def case_no_update_accepted(d):
    save(f"{d}/base.npz", model(0))
    bad = model(1)
    bad[1][0] = np.inf
    save(f"{d}/bad.npz", bad)
    r = run(["-o", f"{d}/out.npz", f"{d}/base.npz", f"{d}/bad.npz:10"])
    check(r.returncode != 0, "exit 0 without a model")
    check("no model" in r.stderr and "no update was accepted" in r.stderr,
          r.stderr)
    check(not os.path.exists(f"{d}/out.npz"), "an output file was written")


CASES = {
    "fedavg_matches_numpy": case_fedavg_matches_numpy,
    "bad_updates_do_not_count": case_bad_updates_do_not_count,
    "no_update_accepted": case_no_update_accepted,
}


if __name__ == "__main__":
    run_cases(CASES, "rondo-aggregate-")
