"""FEDn `validate` entry point: ./run.sh validate.py <inpath> <outpath>

Evaluates the model (npz) at <inpath> on the whole Fashion-MNIST test set
and on this client's training partition, and writes a JSON object with
test_accuracy, test_loss, training_accuracy and training_loss to <outpath>.
"""

import fmnist

PROG = "validate.py"


def main(argv):
    """Validate one model; see the module docstring."""
    inpath, outpath = fmnist.expect_paths(PROG, argv)
    env = fmnist.client_env()
    params = fmnist.load_model(inpath)
    x_train, y_train = fmnist.client_train_data(env)
    x_test, y_test = fmnist.test_data(env)
    training_loss, training_accuracy = fmnist.evaluate(params, x_train, y_train)
    test_loss, test_accuracy = fmnist.evaluate(params, x_test, y_test)
    metrics = {
        "test_accuracy": test_accuracy,
        "test_loss": test_loss,
        "training_accuracy": training_accuracy,
        "training_loss": training_loss,
    }
    fmnist.write_json(outpath, metrics)
    fmnist.log(PROG, "%s, model %s: test_accuracy %.4f, training_accuracy %.4f"
               % (env.describe(), fmnist.describe_model(params),
                  test_accuracy, training_accuracy))
    return 0


if __name__ == "__main__":
    fmnist.run_main(PROG, main)
