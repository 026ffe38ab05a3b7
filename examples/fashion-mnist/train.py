"""FEDn `train` entry point: ./run.sh train.py <inpath> <outpath>

Reads the global model (npz) at <inpath> and the round's client_settings
from <inpath>-metadata (missing or {} means defaults), runs `epochs` epochs
of minibatch SGD on this client's partition of Fashion-MNIST, and writes the
updated model to <outpath> (same keys, shapes and dtypes as the input) and
JSON metadata ({"num_examples": N, ...}) to <outpath>-metadata.
"""

import time

import fmnist

PROG = "train.py"


def main(argv):
    """Train one round; see the module docstring."""
    inpath, outpath = fmnist.expect_paths(PROG, argv)
    started = time.monotonic()
    env = fmnist.client_env()
    params = fmnist.load_model(inpath)
    kind = fmnist.model_kind(params)
    raw_settings = fmnist.read_json_object(inpath + "-metadata")
    settings = fmnist.parse_train_settings(raw_settings, kind, PROG)
    x, y = fmnist.client_train_data(env)
    fmnist.log(PROG, "%s, %d examples, model %s, settings %s" % (
        env.describe(), y.shape[0], fmnist.describe_model(params),
        settings.as_dict()))

    rng = fmnist.shuffle_rng(settings, env, params)
    trained = fmnist.sgd_train(params, x, y, settings, rng)
    loss, accuracy = fmnist.evaluate(trained, x, y)

    fmnist.save_model(outpath, [t.astype(p.dtype, copy=False)
                                for t, p in zip(trained, params)])
    metadata = {
        "num_examples": int(y.shape[0]),
        "training_loss": loss,
        "training_accuracy": accuracy,
        "model": kind,
        "client_index": env.client_index,
        "num_clients": env.num_clients,
        "partition": env.partition,
        "seconds": round(time.monotonic() - started, 3),
    }
    metadata.update(settings.as_dict())
    fmnist.write_json(outpath + "-metadata", metadata)
    fmnist.log(PROG, "done: training_loss %.4f, training_accuracy %.4f, %.2f s"
               % (loss, accuracy, metadata["seconds"]))
    return 0


if __name__ == "__main__":
    fmnist.run_main(PROG, main)
