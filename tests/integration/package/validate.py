"""validate <inpath> <outpath>: writes the mean of every weight as
"test_accuracy" and the number of weights as "test_loss", so a test can
tell which model was validated."""

import json
import sys

import numpy as np


def main(inpath, outpath):
    with np.load(inpath) as z:
        values = np.concatenate([z[k].ravel() for k in z])
    with open(outpath, "w") as f:
        json.dump({"test_accuracy": float(values.mean()),
                   "test_loss": float(values.size)}, f)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], sys.argv[2]))
