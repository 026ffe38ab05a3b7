"""Write the initial global model:

    ./run.sh seed.py <out.npz> [--model softmax|mlp] [--hidden 128] [--seed 0]

softmax: multinomial logistic regression (W 784x10, b 10), all zeros.
mlp: one ReLU hidden layer of --hidden units (default 128; a comma list such
as 256,128 gives several hidden layers), He-normal weights seeded by --seed.
The npz has keys "0".."N-1" in layer order (W1, b1, W2, b2, ...), float32.
"""

import argparse

import fmnist

PROG = "seed.py"


class _Parser(argparse.ArgumentParser):
    """argparse that reports errors through FmnistError (exit status 2)."""

    def error(self, message):
        raise fmnist.FmnistError(message)


def parse_hidden(text):
    """"128" -> (128,), "256,128" -> (256, 128); positive sizes only."""
    try:
        sizes = tuple(int(part, 10) for part in text.split(","))
    except ValueError:
        raise fmnist.FmnistError("--hidden %r is not a positive integer "
                                 "(or a comma-separated list of them)" % text)
    if not sizes or min(sizes) < 1:
        raise fmnist.FmnistError("--hidden %r: sizes must be >= 1" % text)
    return sizes


def main(argv):
    """Parse the command line and write the seed model."""
    parser = _Parser(prog=PROG, description="Write the initial global model.")
    parser.add_argument("out", help="output npz path (written as given)")
    parser.add_argument("--model", choices=fmnist.MODEL_KINDS,
                        default="softmax", help="model kind (default softmax)")
    parser.add_argument("--hidden", default=str(fmnist.DEFAULT_HIDDEN),
                        help="mlp hidden size(s) (default %d)"
                        % fmnist.DEFAULT_HIDDEN)
    parser.add_argument("--seed", type=int, default=fmnist.DEFAULT_SEED,
                        help="initialisation seed (default 0)")
    args = parser.parse_args(argv)
    if args.seed < 0:
        raise fmnist.FmnistError("--seed must be >= 0, got %d" % args.seed)
    params = fmnist.init_model(args.model, parse_hidden(args.hidden), args.seed)
    fmnist.save_model(args.out, params)
    fmnist.log(PROG, "wrote %s to %s" % (fmnist.describe_model(params),
                                         args.out))
    return 0


if __name__ == "__main__":
    fmnist.run_main(PROG, main)
