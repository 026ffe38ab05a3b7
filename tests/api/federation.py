"""A small real federation for the API tests: `rondo controller` (HTTP API
on port 0, bearer tokens), one `rondo combiner` joined to it (with
--metrics-port 0) and two `rondo client`s running tests/cluster/package.
Standard library only; every wait is bounded."""

import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
PACKAGE = os.path.join(HERE, "..", "cluster", "package")
sys.path.insert(0, os.path.join(HERE, "..", "cluster"))
from cluster_test import Cluster, check  # noqa: E402,F401

# name -> (delta added to the model, num_examples)
CLIENTS = {"c1": (1.0, 10), "c2": (3.0, 30)}


class Federation(Cluster):
    """Cluster's process handling (spawn, cli, stop, tails) with this
    federation's own start()."""

    def __init__(self, rondo, work):
        super().__init__(rondo, work)
        self.secret_file = os.path.join(work, "api.secret")
        with open(self.secret_file, "w") as f:
            f.write("s" * 48 + "\n")

    def wait_file(self, name, file):
        path = os.path.join(self.work, file)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if os.path.exists(path):
                text = open(path).read().strip()
                if text:
                    return int(text)
            if self.procs[name].poll() is not None:
                raise RuntimeError(name + " exited early")
            time.sleep(0.05)
        raise RuntimeError(name + " wrote no " + file + " within 30 s")

    def start_combiner(self, extra):
        """Starts `rondo combiner` with --metrics-port 0 and the flags
        `extra`; sets combiner_metrics (its /metrics URL). @returns its
        client port."""
        w = self.work
        self.spawn("combiner", [
            "combiner", "--port", "0",
            "--port-file", os.path.join(w, "combiner.port"),
            "--metrics-port", "0",
            "--metrics-port-file", os.path.join(w, "combiner.metrics"),
            "--db", os.path.join(w, "comb-db")] + extra)
        port = self.wait_file("combiner", "combiner.port")
        self.combiner_metrics = "http://127.0.0.1:%d/metrics" % \
            self.wait_file("combiner", "combiner.metrics")
        return port

    def start_controller(self, client_wait=60, extra=(), scheme="http"):
        """Starts `rondo controller` (tokens; the flags `extra`); sets
        controller (its middleman address) and api (scheme://host:port of
        its HTTP API)."""
        w = self.work
        self.spawn("controller", [
            "controller", "--port", "0",
            "--port-file", os.path.join(w, "controller.port"),
            "--http-port", "0",
            "--http-port-file", os.path.join(w, "controller.http"),
            "--auth-secret-file", self.secret_file,
            "--db", os.path.join(w, "ctrl-db"), "--client-wait",
            str(client_wait)] + list(extra))
        self.controller = "127.0.0.1:%d" % self.wait_file(
            "controller", "controller.port")
        self.api = "%s://127.0.0.1:%d" % (scheme, self.wait_file(
            "controller", "controller.http"))

    def start(self, clients=CLIENTS, via_api=False, client_wait=60):
        """Starts the controller (its --client-wait `client_wait` seconds),
        the combiner and `clients`; with via_api the clients ask the
        controller's API for their combiner (clients/add, a client token)
        instead of dialing it."""
        w = self.work
        self.start_controller(client_wait)
        port = self.start_combiner(["--name", "combiner-a",
                                    "--controller", self.controller])
        self.admin = self.token("admin")
        if via_api:
            token_file = os.path.join(w, "client.token")
            with open(token_file, "w") as f:
                f.write(self.token("client") + "\n")
            self.client_where = ["--api-url", self.api, "--token-file",
                                 token_file]
        else:
            self.client_where = ["--host", "127.0.0.1", "--port", str(port)]
        for name, (delta, n) in clients.items():
            self.start_client(name, delta, n)

    def start_client(self, name, delta, n):
        """Starts `rondo client` `name` running the package (adding
        `delta`, reporting `n` examples), where start() put the others."""
        env = dict(os.environ, RONDO_TEST_NAME=name,
                   RONDO_TEST_DELTA=str(delta),
                   RONDO_TEST_EXAMPLES=str(n), RONDO_TEST_MARKS=self.marks)
        self.spawn(name, ["client"] + self.client_where
                   + ["--name", name, "--package", PACKAGE], env=env)

    def cli(self, *args, timeout=120):
        """An operator command against the API with an admin token."""
        return super().cli(*args, "--token", self.admin, timeout=timeout)

    def token(self, role):
        r = subprocess.run([self.rondo, "token", "create", "--secret-file",
                            self.secret_file, "--role", role, "--ttl", "1h"],
                           capture_output=True, text=True, timeout=30)
        if r.returncode != 0:
            raise RuntimeError("rondo token create: " + r.stderr)
        return r.stdout.strip()

    def seed(self):
        import sys
        sys.path.insert(0, PACKAGE)
        import npz_task
        from array import array
        path = os.path.join(self.work, "seed.npz")
        npz_task.write_npz(path, [("0.npy", "<f4", (3,),
                                   array("f", [0, 0, 0]))])
        r = self.cli("seed", path)
        if r.returncode != 0:
            raise RuntimeError("rondo seed: " + r.stderr)
        return r.stdout.strip()


def http_get(url, token=None, timeout=10):
    """(status, body text) of a GET; HTTP errors are answers, not
    exceptions."""
    req = urllib.request.Request(url)
    if token:
        req.add_header("Authorization", "Bearer " + token)
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def parse_metrics(text):
    """{series: value} of a Prometheus text exposition, series written as
    exposed, e.g. 'rondo_rounds_total{kind="training",status="success"}'."""
    out = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        series, _, value = line.rpartition(" ")
        out[series] = float(value)
    return out


def run_case(prefix, body, keep, make=Federation):
    """Starts a Federation of RONDO_BIN (make(rondo, work): Federation or
    a subclass) in a new work directory, runs body(federation, work),
    stops it. @returns the exit code: 0 when body
    returned, 1 (with the logs' tails; the directory is kept) when it
    raised, 2 without RONDO_BIN."""
    rondo = os.environ.get("RONDO_BIN")
    if not rondo:
        print("RONDO_BIN is not set")
        return 2
    work = tempfile.mkdtemp(prefix=prefix)
    f = make(rondo, work)
    ok = False
    try:
        body(f, work)
        ok = True
    except Exception as e:  # noqa: BLE001 - reported with the logs
        print("FAILED:", e)
    finally:
        f.stop()
        if not ok:
            f.tails()
            print("work directory kept:", work)
        elif not keep:
            shutil.rmtree(work, ignore_errors=True)
    return 0 if ok else 1
