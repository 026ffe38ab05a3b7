#!/usr/bin/python3
"""Integration: `rondo client` processes running a tiny numpy compute
package (tests/integration/package) against a `rondo combiner` process,
through full training and validation rounds started over FEDn's Control
service.

Cases (one ctest entry each, `--case NAME`):
- train_and_validate: two clients, two FedAvg rounds and a validation round;
  the aggregates are the weighted means the package's updates imply.
- failing_entry_point: one client's train entry point fails; its ERROR
  status reaches the combiner, which lists the client as rejected with the
  entry point's stderr and closes the round with the other's update without
  waiting for the timeout; the failing client keeps serving (it validates).
- validator_only: a `--no-trainer` client is never asked to train.
- tls_token: `rondo client --ca --token-file` trains and validates against
  a combiner serving TLS and requiring tokens; a client whose token names
  another client exits 1 at once naming the refusal; a plaintext client on
  the TLS port says to pass --ca; one dialling a host the certificate does
  not name says how to issue one that does.
- token_expires: a token that expires while connected makes the client
  exit 1 naming the refusal, never "unreachable".
- bad_ca_file: `--ca` with no certificate in it exits 2 at once.
- duplicate_client: a second client with the same name and token ends the
  first one's stream (it reconnects); the next round includes the first.

Skipped (ctest SKIP_RETURN_CODE) when Python's gRPC or the package's numpy
is missing.
"""

import contextlib
import importlib.util
import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                "..", "conformance"))
import harness  # noqa: E402
from harness import (Combiner, RondoClient, RoundThread, Security,  # noqa: E402
                     TempDir, check, run_round, wait_until)

harness.load_stubs()

from fedn_client import FednClient  # noqa: E402
from npz_lite import npz_bytes, read_npz  # noqa: E402

PACKAGE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "package")
SESSION = "integration"
N = 100  # weights in the seed model


def numpy_python_or_skip():
    """The package runs on the first Python with numpy (package/run.sh)."""
    for py in (os.environ.get("RONDO_TEST_PYTHON"), "/usr/bin/python3"):
        if py and os.access(py, os.X_OK):
            probe = os.system(f"{py} -c 'import numpy' 2>/dev/null")
            if probe == 0:
                return
    if importlib.util.find_spec("numpy") is None:
        harness.skip("no Python with numpy for the test compute package")


@contextlib.contextmanager
def running(*clients):
    """Stops the `rondo client` processes at the end; prints their logs
    first when the case failed."""
    try:
        yield
    except Exception:
        for c in clients:
            print(f"--- {c.name} ---\n{c.log()}", flush=True)
        raise
    finally:
        for c in clients:
            c.stop()


def near(xs, y):
    """Whether every value of `xs` is `y` up to float32 rounding."""
    return all(abs(x - y) <= 1e-5 * (1 + abs(y)) for x in xs)


def seed(address, value=0.0, **secured):
    """Uploads a one-tensor seed model of N × value; returns its id.
    `secured`: FednClient's credentials and token, for a secured combiner."""
    admin = FednClient(address, "admin", **secured)
    try:
        model_id = f"seed-{value}"
        admin.upload(model_id, npz_bytes({"0": [value] * N}))
        return model_id
    finally:
        admin.close()


def weights(address, model_id, **secured):
    """The values of tensor "0" of model `model_id` on the combiner."""
    admin = FednClient(address, "admin", **secured)
    try:
        data = admin.download(model_id)
        check(data is not None, f"model {model_id} cannot be downloaded")
        return read_npz(data)["0"]
    finally:
        admin.close()


def training(round_id, model_id, clients, timeout=60, **extra):
    """A training round config (FEDn's keys) needing `clients` clients."""
    cfg = {"round_id": round_id, "session_id": SESSION, "model_id": model_id,
           "round_timeout": timeout, "clients_required": clients,
           "buffer_size": -1, "validate": "false"}
    cfg.update(extra)
    return cfg


def validation(round_id, model_id, clients, timeout=60):
    """A validation round config needing `clients` validators."""
    return {"round_id": round_id, "session_id": SESSION, "model_id": model_id,
            "task": "validation", "round_timeout": timeout,
            "clients_required": clients}


def check_running(*clients):
    """Fails unless every `rondo client` process is still running."""
    for c in clients:
        check(c.running(), f"client {c.name} exited:\n{c.log()}")


def case_train_and_validate():
    with TempDir("rondo-int-") as d, Combiner(d) as comb:
        m0 = seed(comb.address)
        c1 = RondoClient(d, comb.address, "c1", PACKAGE,
                         env={"TESTPKG_DELTA": "1", "TESTPKG_EXAMPLES": "10"})
        c2 = RondoClient(d, comb.address, "c2", PACKAGE,
                         env={"TESTPKG_DELTA": "3", "TESTPKG_EXAMPLES": "30"})
        with running(c1, c2):
            # The first round also waits for both clients to connect.
            rec = run_round(comb.address, training("1", m0, 2), timeout=120)
            check(rec["status"] == "success", f"round 1: {rec}")
            check(sorted(rec["clients_accepted"]) == ["c1", "c2"],
                  f"round 1: {rec}")
            m1 = rec["model_id"]
            # (10·1 + 30·3) / 40 = 2.5
            check(near(weights(comb.address, m1), 2.5),
                  f"round 1 aggregate {weights(comb.address, m1)[:3]}")
            rec = run_round(comb.address, validation("1-val", m1, 2))
            check(rec["status"] == "success", f"validation: {rec}")
            got = {v["client_id"]: v["metrics"] for v in rec["validations"]}
            check(sorted(got) == ["c1", "c2"], f"validations {got}")
            for cid, m in got.items():
                check(abs(m["test_accuracy"] - 2.5) < 1e-5
                      and m["test_loss"] == N,
                      f"{cid} validated another model: {m}")
            rec = run_round(comb.address, training("2", m1, 2))
            check(rec["status"] == "success", f"round 2: {rec}")
            check(rec["base_model_id"] == m1, f"round 2: {rec}")
            check(near(weights(comb.address, rec["model_id"]), 5.0),
                  "round 2 aggregate")
            check_running(c1, c2)


def case_failing_entry_point():
    with TempDir("rondo-int-") as d, Combiner(d) as comb:
        m0 = seed(comb.address)
        good = RondoClient(d, comb.address, "good", PACKAGE,
                           env={"TESTPKG_DELTA": "2"})
        bad = RondoClient(d, comb.address, "bad", PACKAGE,
                          env={"TESTPKG_FAIL_TRAIN": "1"})
        with running(good, bad):
            # Both task streams open: a validation round that needs two.
            warm = run_round(comb.address, validation("warm-up", m0, 2),
                             timeout=120)
            check(warm["status"] == "success", f"warm-up: {warm}")
            timeout = 6
            t0 = time.monotonic()
            rec = run_round(comb.address,
                            training("1", m0, 1, timeout=timeout,
                                     max_clients=2))
            elapsed = time.monotonic() - t0
            check(sorted(rec["clients_selected"]) == ["bad", "good"],
                  f"round: {rec}")
            check(rec["status"] == "success", f"round: {rec}")
            check(rec["clients_accepted"] == ["good"], f"round: {rec}")
            # 'bad' reported its failure (SendStatus ERROR): it is listed
            # as rejected with the entry point's stderr, and the round did
            # not wait for its timeout.
            check(rec["clients_silent"] == [], f"round: {rec}")
            rejected = {r["client_id"]: r["reason"]
                        for r in rec["clients_rejected"]}
            check("failing on purpose" in rejected.get("bad", ""),
                  f"bad's failure is not among the rejected: {rec}")
            check(elapsed < timeout - 0.5,
                  f"the round closed after {elapsed:.1f} s, at its timeout, "
                  f"although 'bad' had reported its failure")
            check(near(weights(comb.address, rec["model_id"]), 2.0),
                  "the aggregate is not good's update alone")
            # The failure reached the combiner as an ERROR status.
            log = open(comb.log_path, errors="replace").read()
            check("client 'bad' reports ERROR for task" in log,
                  f"no ERROR status from 'bad' in the combiner log:\n"
                  f"{comb.log()}")
            check("train.py: failing on purpose" in log,
                  "the ERROR status lacks the entry point's stderr tail")
            check("train.py: failing on purpose" in bad.log(200),
                  f"the client did not log the entry point's stderr:\n"
                  f"{bad.log()}")
            # The failing client keeps serving: it validates the new model.
            m1 = rec["model_id"]
            val = run_round(comb.address, validation("1-val", m1, 2))
            check(val["status"] == "success", f"validation: {val}")
            got = {v["client_id"]: v["metrics"] for v in val["validations"]}
            check(sorted(got) == ["bad", "good"], f"validations {got}")
            # A round whose only trainer fails ends as failed at once.
            t0 = time.monotonic()
            rec = run_round(comb.address,
                            training("2", m1, 1, timeout=30,
                                     selected_clients='["bad"]'))
            check(rec["status"] == "failed", f"round 2: {rec}")
            check(rec["reason"] != "", f"round 2 has no reason: {rec}")
            check(time.monotonic() - t0 < 25,
                  f"round 2 waited for its timeout: {rec}")
            check_running(good, bad)


def case_validator_only():
    with TempDir("rondo-int-") as d, Combiner(d) as comb:
        m0 = seed(comb.address)
        trainer = RondoClient(d, comb.address, "trainer", PACKAGE,
                              args=["--no-validator"])
        validator = RondoClient(d, comb.address, "validator", PACKAGE,
                                args=["--no-trainer"])
        with running(trainer, validator):
            # The validator's stream is open once it validated; the
            # training round, with room for both, must ask the trainer only
            # (it waits for the trainer if that has not connected yet).
            val = run_round(comb.address, validation("v0", m0, 1), timeout=120)
            check(val["status"] == "success", f"validation: {val}")
            check(val["clients_selected"] == ["validator"],
                  f"validation asked {val['clients_selected']}")
            rec = run_round(comb.address,
                            training("1", m0, 1, max_clients=10),
                            timeout=120)
            check(rec["status"] == "success", f"round: {rec}")
            check(rec["clients_selected"] == ["trainer"],
                  f"training asked {rec['clients_selected']}")
            check("this client is not a trainer" not in validator.log(400),
                  "the validator-only client was sent a training task")
            check_running(trainer, validator)


def case_tls_token():
    with TempDir("rondo-int-") as d:
        sec = Security(d)
        with Combiner(d, args=sec.combiner_args()) as comb:
            creds = sec.credentials()
            admin_token = sec.token("admin")
            secured = {"credentials": creds, "token": admin_token}
            m0 = seed(comb.address, **secured)
            token_file = os.path.join(d, "c1.token")
            with open(token_file, "w") as f:
                f.write(sec.token("client", "c1") + "\n")
            c1 = RondoClient(d, comb.address, "c1", PACKAGE,
                             args=["--ca", sec.ca, "--token-file", token_file],
                             env={"TESTPKG_DELTA": "2"})
            with running(c1):
                rec = run_round(comb.address, training("1", m0, 1),
                                timeout=120, credentials=creds,
                                token=admin_token)
                check(rec["status"] == "success", f"round 1: {rec}")
                check(rec["clients_accepted"] == ["c1"], f"round 1: {rec}")
                m1 = rec["model_id"]
                check(near(weights(comb.address, m1, **secured), 2.0),
                      "round 1 aggregate")
                rec = run_round(comb.address, validation("1-val", m1, 1),
                                credentials=creds, token=admin_token)
                check(rec["status"] == "success", f"validation: {rec}")
                check("TLS, with a token" in c1.log(200),
                      f"the client does not say it uses TLS:\n{c1.log()}")
                check_running(c1)
            # A token naming another client: refused, and the client exits
            # instead of retrying forever.
            wrong = RondoClient(d, comb.address, "c2", PACKAGE,
                                args=["--ca", sec.ca, "--token",
                                      sec.token("client", "c1")])
            with running(wrong):
                wait_until(lambda: not wrong.running(), 30,
                           "the client with another client's token to exit")
                check(wrong.proc.returncode == 1,
                      f"exit {wrong.proc.returncode}")
                check("PERMISSION_DENIED" in wrong.log(200)
                      and "'c1' may not act as client 'c2'" in wrong.log(200),
                      f"unclear refusal:\n{wrong.log()}")
            # Plaintext on the TLS port: a clear hint at once.
            plain = RondoClient(d, comb.address, "c3", PACKAGE,
                                args=["--token", sec.token("client", "c3")])
            with running(plain):
                wait_until(lambda: "pass --ca" in plain.log(200), 15,
                           "the plaintext client to suggest --ca")
            # A host the combiner's certificate (IP:127.0.0.1) does not
            # name: the hint says how to issue one that does.
            port = comb.address.rsplit(":", 1)[1]
            other = RondoClient(d, f"localhost:{port}", "c4", PACKAGE,
                                args=["--ca", sec.ca, "--token",
                                      sec.token("client", "c4")])
            with running(other):
                wait_until(lambda: "rondo certs issue DIR NAME --host "
                           "localhost" in other.log(200), 20,
                           "the client to say the certificate must list "
                           "localhost")


def case_token_expires():
    """A token that expires while the client is connected: the next
    heartbeat is refused and `rondo client` exits 1 saying the combiner
    refused its token (never "unreachable"), instead of staying a zombie."""
    with TempDir("rondo-int-") as d:
        sec = Security(d)
        with Combiner(d, args=sec.combiner_args()) as comb:
            c1 = RondoClient(d, comb.address, "c1", PACKAGE,
                             args=["--ca", sec.ca, "--token",
                                   sec.token("client", "c1", ttl="4s")])
            with running(c1):
                wait_until(lambda: "connected to combiner" in c1.log(200),
                           15, "the client to connect")
                wait_until(lambda: not c1.running(), 30,
                           "the client with an expired token to exit")
                log = c1.log(200)
                check(c1.proc.returncode == 1, f"exit {c1.proc.returncode}")
                check("refused this client's token" in log
                      and "expired" in log and "get a new token" in log,
                      f"unclear refusal:\n{log}")
                check("unreachable" not in log, f"says unreachable:\n{log}")


def case_bad_ca_file():
    """`--ca` naming a file with no certificate exits 2 at once, naming the
    flag and the file, rather than retrying with gRPC's raw error."""
    with TempDir("rondo-int-") as d:
        garbage = os.path.join(d, "garbage.crt")
        with open(garbage, "w") as f:
            f.write("not a certificate\n")
        c1 = RondoClient(d, "127.0.0.1:1", "c1", PACKAGE,
                         args=["--ca", garbage])
        with running(c1):
            wait_until(lambda: not c1.running(), 15, "the client to exit")
            log = c1.log(50)
            check(c1.proc.returncode == 2, f"exit {c1.proc.returncode}")
            check("--ca" in log and garbage in log
                  and "no PEM certificate" in log, f"unclear error:\n{log}")


def case_duplicate_client():
    """A second `rondo client` with the same name and token ends the first
    one's task stream (the first reconnects) instead of leaving it a zombie;
    once the duplicate is gone, the first client is served again."""
    with TempDir("rondo-int-") as d:
        sec = Security(d)
        with Combiner(d, args=sec.combiner_args()) as comb:
            creds = sec.credentials()
            admin_token = sec.token("admin")
            secured = {"credentials": creds, "token": admin_token}
            m0 = seed(comb.address, **secured)
            token = sec.token("client", "c1")
            args = ["--ca", sec.ca, "--token", token]
            c1 = RondoClient(d, comb.address, "c1", PACKAGE, args=args,
                             env={"TESTPKG_DELTA": "2"})
            with running(c1):
                wait_until(lambda: "task stream of client 'c1' (c1) opened"
                           in comb.log(200), 15, "c1's task stream")
                dup = RondoClient(os.path.join(d, "dup"), comb.address, "c1",
                                  PACKAGE, args=args)
                with running(dup):
                    wait_until(lambda: "replaced by a newer task stream"
                               in c1.log(200), 30,
                               "c1 to see its stream replaced")
                    check("another process is connected with this client id"
                          in c1.log(200), f"no hint:\n{c1.log()}")
                    check("ended the task stream of client 'c1'"
                          in comb.log(400), f"no warning:\n{comb.log()}")
                check_running(c1)
                # Once the duplicate is gone, c1's reconnect is the stream.
                rec = run_round(comb.address, training("1", m0, 1),
                                timeout=120, credentials=creds,
                                token=admin_token)
                check(rec["status"] == "success", f"round 1: {rec}")
                check(rec["clients_accepted"] == ["c1"], f"round 1: {rec}")
                check(near(weights(comb.address, rec["model_id"], **secured),
                           2.0), "round 1 aggregate")


CASES = {
    "tls_token": case_tls_token,
    "token_expires": case_token_expires,
    "bad_ca_file": case_bad_ca_file,
    "duplicate_client": case_duplicate_client,
    "train_and_validate": case_train_and_validate,
    "failing_entry_point": case_failing_entry_point,
    "validator_only": case_validator_only,
}

if __name__ == "__main__":
    numpy_python_or_skip()
    sys.exit(harness.run_cases(CASES, sys.argv[1:]))
