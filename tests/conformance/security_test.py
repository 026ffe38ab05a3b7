#!/usr/bin/python3
"""Security of the combiner's client edge: TLS, FEDn-compatible bearer
tokens (HS256 JWT in `authorization: Bearer <token>`), per-method rights,
identity binding, model access, and the secure-by-default listen policy.

Each case starts its own `rondo combiner` on an ephemeral port; the CA and
certificates are made with the `openssl` CLI, good tokens with `rondo token
create`, broken ones (alg none, expired, other secret) here with hmac.
Run one case with `--case NAME` (ctest: conformance.security_<name>).
"""

import base64
import hashlib
import hmac
import json
import os
import subprocess
import sys
import time

import harness
from harness import (Combiner, RoundThread, Security, TempDir, check,
                     wait_until)

harness.load_stubs()

import grpc  # noqa: E402

import fedn_pb2 as fedn  # noqa: E402
import fedn_pb2_grpc as rpc  # noqa: E402
from fedn_client import FednClient, training_meta  # noqa: E402
from npz_lite import npz_bytes, read_npz  # noqa: E402

SESSION = "security"


def b64url(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def jwt(claims, secret, alg="HS256"):
    """A JWT signed here (for tokens `rondo token create` would not make)."""
    header = b64url(json.dumps({"alg": alg, "typ": "JWT"}).encode())
    payload = b64url(json.dumps(claims).encode())
    signing = f"{header}.{payload}".encode()
    if alg == "none":
        return f"{header}.{payload}."
    digest = {"HS256": hashlib.sha256, "HS512": hashlib.sha512}[alg]
    sig = hmac.new(secret, signing, digest).digest()
    return f"{header}.{payload}.{b64url(sig)}"


def secret_of(sec):
    with open(sec.secret_file, "rb") as f:
        return f.read().strip()


def model(a):
    return npz_bytes({"0": [a] * 100})


def code_of(fn):
    """The status code of calling `fn` (OK when it returns)."""
    try:
        fn()
        return grpc.StatusCode.OK
    except grpc.RpcError as e:
        return e.code()


class Raw:
    """Stubs on one channel, calling with explicit metadata."""

    def __init__(self, address, credentials=None):
        self.channel = (grpc.secure_channel(address, credentials)
                        if credentials is not None
                        else grpc.insecure_channel(address))
        self.connector = rpc.ConnectorStub(self.channel)
        self.combiner = rpc.CombinerStub(self.channel)
        self.models = rpc.ModelServiceStub(self.channel)
        self.control = rpc.ControlStub(self.channel)

    def client_calls(self, client_id="c0"):
        """Every method a client calls, as closures taking metadata."""
        me = fedn.Client(name=client_id, client_id=client_id,
                         role=fedn.CLIENT)

        def upload(md):
            mid = f"u-{time.monotonic_ns()}"
            reqs = iter([fedn.ModelRequest(id=mid, data=b"x",
                                           status=fedn.IN_PROGRESS),
                         fedn.ModelRequest(id=mid, status=fedn.OK)])
            return self.models.Upload(reqs, metadata=md, timeout=10)

        return {
            "SendHeartbeat": lambda md: self.connector.SendHeartbeat(
                fedn.Heartbeat(sender=me), metadata=md, timeout=10),
            "SendStatus": lambda md: self.connector.SendStatus(
                fedn.Status(sender=me, status="hi"), metadata=md,
                timeout=10),
            "TaskStream": lambda md: list(self.combiner.TaskStream(
                fedn.ClientAvailableMessage(sender=me), metadata=md,
                timeout=3)),
            "SendModelUpdate": lambda md: self.combiner.SendModelUpdate(
                fedn.ModelUpdate(sender=me, model_id="m",
                                 model_update_id="u",
                                 meta=training_meta(1, "{}")),
                metadata=md, timeout=10),
            "SendModelValidation":
                lambda md: self.combiner.SendModelValidation(
                    fedn.ModelValidation(sender=me, model_id="m",
                                         data="{}"),
                    metadata=md, timeout=10),
            "SendModelPrediction":
                lambda md: self.combiner.SendModelPrediction(
                    fedn.ModelPrediction(sender=me, model_id="m",
                                         data="{}"),
                    metadata=md, timeout=10),
            "Upload": upload,
            "Download": lambda md: list(self.models.Download(
                fedn.ModelRequest(id="seed"), metadata=md, timeout=10)),
        }

    def admin_calls(self):
        req = fedn.ControlRequest(command=fedn.START, parameter=[
            fedn.Parameter(key="round_id", value="evil"),
            fedn.Parameter(key="model_id", value="seed")])
        return {
            "Control.Start": lambda md: self.control.Start(
                req, metadata=md, timeout=10),
            "Control.Stop": lambda md: self.control.Stop(
                fedn.ControlRequest(), metadata=md, timeout=10),
            "Control.FlushAggregationQueue":
                lambda md: self.control.FlushAggregationQueue(
                    fedn.ControlRequest(), metadata=md, timeout=10),
            "ListActiveClients": lambda md: self.connector.ListActiveClients(
                fedn.ListClientsRequest(), metadata=md, timeout=10),
            "AcceptingClients": lambda md: self.connector.AcceptingClients(
                fedn.ConnectionRequest(), metadata=md, timeout=10),
        }


def bearer(token, scheme="Bearer"):
    return [("authorization", f"{scheme} {token}")]


def health_ok(address, credentials=None):
    """grpc.health.v1 Check without a token, by hand-built request."""
    channel = (grpc.secure_channel(address, credentials)
               if credentials is not None else grpc.insecure_channel(address))
    check_rpc = channel.unary_unary(
        "/grpc.health.v1.Health/Check",
        request_serializer=lambda b: b, response_deserializer=lambda b: b)
    reply = check_rpc(b"", timeout=10)
    # HealthCheckResponse{status=SERVING(1)}: field 1, varint 1.
    return reply == b"\x08\x01"


# -- cases ---------------------------------------------------------------------

def case_tls_token_round():
    """A FEDn-like client over TLS (CA file) with a client token trains and
    validates a round started with an admin token; a plaintext client on the
    TLS port fails at once, and the combiner logs the failed handshake."""
    with TempDir("rondo-sec-") as d:
        sec = Security(d)
        with Combiner(d, args=sec.combiner_args()) as comb:
            creds = sec.credentials()
            admin_token = sec.token("admin")
            admin = FednClient(comb.address, "admin", credentials=creds,
                               token=admin_token)
            c0 = FednClient(comb.address, "c0", credentials=creds,
                            token=sec.token("client", "c0"))
            try:
                check(admin.upload("seed", model(1.0)).status == fedn.OK,
                      "seed upload")
                c0.start()
                wait_until(lambda: c0.heartbeats or c0.heartbeat_errors, 10,
                           "a heartbeat reply")
                check(c0.heartbeats == ["heartbeat received"][:len(
                    c0.heartbeats)] and not c0.heartbeat_errors,
                      f"heartbeats {c0.heartbeats} {c0.heartbeat_errors}")
                rnd = RoundThread(comb.address, {
                    "round_id": "1", "session_id": SESSION,
                    "model_id": "seed", "round_timeout": 60,
                    "clients_required": 1, "validate": "false"},
                    credentials=creds, token=admin_token)
                task = c0.next_task(60)
                check(task is not None, "c0 got no task")
                answer = c0.train(task, lambda m: model(3.0), 10)
                check(answer == "accepted", f"update: {answer}")
                rec = rnd.result(90)
                check(rec["status"] == "success", f"round {rec}")
                check(rec["clients_accepted"] == ["c0"], f"round {rec}")
                new = rec["model_id"]
                got = read_npz(admin.download(new))["0"]
                check(all(abs(x - 3.0) < 1e-6 for x in got), f"model {got[:3]}")
                rnd = RoundThread(comb.address, {
                    "round_id": "1-v", "session_id": SESSION,
                    "model_id": new, "task": "validation",
                    "round_timeout": 60, "clients_required": 1},
                    credentials=creds, token=admin_token)
                v = c0.next_task(60)
                check(v is not None and v.type == fedn.MODEL_VALIDATION,
                      f"validation task {v}")
                check(c0.validate(v, {"test_accuracy": 0.5}) == "accepted",
                      "validation")
                rec = rnd.result(90)
                check(rec["status"] == "success", f"validation round {rec}")
                check(rec["validations"][0]["metrics"]
                      == {"test_accuracy": 0.5}, f"validations {rec}")
            finally:
                c0.close()
                admin.close()
            # Plaintext on the TLS port: UNAVAILABLE at once, never a hang.
            plain = Raw(comb.address)
            t0 = time.monotonic()
            code = code_of(lambda: plain.connector.SendHeartbeat(
                fedn.Heartbeat(), metadata=bearer(admin_token), timeout=20))
            took = time.monotonic() - t0
            check(code == grpc.StatusCode.UNAVAILABLE, f"plaintext: {code}")
            check(took < 5, f"plaintext client failed only after {took:.1f} s")
            wait_until(lambda: "andshake" in comb.log(200), 10,
                       "the combiner to log the failed handshake")
            # Health stays open (no token) over TLS.
            check(health_ok(comb.address, creds), "health over TLS")


def case_mutual_tls():
    """--ca --require-client-cert: a client without a certificate fails the
    handshake at once; one with a certificate from the CA (and a token) is
    served."""
    with TempDir("rondo-sec-") as d:
        sec = Security(d)
        with Combiner(d, args=sec.combiner_args(mutual=True)) as comb:
            token = sec.token("client", "c0")
            no_cert = Raw(comb.address, sec.credentials())
            t0 = time.monotonic()
            code = code_of(lambda: no_cert.connector.SendHeartbeat(
                fedn.Heartbeat(sender=fedn.Client(client_id="c0")),
                metadata=bearer(token), timeout=20))
            check(code == grpc.StatusCode.UNAVAILABLE, f"no cert: {code}")
            check(time.monotonic() - t0 < 5, "no cert: slow failure")
            with_cert = Raw(comb.address, sec.credentials(client_cert=True))
            r = with_cert.connector.SendHeartbeat(
                fedn.Heartbeat(sender=fedn.Client(client_id="c0")),
                metadata=bearer(token), timeout=10)
            check(r.response == "heartbeat received", f"with cert: {r}")
            # The certificate does not replace the token.
            code = code_of(lambda: with_cert.connector.SendHeartbeat(
                fedn.Heartbeat(sender=fedn.Client(client_id="c0")),
                timeout=10))
            check(code == grpc.StatusCode.UNAUTHENTICATED,
                  f"cert without token: {code}")


def case_unauthenticated():
    """No token, a bad signature, an expired token, alg none, HS512 and the
    wrong scheme are UNAUTHENTICATED on every client method; health stays
    open."""
    with TempDir("rondo-sec-") as d:
        sec = Security(d)
        with Combiner(d, args=sec.combiner_args(tls=False)) as comb:
            raw = Raw(comb.address)
            secret = secret_of(sec)
            now = int(time.time())
            bad = {
                "no token": [],
                "bad signature": bearer(jwt({"role": "client"},
                                            b"another-secret-" * 4)),
                "expired": bearer(jwt({"role": "client", "client_id": "c0",
                                       "exp": now - 60}, secret)),
                "alg none": bearer(jwt({"role": "admin"}, secret, "none")),
                "HS512": bearer(jwt({"role": "admin"}, secret, "HS512")),
                "wrong scheme": bearer(sec.token("client", "c0"), "Token"),
                "garbage": bearer("not.a.jwt"),
            }
            for method, call in raw.client_calls().items():
                for what, md in bad.items():
                    code = code_of(lambda: call(md))
                    check(code == grpc.StatusCode.UNAUTHENTICATED,
                          f"{method} with {what}: {code}")
            # The same calls with a good token pass the gate.
            good = bearer(sec.token("client", "c0"))
            code = code_of(lambda: raw.client_calls()["SendHeartbeat"](good))
            check(code == grpc.StatusCode.OK, f"good token: {code}")
            check(health_ok(comb.address), "health without a token")
            check("invalid token" in comb.log(400), "refusals are logged")


def case_admin_methods():
    """A client token on Control.Start/Stop/FlushAggregationQueue,
    ListActiveClients and AcceptingClients is PERMISSION_DENIED and changes
    nothing; an admin token and FEDn's `controller` role are allowed."""
    with TempDir("rondo-sec-") as d:
        sec = Security(d)
        with Combiner(d, args=sec.combiner_args(tls=False)) as comb:
            raw = Raw(comb.address)
            client = bearer(sec.token("client", "c0"))
            role_only = bearer(sec.token("client"))
            for method, call in raw.admin_calls().items():
                for md in (client, role_only):
                    code = code_of(lambda: call(md))
                    check(code == grpc.StatusCode.PERMISSION_DENIED,
                          f"{method} with a client token: {code}")
                check(code_of(lambda: call([]))
                      == grpc.StatusCode.UNAUTHENTICATED,
                      f"{method} without a token")
            admin = bearer(sec.token("admin"))
            controller = bearer(jwt({"role": "controller"}, secret_of(sec)))
            for md in (admin, controller):
                r = raw.connector.ListActiveClients(
                    fedn.ListClientsRequest(), metadata=md, timeout=10)
                check(len(r.client) == 0, f"clients {r}")
                r = raw.control.FlushAggregationQueue(
                    fedn.ControlRequest(), metadata=md, timeout=10)
                check(r.message == "flushed 0 jobs", f"flush {r}")
            check("needs role admin" in comb.log(400),
                  "the refusal is logged")


def case_impersonation():
    """c1's token may not act as c0: TaskStream, heartbeat, status, upload
    and the update for c0's own task are PERMISSION_DENIED (logged with both
    names) while c0 gets its task and its round succeeds."""
    with TempDir("rondo-sec-") as d:
        sec = Security(d)
        with Combiner(d, args=sec.combiner_args(tls=False)) as comb:
            admin_token = sec.token("admin")
            admin = FednClient(comb.address, "admin", token=admin_token)
            c0 = FednClient(comb.address, "c0", token=sec.token("client", "c0"))
            raw = Raw(comb.address)
            c1 = bearer(sec.token("client", "c1")) + [("client", "c0")]
            try:
                admin.upload("seed", model(1.0))
                c0.start()
                wait_until(lambda: c0.heartbeats, 10, "c0's heartbeat")
                calls = raw.client_calls("c0")
                for method in ("TaskStream", "SendHeartbeat", "SendStatus",
                               "Upload", "SendModelValidation"):
                    code = code_of(lambda: calls[method](c1))
                    check(code == grpc.StatusCode.PERMISSION_DENIED,
                          f"{method} as c0 with c1's token: {code}")
                rnd = RoundThread(comb.address, {
                    "round_id": "1", "session_id": SESSION,
                    "model_id": "seed", "round_timeout": 60,
                    "clients_required": 1, "validate": "false"},
                    token=admin_token)
                task = c0.next_task(60)
                check(task is not None, "c0 got no task")
                # The strongest forgery: c0's own task and correlation id.
                forged = fedn.ModelUpdate(
                    sender=fedn.Client(name="c0", client_id="c0",
                                       role=fedn.CLIENT),
                    model_id="seed", model_update_id="seed",
                    correlation_id=task.correlation_id,
                    meta=training_meta(1000, task.data))
                code = code_of(lambda: raw.combiner.SendModelUpdate(
                    forged, metadata=c1, timeout=10))
                check(code == grpc.StatusCode.PERMISSION_DENIED,
                      f"update as c0 with c1's token: {code}")
                answer = c0.train(task, lambda m: model(5.0), 10)
                check(answer == "accepted", f"c0's update: {answer}")
                rec = rnd.result(90)
                check(rec["status"] == "success", f"round {rec}")
                check(rec["clients_accepted"] == ["c0"], f"round {rec}")
                got = read_npz(admin.download(rec["model_id"]))["0"]
                check(all(abs(x - 5.0) < 1e-6 for x in got),
                      f"aggregate {got[:3]}")
                check(not c0.heartbeat_errors and c0.stream_error is None,
                      "c0 was disturbed")
                log = comb.log(400)
                check("token of client 'c1' tried to act as client 'c0'"
                      in log, "the refusal names both clients")
            finally:
                c0.close()
                admin.close()


def case_model_access():
    """A client may download the global model of its task but not another
    client's update; an upload never overwrites an existing model."""
    with TempDir("rondo-sec-") as d:
        sec = Security(d)
        with Combiner(d, args=sec.combiner_args(tls=False)) as comb:
            admin_token = sec.token("admin")
            admin = FednClient(comb.address, "admin", token=admin_token)
            c0 = FednClient(comb.address, "c0", token=sec.token("client", "c0"))
            c1 = FednClient(comb.address, "c1", token=sec.token("client", "c1"))
            try:
                admin.upload("seed", model(1.0))
                up = c1.upload("c1-private", model(7.0))
                check(up.status == fedn.OK, f"c1's upload {up}")
                c0.start()
                wait_until(lambda: c0.heartbeats, 10, "c0's heartbeat")
                rnd = RoundThread(comb.address, {
                    "round_id": "1", "session_id": SESSION,
                    "model_id": "seed", "round_timeout": 60,
                    "clients_required": 1, "validate": "false"},
                    token=admin_token)
                task = c0.next_task(60)
                check(task is not None, "c0 got no task")
                check(c0.download("seed") is not None,
                      "c0 cannot download its task's global model")
                try:
                    c0.download_messages("c1-private")
                    raise AssertionError("c0 downloaded c1's update")
                except grpc.RpcError as e:
                    check(e.code() == grpc.StatusCode.PERMISSION_DENIED,
                          f"download of c1's update: {e.code()}")
                    check("c1-private" in e.details()
                          and "global" in e.details(),
                          f"message {e.details()!r}")
                # An admin may read it.
                check(read_npz(admin.download("c1-private"))["0"][0] == 7.0,
                      "admin download")
                for who, mid in ((c0, "seed"), (c1, "c1-private")):
                    try:
                        who.upload(mid, model(9.0))
                        raise AssertionError(f"{who.name} overwrote {mid}")
                    except grpc.RpcError as e:
                        check(e.code() == grpc.StatusCode.ALREADY_EXISTS,
                              f"overwrite of {mid}: {e.code()}")
                        check(mid in e.details(), f"message {e.details()!r}")
                check(read_npz(admin.download("seed"))["0"][0] == 1.0,
                      "the seed changed")
                check(c0.train(task, lambda m: model(2.0), 10) == "accepted",
                      "c0's update")
                check(rnd.result(90)["status"] == "success", "round")
            finally:
                for c in (c0, c1, admin):
                    c.close()


def case_listen_policy():
    """A non-loopback --host without --cert, --key and --auth-secret-file is
    refused (exit 2, naming the missing flags); with them it serves, and
    --insecure starts with a warning; a --host that --cert does not name
    starts with a warning saying how to issue one that does."""
    rondo = harness.rondo_binary()
    with TempDir("rondo-sec-") as d:
        sec = Security(d)

        def combiner(*extra, wait=10):
            return subprocess.Popen(
                [rondo, "combiner", "--host", "0.0.0.0", "--port", "0",
                 "--db", os.path.join(d, f"db-{time.monotonic_ns()}"),
                 "--port-file", os.path.join(d, "port")] + list(extra),
                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)

        p = combiner()
        out, _ = p.communicate(timeout=30)
        check(p.returncode == 2, f"exit {p.returncode}: {out}")
        for flag in ("--cert", "--key", "--auth-secret-file", "0.0.0.0"):
            check(flag in out, f"{flag} not named in: {out}")
        p = combiner("--cert", sec.cert, "--key", sec.key)
        out, _ = p.communicate(timeout=30)
        check(p.returncode == 2 and "--auth-secret-file" in out,
              f"exit {p.returncode}: {out}")
        # Bad security settings: exit 2 naming the flag, nothing created.
        short = os.path.join(d, "short-secret")
        with open(short, "w") as f:
            f.write("too short\n")
        for extra, named in ((["--auth-secret-file", short],
                              "--auth-secret-file"),
                             (["--cert", sec.cert, "--key", sec.key,
                               "--auth-secret-file", sec.secret_file,
                               "--require-client-cert"], "--ca"),
                             (["--cert", os.path.join(d, "missing.crt"),
                               "--key", sec.key, "--auth-secret-file",
                               sec.secret_file], "--cert")):
            db = os.path.join(d, "db-bad")
            p = subprocess.run(
                [rondo, "combiner", "--host", "127.0.0.1", "--port", "0",
                 "--db", db] + extra, capture_output=True, text=True,
                timeout=30)
            check(p.returncode == 2 and named in p.stderr,
                  f"{extra}: exit {p.returncode}: {p.stderr}")
            check(not os.path.exists(db), f"{extra}: created {db}")
        for extra in (["--insecure"], sec.combiner_args()):
            port_file = os.path.join(d, "port")
            if os.path.exists(port_file):
                os.remove(port_file)
            p = combiner(*extra)
            try:
                wait_until(lambda: os.path.exists(port_file)
                           or p.poll() is not None, 30, "the port file")
                check(p.poll() is None, f"{extra}: exited {p.returncode}")
            finally:
                p.terminate()
                out, _ = p.communicate(timeout=30)
            if extra == ["--insecure"]:
                warned = [line for line in out.splitlines()
                          if "warn" in line and "0.0.0.0" in line]
                check(warned, f"no warning naming the address: {out}")
            check(p.returncode == 0, f"{extra}: exit {p.returncode}: {out}")
            if extra != ["--insecure"]:
                check("does not name" not in out,
                      f"0.0.0.0 is no particular host, yet: {out}")
        # A --host the certificate (IP:127.0.0.1) does not name: clients
        # dialling it would fail the handshake, so the combiner warns at
        # start with the command that fixes it.
        for host, warns in (("localhost", True), ("127.0.0.1", False)):
            port_file = os.path.join(d, "port")
            if os.path.exists(port_file):
                os.remove(port_file)
            p = subprocess.Popen(
                [rondo, "combiner", "--host", host, "--port", "0", "--db",
                 os.path.join(d, f"db-{time.monotonic_ns()}"), "--port-file",
                 port_file] + sec.combiner_args(),
                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
            try:
                wait_until(lambda: os.path.exists(port_file)
                           or p.poll() is not None, 30, "the port file")
                check(p.poll() is None, f"{host}: exited {p.returncode}")
            finally:
                p.terminate()
                out, _ = p.communicate(timeout=30)
            warned = [line for line in out.splitlines()
                      if "warn" in line and f"does not name {host}" in line
                      and "IP:127.0.0.1" in line
                      and f"rondo certs issue DIR NAME --host {host}" in line]
            check(bool(warned) == warns, f"--host {host}: {out}")


def case_token_cli():
    """`rondo token create` / `verify`: claims shown, a bad token exits 1."""
    rondo = harness.rondo_binary()
    with TempDir("rondo-sec-") as d:
        sec = Security(d)
        token = sec.token("client", "c9", ttl="2h")

        def verify(tok, secret_file=sec.secret_file):
            return subprocess.run(
                [rondo, "token", "verify", "--secret-file", secret_file, tok],
                capture_output=True, text=True, timeout=30)
        r = verify(token)
        check(r.returncode == 0, f"verify: {r.stdout} {r.stderr}")
        for text in ("signature: ok", "role: client", "client: c9",
                     "expires: "):
            check(text in r.stdout, f"{text!r} not in {r.stdout}")
        other = os.path.join(d, "other-secret")
        with open(other, "w") as f:
            f.write("y" * 40)
        r = verify(token, other)
        check(r.returncode == 1 and "NOT verify" in r.stdout, f"{r.stdout}")
        expired = jwt({"role": "client", "exp": int(time.time()) - 5},
                      secret_of(sec))
        r = verify(expired)
        check(r.returncode == 1 and "expired" in r.stdout, f"{r.stdout}")
        r = verify(jwt({"role": "admin"}, secret_of(sec), "none"))
        check(r.returncode == 1, f"alg none verified: {r.stdout}")
        r = subprocess.run([rondo, "token", "verify", "--secret-file",
                            sec.secret_file, "-"], input=token + "\n",
                           capture_output=True, text=True, timeout=30)
        check(r.returncode == 0, f"stdin: {r.stdout} {r.stderr}")
        r = subprocess.run([rondo, "token", "create", "--secret-file",
                            sec.secret_file, "--ttl", "0"],
                           capture_output=True, text=True, timeout=30)
        check(r.returncode == 0, r.stderr)
        r = verify(r.stdout.strip())
        check("expires: never" in r.stdout, r.stdout)
        r = subprocess.run([rondo, "token", "create", "--secret-file",
                            sec.secret_file, "--ttl", "5x"],
                           capture_output=True, text=True, timeout=30)
        check(r.returncode != 0 and "--ttl" in r.stderr, r.stderr)


def case_message_limits():
    """No peer makes the combiner take a big message: a unary call over
    4 MiB is refused by gRPC, an upload chunk over 4 MiB by the edge, both
    with RESOURCE_EXHAUSTED; normal traffic goes on."""
    with TempDir("rondo-sec-") as d, Combiner(d) as comb:
        channel = grpc.insecure_channel(
            comb.address, options=[("grpc.max_send_message_length", -1)])
        connector = rpc.ConnectorStub(channel)
        models = rpc.ModelServiceStub(channel)
        big = fedn.Heartbeat(sender=fedn.Client(client_id="c0",
                                                name="x" * (5 << 20)))
        try:
            connector.SendHeartbeat(big, timeout=20)
            raise AssertionError("a 5 MiB heartbeat was taken")
        except grpc.RpcError as e:
            check(e.code() == grpc.StatusCode.RESOURCE_EXHAUSTED,
                  f"5 MiB heartbeat: {e.code()} {e.details()}")
        for size, where in (((4 << 20) + 1, "max_upload_chunk_bytes"),
                            (6 << 20, "")):
            reqs = iter([fedn.ModelRequest(id="big", data=b"x" * size,
                                           status=fedn.IN_PROGRESS),
                         fedn.ModelRequest(id="big", status=fedn.OK)])
            try:
                models.Upload(reqs, timeout=20)
                raise AssertionError(f"a chunk of {size} bytes was taken")
            except grpc.RpcError as e:
                check(e.code() == grpc.StatusCode.RESOURCE_EXHAUSTED,
                      f"chunk of {size}: {e.code()} {e.details()}")
                check(where in e.details(), f"message {e.details()!r}")
        r = connector.SendHeartbeat(fedn.Heartbeat(
            sender=fedn.Client(client_id="c0")), timeout=10)
        check(r.response == "heartbeat received", f"after: {r}")
        c = FednClient(comb.address, "c0")
        try:
            check(c.upload("fine", b"y" * (3 << 20)).status == fedn.OK,
                  "a 3 MiB model in 1 MiB chunks")
        finally:
            c.close()


def case_stream_token_expires():
    """A TaskStream outlives the call that opened it: when its token
    expires the combiner ends it with UNAUTHENTICATED (a FEDn client that
    only keeps its stream open would otherwise keep receiving tasks on an
    expired token); a stream opened with a token without exp stays open."""
    with TempDir("rondo-sec-") as d:
        sec = Security(d)
        with Combiner(d, args=sec.combiner_args(tls=False)) as comb:
            lasting = FednClient(comb.address, "c1",
                                 token=sec.token("client", "c1", ttl="0"))
            # Made last, just before it is used: a loaded machine may take
            # seconds per `rondo token create`.
            short = FednClient(comb.address, "c0",
                               token=sec.token("client", "c0", ttl="6s"))
            try:
                opened = time.time()
                short.start()
                lasting.start()
                check(short.stream_ended.wait(30),
                      "c0's task stream did not end within 30 s of opening "
                      "with a 6 s token")
                took = time.time() - opened
                e = short.stream_error
                check(e is not None
                      and e.code() == grpc.StatusCode.UNAUTHENTICATED
                      and "expired" in e.details(),
                      f"c0's stream ended with {e}")
                check(took >= 2, f"c0's stream ended after {took:.1f} s, "
                                 "before its token expired")
                check(not lasting.stream_ended.is_set(),
                      "c1's stream (no exp) ended too")
                # The combiner writes its log line as it ends the stream:
                # the client may see the end first.
                deadline = time.time() + 10
                while "expired" not in comb.log(400) \
                        and time.time() < deadline:
                    time.sleep(0.1)
                check("expired" in comb.log(400),
                      "the combiner logs the expired stream")
            finally:
                short.close()
                lasting.close()


CASES = {
    "message_limits": case_message_limits,
    "tls_token_round": case_tls_token_round,
    "mutual_tls": case_mutual_tls,
    "unauthenticated": case_unauthenticated,
    "admin_methods": case_admin_methods,
    "impersonation": case_impersonation,
    "model_access": case_model_access,
    "listen_policy": case_listen_policy,
    "token_cli": case_token_cli,
    "stream_token_expires": case_stream_token_expires,
}

if __name__ == "__main__":
    sys.exit(harness.run_cases(CASES, sys.argv[1:]))
