#!/usr/bin/python3
"""Writes the fuzz targets' seed corpora under tests/fuzz/corpus/<target>/
from the real producers of each input (the committed files came from it):

- npz: numpy's np.savez (STORED) and np.savez_compressed (DEFLATE), as
  FEDn's numpyhelper writes models (keys "0".."N-1"), plus npy format 2.0
  and 3.0 members, all small;
- model_request: fedn.ModelRequest messages serialized by Python protobuf
  from messages/proto/fedn.proto (stubs made with protoc here), as FEDn's
  client streams an upload (data chunks IN_PROGRESS, then OK);
- config: round configs and session configs as JSON (`rondo config
  check`, `rondo session start --config`) and as Control.Start key=value
  lines;
- meta: a ModelUpdate's meta and a TaskRequest's data as FEDn's client and
  combiner write them, training metadata, validation metrics, predictions;
- token: HS256 JWTs as FEDn mints them (PyJWT's layout, made with hmac
  here) in `authorization` values; the secret is fuzz_token.cpp's.

corpus/records comes from make_record_seeds (built with the fuzz project):
  build-fuzz/make_record_seeds tests/fuzz/corpus/records

Usage: /usr/bin/python3 tests/fuzz/make_corpus.py [OUT_DIR]
Needs Debian's python3-numpy and python3-protobuf and protoc.
"""

import base64
import hashlib
import hmac
import io
import json
import os
import subprocess
import sys
import tempfile
import zipfile

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
TOKEN_SECRET = b"rondo-fuzz-secret-0123456789abcdef0123456789"


def write(out, target, name, data):
    d = os.path.join(out, target)
    os.makedirs(d, exist_ok=True)
    if isinstance(data, str):
        data = data.encode()
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


def npz_bytes(arrays, compressed):
    buf = io.BytesIO()
    # FEDn's numpyhelper: np.savez_compressed(path, **{str(i): w ...}).
    (np.savez_compressed if compressed else np.savez)(buf, **arrays)
    return buf.getvalue()


def npy_version_zip(version):
    """A STORED zip with one member written by numpy in npy `version`."""
    member = io.BytesIO()
    np.lib.format.write_array(member, np.arange(6, dtype="<f4").reshape(2, 3),
                              version=version)
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED) as z:
        z.writestr("0.npy", member.getvalue())
    return buf.getvalue()


def make_npz(out):
    rng = np.random.default_rng(7)
    model = {"0": rng.standard_normal((4, 3)).astype(np.float32),
             "1": rng.standard_normal(3).astype(np.float32)}
    write(out, "npz", "savez-f32", npz_bytes(model, False))
    write(out, "npz", "savez_compressed-f32", npz_bytes(model, True))
    mixed = {"0": np.array(3.5, dtype=np.float64),
             "1": rng.standard_normal((2, 2, 2)).astype(np.float64),
             "bias": np.zeros(5, dtype=np.float32),
             "2": np.zeros((0, 3), dtype=np.float32)}
    write(out, "npz", "savez-mixed", npz_bytes(mixed, False))
    write(out, "npz", "savez_compressed-mixed", npz_bytes(mixed, True))
    write(out, "npz", "npy-v2", npy_version_zip((2, 0)))
    write(out, "npz", "npy-v3", npy_version_zip((3, 0)))
    # What the reader must refuse, as numpy writes it.
    write(out, "npz", "savez-int32",
          npz_bytes({"0": np.arange(4, dtype=np.int32)}, False))
    write(out, "npz", "savez-fortran",
          npz_bytes({"0": np.asfortranarray(np.ones((2, 3), np.float32))},
                    False))
    write(out, "npz", "savez-bigendian",
          npz_bytes({"0": np.ones(3, dtype=">f8")}, False))


def fedn_stubs(tmp):
    subprocess.run(["protoc", "-I", os.path.join(ROOT, "messages/proto"),
                    "--python_out=" + tmp,
                    os.path.join(ROOT, "messages/proto/fedn.proto")],
                   check=True)
    sys.path.insert(0, tmp)
    import fedn_pb2
    return fedn_pb2


def make_model_request(out, fedn):
    model = npz_bytes({"0": np.arange(12, dtype=np.float32).reshape(4, 3)},
                      False)
    mid = "5b4d1c2e-0f6a-4a57-9b1e-7d3c2a1f0e99"
    # FEDn's client: chunks IN_PROGRESS, then an OK terminator.
    chunk = fedn.ModelRequest(id=mid, data=model[:700],
                              status=fedn.IN_PROGRESS)
    write(out, "model_request", "upload-chunk", chunk.SerializeToString())
    last = fedn.ModelRequest(id=mid, data=model[700:],
                             status=fedn.IN_PROGRESS)
    write(out, "model_request", "upload-last-chunk",
          last.SerializeToString())
    write(out, "model_request", "upload-ok",
          fedn.ModelRequest(id=mid, status=fedn.OK).SerializeToString())
    # Download request, with sender and receiver (older FEDn clients).
    full = fedn.ModelRequest(
        sender=fedn.Client(name="client-1", role=fedn.CLIENT,
                           client_id="c1-id"),
        receiver=fedn.Client(name="combiner-1", role=fedn.COMBINER),
        id=mid)
    write(out, "model_request", "download-with-sender",
          full.SerializeToString())
    write(out, "model_request", "failed",
          fedn.ModelRequest(id=mid, status=fedn.FAILED).SerializeToString())


def make_config(out):
    round_cfg = {
        "round_id": "3", "session_id": "s-1", "model_id": "m-0",
        "task": "training", "round_timeout": 60, "buffer_size": -1,
        "clients_required": 2, "clients_requested": 8, "max_clients": 30,
        "selected_clients": ["client-0", "client-1"],
        "client_settings": {"epochs": 1, "batch_size": 32, "lr": 0.01},
        "aggregator": "fedopt",
        "aggregator_kwargs": {"serveropt": "adam", "learning_rate": 0.001,
                              "beta1": 0.9, "beta2": 0.99, "tau": 1e-4},
        "delete_models_storage": True, "validate": True,
        "helper_type": "numpyhelper", "rounds": 10}
    write(out, "config", "round-config.json", json.dumps(round_cfg, indent=2))
    # FEDn's controller sends every value as a string.
    as_strings = {k: (v if isinstance(v, str) else
                      ("True" if v is True else json.dumps(v)))
                  for k, v in round_cfg.items()}
    write(out, "config", "round-config-strings.json", json.dumps(as_strings))
    write(out, "config", "round-config-validation.json",
          json.dumps({"task": "validation", "round_id": "3",
                      "model_id": "m-1", "round_timeout": "180.0",
                      "buffer_size": "5.0", "validate": "False"}))
    write(out, "config", "control-start.kv",
          "".join(f"{k}={v}\n" for k, v in as_strings.items()))
    session = {"rounds": 10, "round_timeout": 180, "buffer_size": -1,
               "clients_required": 1, "clients_requested": 8,
               "aggregator": "fedavg", "aggregator_kwargs": {},
               "validate": True, "client_settings": {"epochs": 2},
               "model_id": "", "session_id": "sess-a",
               "stop_on_failure": False, "grace": 60}
    write(out, "config", "session-config.json", json.dumps(session))
    write(out, "config", "session-config-small.json",
          json.dumps({"rounds": "3", "aggregator": "fedopt",
                      "aggregator_kwargs": "{\"serveropt\": \"yogi\"}"}))


def make_meta(out):
    task_data = json.dumps({
        "round_id": "3", "session_id": "s-1", "model_id": "m-0",
        "task": "training", "round_timeout": "60", "buffer_size": "-1",
        "client_settings": {"epochs": 1}, "aggregator": "fedavg",
        "helper_type": "numpyhelper", "validate": "True"})
    write(out, "meta", "task-data.json", task_data)
    write(out, "meta", "task-data-numeric-round.json",
          json.dumps({"round_id": 7, "client_settings": None}))
    training = {"num_examples": 6000, "batch_size": 32, "epochs": 1,
                "lr": 0.01, "seconds": 2.41}
    write(out, "meta", "training-metadata.json", json.dumps(training))
    # FEDn's client: the ModelUpdate meta (config is the task's data text).
    write(out, "meta", "model-update-meta.json", json.dumps({
        "training_metadata": training, "config": task_data,
        "fetch_model": 0.012, "exec_training": 2.5, "upload_model": 0.03,
        "processing_time": 2.6}))
    write(out, "meta", "model-update-meta-float.json", json.dumps({
        "training_metadata": {"num_examples": 1.5e3}}))
    write(out, "meta", "metrics.json", json.dumps({
        "training_loss": 0.417, "training_accuracy": 0.853,
        "test_loss": 0.452, "test_accuracy": 0.841}))
    write(out, "meta", "prediction.json",
          json.dumps({"predictions": [[0.1, 0.9], [0.7, 0.3]]}))


def b64(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=")


def jwt(claims, secret=TOKEN_SECRET, alg="HS256"):
    header = b64(json.dumps({"alg": alg, "typ": "JWT"},
                            separators=(",", ":")).encode())
    body = b64(json.dumps(claims, separators=(",", ":")).encode())
    signing = header + b"." + body
    sig = hmac.new(secret, signing, hashlib.sha256).digest()
    return (signing + b"." + b64(sig)).decode()


def make_token(out):
    # fuzz_token.cpp checks at now = 2026-01-01T00:00:00Z (1767225600).
    future, past = 1893456000, 1735689600
    write(out, "token", "client",
          "Bearer " + jwt({"role": "client", "client_id": "client-1",
                           "iat": 1767000000, "exp": future}))
    write(out, "token", "admin-no-exp",
          "Bearer " + jwt({"role": "admin", "iat": 1767000000}))
    write(out, "token", "fedn-controller",
          "Bearer " + jwt({"role": "controller", "iat": 1767000000,
                           "exp": future}))
    write(out, "token", "expired",
          "Bearer " + jwt({"role": "client", "name": "c", "exp": past}))
    write(out, "token", "wrong-secret",
          "Bearer " + jwt({"role": "client"}, secret=b"x" * 40))
    write(out, "token", "alg-none", "Bearer " + jwt({"role": "admin"},
                                                    alg="none"))
    write(out, "token", "token-scheme",
          "Token " + jwt({"role": "client", "client_id": "client-2"}))


def main():
    out = sys.argv[1] if len(sys.argv) > 1 else os.path.join(HERE, "corpus")
    make_npz(out)
    make_config(out)
    make_meta(out)
    make_token(out)
    with tempfile.TemporaryDirectory() as tmp:
        make_model_request(out, fedn_stubs(tmp))


if __name__ == "__main__":
    main()
