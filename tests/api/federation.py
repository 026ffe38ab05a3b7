"""A small real federation for the API tests: `rondo controller` (HTTP API
on port 0, bearer tokens), one `rondo combiner` joined to it (with
--metrics-port 0) and two `rondo client`s running tests/cluster/package.
Standard library only; every wait is bounded."""

import os
import signal
import subprocess
import time
import urllib.error
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
PACKAGE = os.path.join(HERE, "..", "cluster", "package")

# name -> (delta added to the model, num_examples)
CLIENTS = {"c1": (1.0, 10), "c2": (3.0, 30)}


class Federation:
    def __init__(self, rondo, work):
        self.rondo, self.work = rondo, work
        self.procs = {}
        self.marks = os.path.join(work, "marks")
        os.makedirs(self.marks, exist_ok=True)
        self.secret_file = os.path.join(work, "api.secret")
        with open(self.secret_file, "w") as f:
            f.write("s" * 48 + "\n")

    def spawn(self, name, args, env=None):
        log = open(os.path.join(self.work, name + ".log"), "w")
        self.procs[name] = subprocess.Popen(
            [self.rondo] + args, stdout=log, stderr=subprocess.STDOUT,
            env=env)

    def wait_port(self, name, file):
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

    def start(self, clients=CLIENTS, client_settings=None):
        w = self.work
        self.spawn("controller", [
            "controller", "--port", "0",
            "--port-file", os.path.join(w, "controller.port"),
            "--http-port", "0",
            "--http-port-file", os.path.join(w, "controller.http"),
            "--auth-secret-file", self.secret_file,
            "--db", os.path.join(w, "ctrl-db"), "--client-wait", "60"])
        self.controller = "127.0.0.1:%d" % self.wait_port(
            "controller", "controller.port")
        self.api = "http://127.0.0.1:%d" % self.wait_port(
            "controller", "controller.http")
        self.spawn("combiner", [
            "combiner", "--port", "0",
            "--port-file", os.path.join(w, "combiner.port"),
            "--metrics-port", "0",
            "--metrics-port-file", os.path.join(w, "combiner.metrics"),
            "--db", os.path.join(w, "comb-db"), "--name", "combiner-a",
            "--controller", self.controller])
        port = self.wait_port("combiner", "combiner.port")
        self.combiner_metrics = "http://127.0.0.1:%d/metrics" % \
            self.wait_port("combiner", "combiner.metrics")
        for name, (delta, n) in clients.items():
            env = dict(os.environ, RONDO_TEST_NAME=name,
                       RONDO_TEST_DELTA=str(delta),
                       RONDO_TEST_EXAMPLES=str(n), RONDO_TEST_MARKS=self.marks)
            self.spawn(name, ["client", "--host", "127.0.0.1", "--port",
                              str(port), "--name", name, "--package",
                              PACKAGE], env=env)
        self.admin = self.token("admin")

    def token(self, role):
        r = subprocess.run([self.rondo, "token", "create", "--secret-file",
                            self.secret_file, "--role", role, "--ttl", "1h"],
                           capture_output=True, text=True, timeout=30)
        if r.returncode != 0:
            raise RuntimeError("rondo token create: " + r.stderr)
        return r.stdout.strip()

    def cli(self, *args, timeout=120):
        return subprocess.run([self.rondo] + list(args)
                              + ["--controller", self.controller],
                              capture_output=True, text=True,
                              timeout=timeout)

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

    def stop(self):
        for p in self.procs.values():
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in self.procs.values():
            try:
                p.wait(timeout=15)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait(timeout=15)

    def tails(self):
        for name in sorted(os.listdir(self.work)):
            if name.endswith(".log"):
                lines = open(os.path.join(self.work, name),
                             errors="replace").read().splitlines()[-15:]
                print("---- %s (last %d lines)" % (name, len(lines)))
                print("\n".join(lines))


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


def check(cond, what):
    if not cond:
        raise AssertionError(what)
    print("ok:", what, flush=True)
