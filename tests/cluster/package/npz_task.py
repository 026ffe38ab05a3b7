"""Entry points of the cluster test's compute package (stdlib only).

  python3 npz_task.py train <in.npz> <out.npz>
  python3 npz_task.py validate <in.npz> <out.json>

The model is FEDn's npz (members "0.npy".."N-1.npy", little-endian float32/float64
.npy, C order). `train` writes the model plus RONDO_TEST_DELTA to every
value and {"num_examples": RONDO_TEST_EXAMPLES} to <out>-metadata. It first
touches $RONDO_TEST_MARKS/<RONDO_TEST_NAME>.<n> (n counts its trainings;
"<that>.done" once it is done), and
sleeps `sleep` seconds when the round's client_settings list its name under
`sleepers`, so a test can act while a round is under way.
`validate` writes {"test_accuracy": mean of all values, "test_loss": 0}.
"""

import ast
import json
import os
import struct
import sys
import time
import zipfile
from array import array


def read_npz(path):
    """Returns [(name, dtype char, shape, array)] in archive order."""
    out = []
    with zipfile.ZipFile(path) as z:
        for info in z.infolist():
            data = z.read(info)
            assert data[:6] == b"\x93NUMPY", "not an npy member"
            major = data[6]
            if major == 1:
                hlen = struct.unpack("<H", data[8:10])[0]
                start = 10
            else:
                hlen = struct.unpack("<I", data[8:12])[0]
                start = 12
            header = ast.literal_eval(data[start:start + hlen].decode())
            descr = header["descr"]
            code = {"<f4": "f", "<f8": "d"}[descr]
            values = array(code)
            values.frombytes(data[start + hlen:])
            out.append((info.filename, descr, tuple(header["shape"]), values))
    return out


def write_npz(path, tensors):
    """Writes tensors as from read_npz, STORED, npy format 1.0."""
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as z:
        for name, descr, shape, values in tensors:
            header = "{'descr': '%s', 'fortran_order': False, 'shape': %r, }" % (
                descr, shape)
            pad = 64 - (10 + len(header) + 1) % 64
            header = header + " " * pad + "\n"
            blob = (b"\x93NUMPY\x01\x00" + struct.pack("<H", len(header))
                    + header.encode() + values.tobytes())
            z.writestr(name, blob)


def train(inpath, outpath):
    name = os.environ.get("RONDO_TEST_NAME", "client")
    marks = os.environ.get("RONDO_TEST_MARKS")
    mark = None
    if marks:
        n = 0
        while os.path.exists(os.path.join(marks, "%s.%d" % (name, n))):
            n += 1
        mark = os.path.join(marks, "%s.%d" % (name, n))
        open(mark, "w").close()
    settings = {}
    if os.path.exists(inpath + "-metadata"):
        with open(inpath + "-metadata") as f:
            settings = json.load(f) or {}
    if name in settings.get("sleepers", []):
        time.sleep(float(settings.get("sleep", 0)))
    delta = float(os.environ["RONDO_TEST_DELTA"])
    tensors = read_npz(inpath)
    out = []
    for tname, descr, shape, values in tensors:
        out.append((tname, descr, shape,
                    array(values.typecode, (v + delta for v in values))))
    write_npz(outpath, out)
    with open(outpath + "-metadata", "w") as f:
        json.dump({"num_examples": int(os.environ["RONDO_TEST_EXAMPLES"])}, f)
    if mark:
        open(mark + ".done", "w").close()


def validate(inpath, outpath):
    values = [v for _, _, _, vs in read_npz(inpath) for v in vs]
    with open(outpath, "w") as f:
        json.dump({"test_accuracy": sum(values) / len(values),
                   "test_loss": 0.0}, f)


if __name__ == "__main__":
    kind, inpath, outpath = sys.argv[1:4]
    {"train": train, "validate": validate}[kind](inpath, outpath)
