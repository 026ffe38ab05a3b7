"""Numpy-free reading and writing of FEDn "numpyhelper" models (npz).

A model is a ZIP archive whose members are `<key>.npy`; each member is the
`.npy` magic, a version, a header dict (`descr`, `fortran_order`, `shape`)
and raw little-endian data (see FEDN_WIRE.md, "Model format"). Only 1-D
float32 and float64 arrays are needed by the conformance tests, which keeps
this independent of numpy.
"""

import ast
import io
import struct
import zipfile

_MAGIC = b"\x93NUMPY"
_FORMATS = {"<f4": "f", "<f8": "d"}


def npy_bytes(values, descr="<f4"):
    """Returns one 1-D `.npy` member (format version 1.0) of `values`."""
    header = ("{'descr': '%s', 'fortran_order': False, 'shape': (%d,), }"
              % (descr, len(values)))
    # The header, with its newline, pads the preamble to a multiple of 64.
    pad = 64 - (len(_MAGIC) + 2 + 2 + len(header) + 1) % 64
    header = header + " " * (pad % 64) + "\n"
    body = struct.pack("<%d%s" % (len(values), _FORMATS[descr]), *values)
    return (_MAGIC + b"\x01\x00" + struct.pack("<H", len(header))
            + header.encode("latin1") + body)


def npz_bytes(tensors, compressed=False, descr="<f4"):
    """Returns an npz archive of `tensors` ({key: list of numbers}), as
    `np.savez` (STORED) or `np.savez_compressed` (DEFLATE) writes it."""
    out = io.BytesIO()
    method = zipfile.ZIP_DEFLATED if compressed else zipfile.ZIP_STORED
    with zipfile.ZipFile(out, "w", compression=method) as z:
        for key, values in tensors.items():
            z.writestr(key + ".npy", npy_bytes(values, descr))
    return out.getvalue()


def read_npy(data):
    """Returns the values of a 1-D float32/float64 `.npy` member as a list."""
    if not data.startswith(_MAGIC):
        raise ValueError("not an .npy member (bad magic)")
    major = data[6]
    if major == 1:
        (hlen,) = struct.unpack("<H", data[8:10])
        start = 10
    else:
        (hlen,) = struct.unpack("<I", data[8:12])
        start = 12
    header = ast.literal_eval(data[start:start + hlen].decode("latin1"))
    fmt = _FORMATS.get(header["descr"])
    if fmt is None:
        raise ValueError("unsupported dtype " + header["descr"])
    count = 1
    for n in header["shape"]:
        count *= n
    body = data[start + hlen:]
    return list(struct.unpack("<%d%s" % (count, fmt),
                              body[:count * struct.calcsize(fmt)]))


def read_npz(data):
    """Returns {key: list of values} of an npz archive (STORED or DEFLATE)."""
    out = {}
    with zipfile.ZipFile(io.BytesIO(data)) as z:
        for name in z.namelist():
            if not name.endswith(".npy"):
                raise ValueError("unexpected member " + name)
            out[name[:-4]] = read_npy(z.read(name))
    return out
