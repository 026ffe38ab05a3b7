"""Shared code of the Fashion-MNIST compute package.

Everything the entry points (``train.py``, ``validate.py``, ``seed.py``,
``startup.py``) and ``simulate.py`` have in common lives here:

* errors and the ``run_main`` wrapper that turns them into a clear message on
  stderr and a non-zero exit status;
* the client's environment (data directory, client index, number of clients,
  partition mode);
* data loading: gzip IDX parsing with ``numpy.frombuffer`` and a cache of the
  decoded arrays as ``.npy`` files (written with an atomic rename, so several
  clients may start at once);
* partitioning of the training set (``iid``, ``label-skew``, ``dirichlet``);
* the numpy model (softmax regression or a ReLU MLP), its loss, gradients,
  minibatch SGD and evaluation;
* model and JSON input/output (FEDn "numpyhelper" npz: keys "0".."N-1").
"""

import gzip
import json
import math
import os
import struct
import sys
import tempfile
import zlib
import zipfile

try:
    import numpy as np
except ImportError:  # pragma: no cover - run.sh normally prevents this
    sys.stderr.write(
        "fmnist: error: the interpreter %s cannot import numpy; run the entry "
        "points through ./run.sh, set FMNIST_PYTHON, or "
        "apt-get install python3-numpy\n" % sys.executable)
    sys.exit(3)

# --------------------------------------------------------------------------
# Constants
# --------------------------------------------------------------------------

DEFAULT_DATA_DIR = "/usr/share/datasets/fashion-mnist"
NUM_FEATURES = 28 * 28
NUM_CLASSES = 10
NUM_TRAIN = 60000
NUM_TEST = 10000

# IDX files of each split: (images, labels), looked up with and without ".gz".
SPLIT_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
IDX_MAGIC_IMAGES = 0x00000803  # unsigned byte, 3 dimensions
IDX_MAGIC_LABELS = 0x00000801  # unsigned byte, 1 dimension

# Inputs are pixel/255 (in [0, 1]) standardised with these fixed constants
# (mean and standard deviation of all Fashion-MNIST training pixels).
PIXEL_MEAN = 0.2860
PIXEL_STD = 0.3530

PARTITION_MODES = ("iid", "label-skew", "dirichlet")
PARTITION_SEED = 20240601          # fixed: partitions depend only on n and mode
DEFAULT_DIRICHLET_ALPHA = 0.5
DIRICHLET_MIN_SIZE = 10            # resample until every client has this many
DIRICHLET_MAX_TRIES = 100

MODEL_KINDS = ("softmax", "mlp")
DEFAULT_HIDDEN = 128
EVAL_BATCH = 4096

# Training defaults (client_settings keys); "lr" depends on the model kind.
DEFAULT_EPOCHS = 1
DEFAULT_BATCH_SIZE = 32
DEFAULT_LR = {"softmax": 0.1, "mlp": 0.1}
DEFAULT_MOMENTUM = 0.0
DEFAULT_WEIGHT_DECAY = 0.0
DEFAULT_AVERAGE = 0.5
DEFAULT_SEED = 0


class FmnistError(Exception):
    """An error caused by bad input (files, environment, settings).

    ``run_main`` prints it as ``<prog>: error: <message>`` and exits with
    status 2, without a traceback.
    """


def run_main(prog, main, argv=None):
    """Run ``main(argv)`` and exit; report ``FmnistError`` cleanly on stderr."""
    if argv is None:
        argv = sys.argv[1:]
    try:
        status = main(argv)
    except FmnistError as exc:
        sys.stderr.write("%s: error: %s\n" % (prog, exc))
        sys.exit(2)
    except KeyboardInterrupt:
        sys.stderr.write("%s: interrupted\n" % prog)
        sys.exit(130)
    sys.exit(status or 0)


def log(prog, message):
    """Print a progress line on stderr (stdout is left to the caller)."""
    sys.stderr.write("%s: %s\n" % (prog, message))
    sys.stderr.flush()


# --------------------------------------------------------------------------
# Client environment
# --------------------------------------------------------------------------

class ClientEnv:
    """Where this client's data comes from, as given by FMNIST_* variables."""

    def __init__(self, data_dir, client_index, num_clients, partition, alpha):
        self.data_dir = data_dir
        self.client_index = client_index
        self.num_clients = num_clients
        self.partition = partition
        self.alpha = alpha

    def describe(self):
        """A short human-readable description (for logs)."""
        text = "client %d of %d, partition %s" % (
            self.client_index, self.num_clients, self.partition)
        if self.partition == "dirichlet":
            text += " (alpha %g)" % self.alpha
        return text


def _env_int(environ, name, default):
    raw = environ.get(name, "").strip()
    if raw == "":
        return default
    try:
        return int(raw, 10)
    except ValueError:
        raise FmnistError("%s=%r is not an integer" % (name, raw))


def client_env(environ=None):
    """Read and check FMNIST_DATA_DIR, FMNIST_CLIENT_INDEX,
    FMNIST_NUM_CLIENTS, FMNIST_PARTITION and FMNIST_ALPHA."""
    if environ is None:
        environ = os.environ
    data_dir = environ.get("FMNIST_DATA_DIR", "") or DEFAULT_DATA_DIR
    num_clients = _env_int(environ, "FMNIST_NUM_CLIENTS", 1)
    index = _env_int(environ, "FMNIST_CLIENT_INDEX", 0)
    if not 1 <= num_clients <= NUM_TRAIN:
        raise FmnistError("FMNIST_NUM_CLIENTS=%d must be between 1 and %d"
                          % (num_clients, NUM_TRAIN))
    if not 0 <= index < num_clients:
        raise FmnistError(
            "FMNIST_CLIENT_INDEX=%d must be in 0..%d (it is 0-based and "
            "FMNIST_NUM_CLIENTS=%d)" % (index, num_clients - 1, num_clients))
    partition = (environ.get("FMNIST_PARTITION", "") or "iid").strip().lower()
    if partition not in PARTITION_MODES:
        raise FmnistError("FMNIST_PARTITION=%r is not one of %s"
                          % (partition, ", ".join(PARTITION_MODES)))
    raw_alpha = environ.get("FMNIST_ALPHA", "").strip()
    alpha = DEFAULT_DIRICHLET_ALPHA
    if raw_alpha:
        try:
            alpha = float(raw_alpha)
        except ValueError:
            raise FmnistError("FMNIST_ALPHA=%r is not a number" % raw_alpha)
        if not (math.isfinite(alpha) and alpha > 0):
            raise FmnistError("FMNIST_ALPHA=%r must be a positive number"
                              % raw_alpha)
    return ClientEnv(data_dir, index, num_clients, partition, alpha)


# --------------------------------------------------------------------------
# Data loading (IDX + .npy cache)
# --------------------------------------------------------------------------

def cache_dir(environ=None):
    """The directory of decoded arrays: $FMNIST_CACHE_DIR, else
    ${XDG_CACHE_HOME:-$HOME/.cache}/rondo-fmnist."""
    if environ is None:
        environ = os.environ
    explicit = environ.get("FMNIST_CACHE_DIR", "")
    if explicit:
        return explicit
    base = environ.get("XDG_CACHE_HOME", "") or os.path.join(
        os.path.expanduser("~"), ".cache")
    return os.path.join(base, "rondo-fmnist")


def _find_idx_file(data_dir, name):
    """Return the path of ``name`` (.gz or plain) in data_dir, or raise."""
    for candidate in (name + ".gz", name):
        path = os.path.join(data_dir, candidate)
        if os.path.isfile(path):
            return path
    if not os.path.isdir(data_dir):
        raise FmnistError(
            "data directory %s does not exist (set FMNIST_DATA_DIR, or "
            "apt-get install dataset-fashion-mnist)" % data_dir)
    raise FmnistError("data directory %s has no %s(.gz)" % (data_dir, name))


def parse_idx(path, magic):
    """Decode an IDX file (gzip or plain) of unsigned bytes.

    Returns a uint8 array shaped as the file's dimensions.
    """
    try:
        with open(path, "rb") as raw:
            data = raw.read()
        if data[:2] == b"\x1f\x8b":
            data = gzip.decompress(data)
    except (OSError, EOFError, zlib.error) as exc:
        raise FmnistError("cannot read %s: %s" % (path, exc))
    ndim = magic & 0xFF
    header = 4 + 4 * ndim
    if len(data) < header:
        raise FmnistError("%s is not an IDX file (too short)" % path)
    (found,) = struct.unpack(">I", data[:4])
    if found != magic:
        raise FmnistError("%s: IDX magic 0x%08x, expected 0x%08x"
                          % (path, found, magic))
    shape = struct.unpack(">%dI" % ndim, data[4:header])
    count = int(np.prod(shape))
    if len(data) - header != count:
        raise FmnistError("%s: %d data bytes for shape %s"
                          % (path, len(data) - header, shape))
    return np.frombuffer(data, dtype=np.uint8, offset=header).reshape(shape)


def _atomic_save_npy(path, array):
    """Write ``array`` to ``path`` via a temporary file and os.replace."""
    directory = os.path.dirname(path)
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=".npy", dir=directory)
    try:
        with os.fdopen(fd, "wb") as handle:
            np.save(handle, array)
        os.chmod(tmp, 0o644)  # mkstemp creates 0600; the cache is shareable
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def _load_idx_cached(path, magic):
    """Decode ``path``, using (and filling) the .npy cache when possible.

    The cache file name includes the source's size and mtime, so a changed
    data set is decoded again.  Cache problems are never fatal.
    """
    stat = os.stat(path)
    name = "%s-%d-%d.npy" % (os.path.basename(path).replace(".gz", ""),
                             stat.st_size, stat.st_mtime_ns)
    directory = cache_dir()
    cached = os.path.join(directory, name)
    try:
        array = np.load(cached, mmap_mode="r", allow_pickle=False)
        if array.dtype == np.uint8:
            return array
    except (OSError, ValueError):
        pass
    array = parse_idx(path, magic)
    try:
        os.makedirs(directory, exist_ok=True)
        _atomic_save_npy(cached, array)
    except OSError as exc:
        log("fmnist", "warning: cannot cache decoded data in %s: %s"
            % (directory, exc))
    return array


def load_split(data_dir, split):
    """Load a split ("train" or "test").

    Returns ``(images, labels)``: images uint8 of shape (N, 784) (possibly a
    read-only memory map), labels uint8 of shape (N,).
    """
    images_name, labels_name = SPLIT_FILES[split]
    images = _load_idx_cached(_find_idx_file(data_dir, images_name),
                              IDX_MAGIC_IMAGES)
    labels = _load_idx_cached(_find_idx_file(data_dir, labels_name),
                              IDX_MAGIC_LABELS)
    if images.ndim != 3 or images.shape[1:] != (28, 28):
        raise FmnistError("%s images of %s have shape %s, expected (N, 28, 28)"
                          % (split, data_dir, images.shape))
    if labels.shape != (images.shape[0],):
        raise FmnistError("%s split of %s: %d images but %d labels"
                          % (split, data_dir, images.shape[0], labels.size))
    if labels.size and int(labels.max()) >= NUM_CLASSES:
        raise FmnistError("%s labels of %s are not in 0..9" % (split, data_dir))
    return images.reshape(images.shape[0], NUM_FEATURES), labels


def preprocess(images):
    """uint8 pixels (N, 784) -> standardised float32 features."""
    x = np.asarray(images, dtype=np.float32)
    x *= np.float32(1.0 / (255.0 * PIXEL_STD))
    x -= np.float32(PIXEL_MEAN / PIXEL_STD)
    return x


def client_train_data(env):
    """This client's partition of the training set: (x float32, y int64)."""
    images, labels = load_split(env.data_dir, "train")
    index = partition_indices(np.asarray(labels), env.num_clients,
                              env.partition, env.alpha)[env.client_index]
    if index.size == 0:
        raise FmnistError("%s: the partition is empty" % env.describe())
    index = np.sort(index)  # sequential reads from the memory map
    return preprocess(images[index]), labels[index].astype(np.int64)


def test_data(env):
    """The whole 10 000-image test set: (x float32, y int64)."""
    images, labels = load_split(env.data_dir, "test")
    return preprocess(images), np.asarray(labels, dtype=np.int64)


# --------------------------------------------------------------------------
# Partitioning
# --------------------------------------------------------------------------

def partition_indices(labels, num_clients, mode, alpha=DEFAULT_DIRICHLET_ALPHA):
    """Split ``range(len(labels))`` into ``num_clients`` disjoint parts.

    The parts cover every index and depend only on the labels, the number of
    clients, the mode and (for dirichlet) alpha:

    * ``iid``: a seeded shuffle cut into near-equal parts;
    * ``label-skew``: indices sorted by label, cut into 2n equal shards, each
      client gets 2 random shards (so mostly 2 classes);
    * ``dirichlet``: for every class, the proportions given to the clients
      are drawn from Dirichlet(alpha); resampled (up to a bound) until every
      client has at least a few examples.
    """
    labels = np.asarray(labels)
    count = labels.shape[0]
    rng = np.random.default_rng([PARTITION_SEED, num_clients,
                                 PARTITION_MODES.index(mode)])
    if mode == "iid":
        return np.array_split(rng.permutation(count), num_clients)
    if mode == "label-skew":
        # Shuffle first so each shard is a random subset of its label run.
        shuffled = rng.permutation(count)
        by_label = shuffled[np.argsort(labels[shuffled], kind="stable")]
        shards = np.array_split(by_label, 2 * num_clients)
        order = rng.permutation(2 * num_clients)
        return [np.concatenate([shards[order[2 * i]], shards[order[2 * i + 1]]])
                for i in range(num_clients)]
    if mode == "dirichlet":
        per_class = [rng.permutation(np.flatnonzero(labels == c))
                     for c in range(NUM_CLASSES)]
        minimum = min(DIRICHLET_MIN_SIZE, count // num_clients)
        for _ in range(DIRICHLET_MAX_TRIES):
            parts = [[] for _ in range(num_clients)]
            for members in per_class:
                shares = rng.dirichlet(np.full(num_clients, alpha))
                cuts = (np.cumsum(shares)[:-1] * members.size).astype(np.int64)
                for client, piece in enumerate(np.split(members, cuts)):
                    parts[client].append(piece)
            parts = [np.concatenate(p) for p in parts]
            if min(p.size for p in parts) >= minimum:
                break
        return parts
    raise FmnistError("unknown partition mode %r (expected one of %s)"
                      % (mode, ", ".join(PARTITION_MODES)))


# --------------------------------------------------------------------------
# Model
# --------------------------------------------------------------------------
#
# A model is a list of float arrays [W1, b1, W2, b2, ...]; Wk has shape
# (inputs, outputs), so layer k computes x @ Wk + bk; ReLU between layers.
# Two arrays (784x10, 10) is softmax regression; four is the one-hidden-layer
# MLP.  Deeper chains are accepted too.

def model_kind(params):
    """"softmax" for a single layer, else "mlp"."""
    return "softmax" if len(params) == 2 else "mlp"


def describe_model(params):
    """E.g. "mlp 784-128-10 (float32)"."""
    sizes = [params[0].shape[0]] + [w.shape[1] for w in params[0::2]]
    return "%s %s (%s)" % (model_kind(params), "-".join(map(str, sizes)),
                           params[0].dtype)


def check_model(params, source="model"):
    """Raise FmnistError unless ``params`` is a valid layer chain 784 -> 10."""
    if len(params) < 2 or len(params) % 2:
        raise FmnistError("%s has %d tensors; expected pairs (W, b) per layer: "
                          "2 for softmax, 4 for the MLP" % (source, len(params)))
    width = NUM_FEATURES
    for layer in range(len(params) // 2):
        w, b = params[2 * layer], params[2 * layer + 1]
        for key, tensor in ((2 * layer, w), (2 * layer + 1, b)):
            if tensor.dtype not in (np.float32, np.float64):
                raise FmnistError("%s tensor %d has dtype %s; expected float32 "
                                  "or float64" % (source, key, tensor.dtype))
            if not np.all(np.isfinite(tensor)):
                raise FmnistError("%s tensor %d contains NaN or infinity"
                                  % (source, key))
        if w.ndim != 2 or w.shape[0] != width or w.shape[1] < 1:
            raise FmnistError("%s tensor %d (W of layer %d) has shape %s; "
                              "expected (%d, k)" % (source, 2 * layer,
                                                    layer + 1, w.shape, width))
        if b.shape != (w.shape[1],):
            raise FmnistError("%s tensor %d (b of layer %d) has shape %s; "
                              "expected (%d,)" % (source, 2 * layer + 1,
                                                  layer + 1, b.shape,
                                                  w.shape[1]))
        width = w.shape[1]
    if width != NUM_CLASSES:
        raise FmnistError("%s ends with %d outputs; expected %d classes"
                          % (source, width, NUM_CLASSES))


def init_model(kind, hidden=(DEFAULT_HIDDEN,), seed=DEFAULT_SEED):
    """Initial float32 parameters.

    softmax: all zeros.  mlp: He-normal weights (seeded), zero biases.
    """
    if kind == "softmax":
        return [np.zeros((NUM_FEATURES, NUM_CLASSES), np.float32),
                np.zeros(NUM_CLASSES, np.float32)]
    if kind != "mlp":
        raise FmnistError("unknown model %r (expected softmax or mlp)" % kind)
    rng = np.random.default_rng(seed)
    sizes = [NUM_FEATURES] + list(hidden) + [NUM_CLASSES]
    params = []
    for fan_in, fan_out in zip(sizes[:-1], sizes[1:]):
        std = math.sqrt(2.0 / fan_in)
        params.append((rng.standard_normal((fan_in, fan_out)) * std)
                      .astype(np.float32))
        params.append(np.zeros(fan_out, np.float32))
    return params


# Matrix products.  Debian's numpy may be linked against the reference BLAS,
# whose sgemm is about 3x slower than numpy's own vectorised einsum loops for
# the MLP's 784x128 products (but faster for the 10-wide output layer).  So
# products with wide outputs go through einsum; FMNIST_MATMUL=blas sends
# everything to BLAS (better with OpenBLAS/MKL).  The choice is fixed, not
# timed, so results are bit-for-bit reproducible.
EINSUM_MIN_WIDTH = 64
_use_einsum = None


def _einsum_enabled():
    """Read FMNIST_MATMUL once: "einsum" (default) or "blas"."""
    mode = os.environ.get("FMNIST_MATMUL", "").strip().lower() or "einsum"
    if mode not in ("einsum", "blas"):
        raise FmnistError("FMNIST_MATMUL=%r is not one of einsum, blas" % mode)
    return mode == "einsum"


def dot(a, b):
    """``a @ b`` for 2-D float arrays (possibly transposed views); products
    with wide outputs use einsum unless FMNIST_MATMUL=blas."""
    global _use_einsum
    if b.shape[1] >= EINSUM_MIN_WIDTH:
        if _use_einsum is None:
            _use_einsum = _einsum_enabled()
        if _use_einsum:
            return np.einsum("ij,jk->ik", a, b)
    return a @ b


def forward(params, x, keep=False):
    """Logits of ``x``; with keep=True also the list of layer inputs."""
    inputs = []
    h = x
    last = len(params) // 2 - 1
    for layer in range(last + 1):
        inputs.append(h)
        h = dot(h, params[2 * layer])
        h += params[2 * layer + 1]
        if layer != last:
            np.maximum(h, 0, out=h)
    return (h, inputs) if keep else h


def log_softmax(logits):
    """Numerically stable log-softmax along the last axis."""
    shifted = logits - logits.max(axis=1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))


def loss_and_grads(params, x, y):
    """Mean cross-entropy of a batch and its gradients, in layer order."""
    logits, inputs = forward(params, x, keep=True)
    logp = log_softmax(logits)
    rows = np.arange(y.shape[0])
    loss = -float(logp[rows, y].mean())
    delta = np.exp(logp)                     # softmax probabilities
    delta[rows, y] -= 1.0
    delta *= np.float32(1.0 / y.shape[0])
    grads = [None] * len(params)
    for layer in range(len(params) // 2 - 1, -1, -1):
        a = inputs[layer]
        grads[2 * layer] = dot(a.T, delta)
        grads[2 * layer + 1] = delta.sum(axis=0)
        if layer:
            delta = dot(delta, params[2 * layer].T)
            delta *= a > 0                   # ReLU derivative
    return loss, grads


def evaluate(params, x, y):
    """(mean cross-entropy, accuracy) of the model on (x, y)."""
    total_loss = 0.0
    correct = 0
    for start in range(0, y.shape[0], EVAL_BATCH):
        xb, yb = x[start:start + EVAL_BATCH], y[start:start + EVAL_BATCH]
        logp = log_softmax(forward(params, xb))
        total_loss -= float(logp[np.arange(yb.shape[0]), yb].sum(dtype=np.float64))
        correct += int((logp.argmax(axis=1) == yb).sum())
    return total_loss / y.shape[0], correct / y.shape[0]


def sgd_train(params, x, y, settings, rng):
    """Minibatch SGD on float32 copies of ``params``; returns the result.

    Each epoch visits the examples in a fresh order drawn from ``rng``.
    Optional momentum and weight decay (on weights, not biases).  With
    ``settings.average`` = f > 0 the result is the mean of the iterates of
    the last fraction f of the steps (tail / Polyak averaging), which removes
    most of the noise of constant-lr SGD; f = 0 returns the last iterate.

    Raises FmnistError if the loss becomes non-finite (lr too large).
    """
    params = [p.astype(np.float32, copy=True) for p in params]
    velocity = [np.zeros_like(p) for p in params] if settings.momentum else None
    lr = np.float32(settings.lr)
    momentum = np.float32(settings.momentum)
    decay = np.float32(settings.weight_decay)
    count = y.shape[0]
    total_steps = settings.epochs * -(-count // settings.batch_size)
    first_averaged = min(int(total_steps * (1.0 - settings.average)),
                         total_steps - 1)
    sums = [np.zeros(p.shape, np.float64) for p in params]
    step = 0
    for epoch in range(settings.epochs):
        order = rng.permutation(count)
        xs, ys = x[order], y[order]
        for start in range(0, count, settings.batch_size):
            stop = start + settings.batch_size
            loss, grads = loss_and_grads(params, xs[start:stop], ys[start:stop])
            if not math.isfinite(loss):
                raise FmnistError(
                    "training diverged in epoch %d (loss %s); lower lr (now %g)"
                    % (epoch + 1, loss, settings.lr))
            for k, (p, g) in enumerate(zip(params, grads)):
                if decay and k % 2 == 0:
                    g += decay * p
                if velocity is not None:
                    v = velocity[k]
                    v *= momentum
                    v += g
                    g = v
                p -= lr * g
            if step >= first_averaged:
                for total, p in zip(sums, params):
                    total += p
            step += 1
    averaged = step - first_averaged
    return [(total / averaged).astype(np.float32) for total in sums]


# --------------------------------------------------------------------------
# Training settings (client_settings)
# --------------------------------------------------------------------------

class TrainSettings:
    """Validated training hyper-parameters."""

    def __init__(self, epochs, batch_size, lr, momentum=DEFAULT_MOMENTUM,
                 weight_decay=DEFAULT_WEIGHT_DECAY, average=DEFAULT_AVERAGE,
                 seed=DEFAULT_SEED):
        self.epochs = epochs
        self.batch_size = batch_size
        self.lr = lr
        self.momentum = momentum
        self.weight_decay = weight_decay
        self.average = average
        self.seed = seed

    def as_dict(self):
        """The settings as a JSON-able dict (for the training metadata)."""
        return {"epochs": self.epochs, "batch_size": self.batch_size,
                "lr": self.lr, "momentum": self.momentum,
                "weight_decay": self.weight_decay, "average": self.average,
                "seed": self.seed}


# Keys that are not training hyper-parameters but may legitimately appear.
IGNORED_SETTINGS = ("hidden", "model")


def _setting_int(settings, key, default, minimum):
    value = settings.get(key, default)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise FmnistError("client_settings %r must be an integer, got %s"
                          % (key, json.dumps(value)))
    if isinstance(value, float):
        if not (math.isfinite(value) and value.is_integer()):
            raise FmnistError("client_settings %r must be an integer, got %s"
                              % (key, json.dumps(value)))
        value = int(value)
    if value < minimum:
        raise FmnistError("client_settings %r must be >= %d, got %d"
                          % (key, minimum, value))
    return value


def _setting_float(settings, key, default, low, high, low_open=False,
                   high_open=True):
    value = settings.get(key, default)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise FmnistError("client_settings %r must be a number, got %s"
                          % (key, json.dumps(value)))
    value = float(value)
    too_low = value <= low if low_open else value < low
    too_high = value >= high if high_open else value > high
    if not math.isfinite(value) or too_low or too_high:
        raise FmnistError("client_settings %r must be in %s%g, %g%s, got %r"
                          % (key, "(" if low_open else "[", low, high,
                             ")" if high_open else "]", value))
    return value


def parse_train_settings(settings, kind, prog="train.py"):
    """Validate a client_settings object; fill in the defaults.

    Known keys: epochs, batch_size, lr, momentum, weight_decay, average,
    seed.
    "hidden" and "model" are ignored (the model is defined by the seed);
    other unknown keys get a warning on stderr.
    """
    if not isinstance(settings, dict):
        raise FmnistError("client_settings must be a JSON object, got %s"
                          % type(settings).__name__)
    known = ("epochs", "batch_size", "lr", "momentum", "weight_decay",
             "average", "seed")
    for key in sorted(settings):
        if key not in known and key not in IGNORED_SETTINGS:
            log(prog, "warning: ignoring unknown client_settings key %r" % key)
    return TrainSettings(
        epochs=_setting_int(settings, "epochs", DEFAULT_EPOCHS, 1),
        batch_size=_setting_int(settings, "batch_size", DEFAULT_BATCH_SIZE, 1),
        lr=_setting_float(settings, "lr", DEFAULT_LR[kind], 0.0, 100.0,
                          low_open=True),
        momentum=_setting_float(settings, "momentum", DEFAULT_MOMENTUM,
                                0.0, 1.0),
        weight_decay=_setting_float(settings, "weight_decay",
                                    DEFAULT_WEIGHT_DECAY, 0.0, 1.0),
        average=_setting_float(settings, "average", DEFAULT_AVERAGE,
                               0.0, 1.0, high_open=False),
        seed=_setting_int(settings, "seed", DEFAULT_SEED, 0),
    )


def shuffle_rng(settings, env, params):
    """The RNG of minibatch shuffling.

    Deterministic given the inputs: seeded by client_settings "seed", the
    client index / count and a CRC of the incoming model, so each round (a
    new global model) gets a fresh order without needing a round number.
    """
    crc = 0
    for p in params:
        crc = zlib.crc32(np.ascontiguousarray(p).view(np.uint8), crc)
    return np.random.default_rng([settings.seed, env.client_index,
                                  env.num_clients, crc])


# --------------------------------------------------------------------------
# Files: npz models and JSON
# --------------------------------------------------------------------------

def load_model(path):
    """Read a FEDn numpyhelper npz (keys "0".."N-1") and check it."""
    if not os.path.isfile(path):
        raise FmnistError("model file %s does not exist" % path)
    if not zipfile.is_zipfile(path):
        raise FmnistError("%s is not an npz model (not a ZIP archive)" % path)
    try:
        with np.load(path, allow_pickle=False) as archive:
            keys = set(archive.files)
            expected = set(str(i) for i in range(len(keys)))
            if keys != expected:
                raise FmnistError("%s has keys %s; expected \"0\"..\"%d\""
                                  % (path, sorted(keys), len(keys) - 1))
            params = [archive[str(i)] for i in range(len(keys))]
    except FmnistError:
        raise
    except (OSError, ValueError, EOFError, zipfile.BadZipFile,
            zlib.error) as exc:
        raise FmnistError("%s is not a valid npz model: %s" % (path, exc))
    check_model(params, "model %s" % path)
    return params


def save_model(path, params, dtype=np.float32):
    """Write ``params`` as an npz with keys "0".."N-1" (like FEDn's
    numpyhelper: savez_compressed), exactly at ``path`` (no ".npz" added)."""
    arrays = {str(i): np.asarray(p, dtype=dtype) for i, p in enumerate(params)}
    try:
        with open(path, "wb") as handle:
            np.savez_compressed(handle, **arrays)
    except OSError as exc:
        raise FmnistError("cannot write model %s: %s" % (path, exc))


def read_json_object(path, missing_ok=True):
    """Read a JSON object; a missing (if allowed) or empty file gives {}."""
    try:
        with open(path, "r", encoding="utf-8") as handle:
            text = handle.read()
    except FileNotFoundError:
        if missing_ok:
            return {}
        raise FmnistError("%s does not exist" % path)
    except OSError as exc:
        raise FmnistError("cannot read %s: %s" % (path, exc))
    if not text.strip():
        return {}
    try:
        value = json.loads(text)
    except ValueError as exc:
        raise FmnistError("%s is not valid JSON: %s" % (path, exc))
    if not isinstance(value, dict):
        raise FmnistError("%s must hold a JSON object, got %s"
                          % (path, type(value).__name__))
    return value


def write_json(path, value):
    """Write ``value`` as JSON to ``path``."""
    try:
        with open(path, "w", encoding="utf-8") as handle:
            json.dump(value, handle, indent=2, sort_keys=True)
            handle.write("\n")
    except OSError as exc:
        raise FmnistError("cannot write %s: %s" % (path, exc))


def expect_paths(prog, argv):
    """Check the ``<inpath> <outpath>`` command line of train/validate."""
    if len(argv) != 2:
        raise FmnistError("usage: %s <inpath> <outpath> (got %d arguments)"
                          % (prog, len(argv)))
    return argv[0], argv[1]
