#!/usr/bin/env python3
"""The operator commands (`rondo seed`, `rondo session`, `rondo models`)
against a real `rondo controller`'s HTTP API: what a user sees when the
controller is not there, when the token or the CA is wrong, a seed model's
round trip, unknown ids, the long-polled session wait, and a followed
session that fails. Standard library only; every wait is bounded."""

import json
import os
import socket
import subprocess
import time
import urllib.error
import urllib.request

from cli_cases import check, run_cases

RONDO = os.environ.get("RONDO_BIN", "rondo")
# One tensor of three float32 zeros, as numpy.savez writes it (stored zip).
SEED_NPZ_PY = """
import io, struct, sys, zipfile
header = b"{'descr': '<f4', 'fortran_order': False, 'shape': (3,), }"
header += b" " * (63 - len(header) % 64) + b"\\n"
npy = b"\\x93NUMPY\\x01\\x00" + struct.pack("<H", len(header)) + header
npy += struct.pack("<3f", 0.0, 1.5, -2.0)
with zipfile.ZipFile(sys.argv[1], "w", zipfile.ZIP_STORED) as z:
    z.writestr("0.npy", npy)
"""


def run(*args, timeout=60):
    return subprocess.run([RONDO] + [str(a) for a in args],
                          capture_output=True, text=True, timeout=timeout)


def wait_port(path, proc, seconds=30):
    deadline = time.monotonic() + seconds
    while not (os.path.exists(path) and open(path).read().strip()):
        check(proc.poll() is None, f"the controller exited ({proc.returncode})")
        check(time.monotonic() < deadline, f"{path} did not appear")
        time.sleep(0.05)
    return int(open(path).read())


class Controller:
    """A `rondo controller` on loopback with its HTTP API on a free port."""

    def __init__(self, d, *flags):
        self.log = open(os.path.join(d, "controller.log"), "w")
        self.proc = subprocess.Popen(
            [RONDO, "controller", "--db", os.path.join(d, "ctrl-db"),
             "--port", "0", "--port-file", os.path.join(d, "ctrl.port"),
             "--http-port", "0", "--http-port-file",
             os.path.join(d, "api.port")] + list(flags),
            stdout=self.log, stderr=subprocess.STDOUT)
        self.api = "127.0.0.1:%d" % wait_port(os.path.join(d, "api.port"),
                                               self.proc)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.proc.terminate()
        code = self.proc.wait(timeout=30)
        check(exc[0] is not None or code == 0,
              f"the controller exits 0 on SIGTERM, not {code}")


def make_seed(d):
    path = os.path.join(d, "seed.npz")
    subprocess.run(["/usr/bin/python3", "-c", SEED_NPZ_PY, path], check=True,
                   timeout=30)
    return path


def secret_file(d):
    path = os.path.join(d, "token-secret")
    with open(os.open(path, os.O_WRONLY | os.O_CREAT, 0o600), "w") as f:
        f.write("operator-test-secret-0123456789abcdef0123456789\n")
    return path


def token(secret, role):
    r = run("token", "create", "--secret-file", secret, "--role", role,
            "--ttl", "1h")
    check(r.returncode == 0, r.stderr)
    return r.stdout.strip()


def case_unreachable(d):
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    r = run("session", "list", "--controller", f"127.0.0.1:{port}",
            "--timeout", "5")
    check(r.returncode == 1, f"exit {r.returncode}")
    check(f"cannot reach a Rondo controller API at http://127.0.0.1:{port}"
          ": no connection (refused" in r.stderr, r.stderr)


def case_tokens(d):
    secret = secret_file(d)
    with Controller(d, "--auth-secret-file", secret) as c:
        op = ["--controller", c.api]
        r = run("session", "list", *op)
        check(r.returncode == 1 and "refused the token" in r.stderr
              and "HTTP 401" in r.stderr, "no token: " + r.stderr)
        r = run("session", "list", *op, "--token", "not.a.jwt")
        check(r.returncode == 1 and "refused the token" in r.stderr
              and "HTTP 401" in r.stderr, "a bad token: " + r.stderr)
        r = run("session", "list", *op, "--token", token(secret, "client"))
        check(r.returncode == 1 and "refused the token's role" in r.stderr
              and "HTTP 403" in r.stderr, "a client token: " + r.stderr)
        admin = os.path.join(d, "admin.token")
        with open(admin, "w") as f:
            f.write(token(secret, "admin") + "\n")
        r = run("session", "list", *op, "--token-file", admin)
        check(r.returncode == 0
              and r.stdout.startswith("session_id status rounds created"),
              "an admin token from --token-file: " + r.stdout + r.stderr)
        r = run("session", "list", *op, "--token-file", admin, "--token", "x")
        check(r.returncode == 1 and "not both" in r.stderr, r.stderr)


def case_https(d):
    certs, other = os.path.join(d, "certs"), os.path.join(d, "other")
    for folder, names in ((certs, ["ctrl"]), (other, [])):
        check(run("certs", "init", folder).returncode == 0, "certs init")
        for n in names:
            check(run("certs", "issue", folder, n, "--host",
                      "127.0.0.1").returncode == 0, "certs issue")
    tls = ["--cert", f"{certs}/ctrl.crt", "--key", f"{certs}/ctrl.key",
           "--ca", f"{certs}/ca.crt"]
    seed = make_seed(d)
    with Controller(d, *tls) as c:
        r = run("seed", seed, "--controller", c.api, "--ca",
                f"{certs}/ca.crt")
        seed_id = r.stdout.strip()
        check(r.returncode == 0 and seed_id,
              "seed over HTTPS verified with --ca: " + r.stdout + r.stderr)
        r = run("models", "list", "--controller", f"https://{c.api}",
                "--ca", f"{certs}/ca.crt")
        check(r.returncode == 0 and f"\n{seed_id} - - -" in r.stdout,
              "an https:// URL works too: " + r.stdout + r.stderr)
        r = run("models", "list", "--controller", c.api, "--ca",
                f"{other}/ca.crt")
        check(r.returncode == 1 and "does not verify against --ca"
              in r.stderr, "another CA: " + r.stderr)
        r = run("models", "list", "--controller",
                c.api.replace("127.0.0.1", "localhost"), "--ca",
                f"{certs}/ca.crt")
        check(r.returncode == 1 and "does not list the host localhost"
              in r.stderr, "a host the certificate does not list: "
              + r.stderr)
        r = run("models", "list", "--controller", c.api, "--timeout", "5")
        check(r.returncode == 1 and "cannot reach" in r.stderr
              and "give --ca" in r.stderr,
              "plain HTTP to the HTTPS port: " + r.stderr)


def get(api, path):
    """GET http://api/path; @returns (status, JSON body or None)."""
    try:
        with urllib.request.urlopen(f"http://{api}{path}", timeout=30) as r:
            body = r.read()
            return r.status, json.loads(body) if body else None
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"null")


def case_seed_and_export(d):
    seed = make_seed(d)
    with Controller(d) as c:
        op = ["--controller", c.api]
        r = run("seed", seed, *op)
        m1 = r.stdout.strip()
        check(r.returncode == 0 and m1,
              "seed prints its id: " + r.stdout + r.stderr)
        r = run("models", "list", "--json", *op)
        trail = json.loads(r.stdout)
        check([m["model_id"] for m in trail] == [m1]
              and trail[0]["parent_id"] == "", f"the trail: {trail}")
        out = os.path.join(d, "m1.npz")
        r = run("models", "export", m1, out, *op)
        check(r.returncode == 0 and open(out, "rb").read()
              == open(seed, "rb").read(),
              "export gives back the seed's bytes: " + r.stderr)
        r = run("seed", seed, "--model-id", "named-seed", *op)
        check(r.returncode == 0 and r.stdout.strip() == "named-seed"
              and "warning" not in r.stderr,
              "seed --model-id stores it under that id: "
              + r.stdout + r.stderr)
        r = run("models", "list", "--json", *op)
        check(sorted(m["model_id"] for m in json.loads(r.stdout))
              == sorted([m1, "named-seed"]), "the trail has named-seed")
        r = run("seed", seed, "--model-id", "named-seed", *op)
        check(r.returncode == 1 and "named-seed" in r.stderr
              and "already exists" in r.stderr,
              "seeding an id the trail has again: exit 1 naming it: "
              + r.stderr)
        out2 = os.path.join(d, "named.npz")
        r = run("models", "export", "named-seed", out2, *op)
        check(r.returncode == 0 and open(out2, "rb").read()
              == open(seed, "rb").read(),
              "the stored named-seed is untouched: " + r.stderr)
        out = os.path.join(d, "nosuch.npz")
        r = run("models", "export", "nosuch", out, *op)
        check(r.returncode == 1 and "nosuch" in r.stderr
              and not os.path.exists(out)
              and not os.path.exists(out + ".partial"),
              "an unknown model: exit 1 naming it, no file: " + r.stderr)
        r = run("session", "status", "nosuch", *op)
        check(r.returncode == 1 and "nosuch" in r.stderr,
              "an unknown session: " + r.stderr)
        r = run("session", "terminate", "nosuch", *op)
        check(r.returncode == 1 and "nosuch" in r.stderr,
              "terminating an unknown session: " + r.stderr)
        status, body = get(c.api, "/api/v1/sessions/nosuch/wait?timeout=1")
        check(status == 404 and "nosuch" in body["message"],
              f"wait on an unknown session: {status} {body}")
        for bad in ("timeout=0", "timeout=301", "timeout=abc",
                    "after_rounds=-1"):
            status, body = get(c.api, "/api/v1/sessions/x/wait?" + bad)
            check(status == 400 and bad.split("=")[0] in body["message"],
                  f"wait?{bad}: {status} {body}")


def post_json(api, path, body):
    """POST JSON to http://api/path; @returns (status, JSON body)."""
    req = urllib.request.Request(f"http://{api}{path}",
                                 data=json.dumps(body).encode(),
                                 headers={"Content-Type": "application/json"},
                                 method="POST")
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return r.status, json.loads(r.read() or b"null")
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"null")


def case_prune(d):
    """`rondo models prune --keep N` keeps the newest N models' bytes, the
    trail records stay, a pruned model's download is 404 naming it, and a
    bad N is refused naming `keep`."""
    seed = make_seed(d)
    with Controller(d) as c:
        op = ["--controller", c.api]
        ids = ["s1", "s2", "s3", "s4"]
        for i in ids:
            r = run("seed", seed, "--model-id", i, *op)
            check(r.returncode == 0, "seed: " + r.stderr)
        for bad in ("0", "-1", "abc"):
            r = run("models", "prune", "--keep", bad, *op)
            check(r.returncode != 0 and "--keep" in r.stderr,
                  f"prune --keep {bad}: refused naming --keep: " + r.stderr)
        for body in ({"keep": 0}, {"keep": -3}, {"keep": "2"}, {}):
            status, out = post_json(c.api, "/api/v1/models/prune", body)
            check(status == 400 and "keep" in out["message"],
                  f"POST prune {body}: {status} {out}")
        r = run("models", "prune", "--keep", "2", *op)
        check(r.returncode == 0 and "pruned s1\npruned s2\n" in r.stdout
              and "2 models pruned" in r.stdout,
              "prune --keep 2 prunes the two oldest: " + r.stdout + r.stderr)
        r = run("models", "list", "--json", *op)
        check(sorted(m["model_id"] for m in json.loads(r.stdout)) == ids,
              "the trail records stay: " + r.stdout)
        status, body = get(c.api, "/api/v1/models/s1/download")
        check(status == 404 and "s1" in body["message"]
              and "pruned" in body["message"],
              f"a pruned model's download: {status} {body}")
        out = os.path.join(d, "s1.npz")
        r = run("models", "export", "s1", out, *op)
        check(r.returncode == 1 and "s1 was pruned" in r.stderr
              and not os.path.exists(out),
              "exporting a pruned model: exit 1 naming it: " + r.stderr)
        for kept in ("s3", "s4"):
            out = os.path.join(d, kept + ".npz")
            r = run("models", "export", kept, out, *op)
            check(r.returncode == 0 and open(out, "rb").read()
                  == open(seed, "rb").read(), f"{kept} is kept: " + r.stderr)
        r = run("models", "prune", "--keep", "2", *op)
        check(r.returncode == 0 and "0 models pruned" in r.stdout,
              "pruning again prunes nothing: " + r.stdout + r.stderr)


def case_follow_failed_session(d):
    """No combiner joined: the one round fails, the followed session ends
    failed, and `--follow` prints the round and exits 1 saying so."""
    seed = make_seed(d)
    with Controller(d) as c:
        op = ["--controller", c.api]
        check(run("seed", seed, *op).returncode == 0, "seed")
        csv = os.path.join(d, "metrics.csv")
        follow = subprocess.Popen(
            [RONDO, "session", "start", "--session-id", "lonely", "--rounds",
             "1", "--round-timeout", "5", "--grace", "5", "--validate",
             "false", "--follow", "--metrics-csv", csv] + op,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        first = follow.stdout.readline()
        check(first.startswith("session lonely started: 1 round"), first)
        # The round waits for trainers (the controller's client wait): a
        # short wait runs out first.
        t0 = time.monotonic()
        status, body = get(c.api, "/api/v1/sessions/lonely/wait?"
                                  "after_rounds=0&timeout=1")
        took = time.monotonic() - t0
        check(status == 204 and 0.9 < took < 10,
              f"a wait that runs out answers 204 after 1 s: {status} "
              f"in {took:.1f} s")
        # communicate() reads the pipes' descriptors: what readline() had
        # buffered already (the header, at times) is not in `out`.
        out, err = follow.communicate(timeout=120)
        lines = out.splitlines()
        check(follow.returncode == 1, f"exit {follow.returncode}: {out}{err}")
        check(any(x.split()[:2][1:] == ["failed"] for x in lines),
              "the failed round is printed: " + out)
        check("session lonely failed" in out
              and "session lonely ended failed" in err,
              "the end is printed: " + out + err)
        rows = open(csv).read().splitlines()
        check(len(rows) == 2 and rows[1].split(",")[1] == "failed",
              f"metrics.csv: {rows}")
        status, body = get(c.api, "/api/v1/sessions/lonely/wait?timeout=1")
        check(status == 200 and body["session"]["session_id"] == "lonely"
              and len(body["rounds"]) == 1,
              f"wait on an ended session answers at once: {status}")
        r = run("session", "status", "lonely", *op)
        check(r.returncode == 0 and r.stdout.startswith("session lonely "
                                                        "failed"),
              "session status: " + r.stdout + r.stderr)


CASES = {"unreachable": case_unreachable, "tokens": case_tokens,
         "https": case_https, "seed_and_export": case_seed_and_export,
         "follow_failed_session": case_follow_failed_session,
         "prune": case_prune}

if __name__ == "__main__":
    run_cases(CASES, "rondo-operator-")
