"""train <inpath> <outpath>: adds TESTPKG_DELTA (default 1.0) to every
weight of the global model and reports TESTPKG_EXAMPLES (default 10)
examples. Fails (exit 3, a message on stderr) when TESTPKG_FAIL_TRAIN=1 or
the round's client_settings say {"fail": true}."""

import json
import os
import sys

import numpy as np


def main(inpath, outpath):
    settings = {}
    if os.path.exists(inpath + "-metadata"):
        with open(inpath + "-metadata") as f:
            settings = json.load(f)
    if os.environ.get("TESTPKG_FAIL_TRAIN") == "1" or settings.get("fail"):
        print("train.py: failing on purpose (test package)", file=sys.stderr)
        return 3
    delta = float(os.environ.get("TESTPKG_DELTA", "1.0"))
    with np.load(inpath) as z:
        weights = {k: z[k] + np.asarray(delta, dtype=z[k].dtype) for k in z}
    # A file object: np.savez would append ".npz" to a bare path.
    with open(outpath, "wb") as f:
        np.savez(f, **weights)
    with open(outpath + "-metadata", "w") as f:
        json.dump({"num_examples": int(os.environ.get("TESTPKG_EXAMPLES",
                                                      "10"))}, f)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], sys.argv[2]))
