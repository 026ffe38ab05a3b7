"""FEDn's FedAvg in numpy, timed inside Python, for bench_aggregate.

Usage: fedn_increment_average.py RESULT_NPZ PATH:N [PATH:N ...]
Loads each update with np.load (as FEDn's numpyhelper does) and folds it in
with numpyhelper.increment_average: x + n * (x_k - x) / N_total_so_far.
Prints "numpy_s=<seconds>" (load + average, excluding Python start-up), then
optionally compares with Rondo's result: "max_abs_diff=<value>".
"""
import sys
import time

import numpy as np


def load(path):
    z = np.load(path)
    return [z[k] for k in z.files]


def increment_average(model, model_next, num_examples, total_examples):
    # fedn/utils/helpers/plugins/numpyhelper.py
    return [np.add(x, num_examples * (y - x) / total_examples)
            for x, y in zip(model, model_next)]


def main():
    rondo_result = sys.argv[1]
    updates = [(a.rsplit(":", 1)[0], float(a.rsplit(":", 1)[1]))
               for a in sys.argv[2:]]
    t0 = time.perf_counter()
    model, total = None, 0.0
    for path, n in updates:
        nxt = load(path)
        total += n
        model = nxt if model is None else increment_average(model, nxt, n,
                                                            total)
    elapsed = time.perf_counter() - t0
    print("numpy_s=%.6f" % elapsed)
    if rondo_result != "-":
        ours = load(rondo_result)
        diff = max(float(np.max(np.abs(a.astype(np.float64) -
                                       b.astype(np.float64))))
                   for a, b in zip(ours, model))
        print("max_abs_diff=%.3g" % diff)


if __name__ == "__main__":
    main()
