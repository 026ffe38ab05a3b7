"""Entry points of the WAN bench's compute package (Debian's python3-numpy).

  wan_task.py train <in.npz> <out.npz>     model + WAN_DELTA; metadata
                                           {"num_examples": WAN_EXAMPLES}
  wan_task.py validate <in.npz> <out.json> {"test_accuracy": mean,
                                            "test_loss": 0}
"""

import json
import os
import sys

import numpy as np


def train(inpath, outpath):
    delta = np.float32(os.environ.get("WAN_DELTA", "1"))
    with np.load(inpath, allow_pickle=False) as model:
        # np.savez names each member "<key>.npy", as the model came.
        arrays = {key: model[key] + delta for key in model.files}
    with open(outpath, "wb") as f:
        np.savez(f, **arrays)
    with open(outpath + "-metadata", "w") as f:
        json.dump({"num_examples": int(os.environ.get("WAN_EXAMPLES", "10"))},
                  f)


def validate(inpath, outpath):
    with np.load(inpath, allow_pickle=False) as model:
        values = [model[key].astype(np.float64) for key in model.files]
    total = sum(float(v.sum()) for v in values)
    count = sum(v.size for v in values)
    with open(outpath, "w") as f:
        json.dump({"test_accuracy": total / count, "test_loss": 0.0}, f)


if __name__ == "__main__":
    kind, inpath, outpath = sys.argv[1:4]
    {"train": train, "validate": validate}[kind](inpath, outpath)
