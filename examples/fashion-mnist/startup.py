"""FEDn `startup` entry point: ./run.sh startup.py

Run once when a client starts.  Checks the FMNIST_* environment, decodes the
data set into the cache (so the first train/validate calls are fast) and
prints the size of this client's partition.  Extra arguments are ignored.
"""

import fmnist

PROG = "startup.py"


def main(argv):
    """Warm the cache and check this client's partition."""
    del argv  # FEDn passes none; tolerate any.
    env = fmnist.client_env()
    _, y_train = fmnist.client_train_data(env)
    _, y_test = fmnist.test_data(env)
    counts = [int((y_train == c).sum()) for c in range(fmnist.NUM_CLASSES)]
    fmnist.log(PROG, "%s: %d training examples (per class %s), %d test "
               "examples; data %s, cache %s"
               % (env.describe(), y_train.shape[0], counts, y_test.shape[0],
                  env.data_dir, fmnist.cache_dir()))
    return 0


if __name__ == "__main__":
    fmnist.run_main(PROG, main)
