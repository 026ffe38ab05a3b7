#!/usr/bin/env python3
"""Client failover across combiners: `rondo client --api-url` leaves a
combiner that went away and asks the controller for another one.

On loopback, with tokens and (by default) TLS everywhere (`rondo certs`):
a controller, combiners A and B, and four clients joining through the
controller's API (clients/add), which downloads the compute package
(tests/cluster/package, uploaded to the controller). Least-loaded
assignment puts two clients on each combiner.

1. A round with all four clients: 4 model updates, FedAvg of all four.
2. A round in which B's clients train slowly; B is killed (SIGKILL)
   while they train. The round ends with A's model. B's clients abandon
   their training (nothing sent for it), log "reassigned from B to A"
   within a bound (--reassign-after 10 s by default, plus detection), and
   open their task streams on A, without downloading the package again.
3. A round on A alone has all four clients' updates (updates_accepted 4)
   and the FedAvg of all four on top of round 2's model.
4. B restarts on its port and database and rejoins; a new client asking
   clients/add gets B, the least loaded combiner.
5. B is killed and restarted at once: that client reconnects to B within
   15 s of the restart (without a reassignment).

Usage: failover_test.py [--plain] [--keep]   (RONDO_BIN names the rondo
binary). Exit 0 on success, 1 on a failed check (with the logs' tails),
2 without RONDO_BIN. Every wait is bounded."""

import argparse
import io
import json
import os
import re
import signal
import ssl
import subprocess
import sys
import tarfile
import time
import urllib.error
import urllib.request

import requests

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "api"))
from federation import Federation, run_case, check  # noqa: E402
from cluster_test import run_session  # noqa: E402
sys.path.insert(0, os.path.join(HERE, "package"))
import npz_task  # noqa: E402

PACKAGE = os.path.join(HERE, "package")
# name -> (delta added to the model, num_examples); assigned in this order,
# least loaded first (ties: the smaller combiner id): A, B, A, B.
CLIENTS = {"c1": (1.0, 10), "c2": (2.0, 20), "c3": (3.0, 30),
           "c4": (4.0, 40)}
EXPECTED = {"c1": "A", "c2": "B", "c3": "A", "c4": "B"}
# The clients' default --reassign-after (seconds).
REASSIGN_AFTER = 10
# From B's death to B's clients' streams open on A: reassign-after, plus
# a heartbeat interval (2 s) and a heartbeat's deadline (5 s), plus the
# ask and the new connection.
FAILOVER_BOUND = REASSIGN_AFTER + 2 + 5 + 13


def wait_until(what, fn, bound, every=0.1):
    """Polls fn() until it returns a true value (bound seconds at most);
    returns that value."""
    deadline = time.monotonic() + bound
    while True:
        got = fn()
        if got:
            return got
        if time.monotonic() > deadline:
            raise AssertionError("%s: not within %d s" % (what, bound))
        time.sleep(every)


class Failover(Federation):
    """A Federation with two combiners, TLS (unless plain) and clients
    joining through the API with a downloaded package."""

    def __init__(self, rondo, work, tls):
        super().__init__(rondo, work)
        self.tls = tls
        self.combiner_ports = {}
        self.scheme = "https" if tls else "http"

    def log(self, name):
        path = os.path.join(self.work, name + ".log")
        return open(path, errors="replace").read() if os.path.exists(path) \
            else ""

    def certs(self):
        """`rondo certs init` and one certificate per server (127.0.0.1
        and localhost)."""
        self.certdir = os.path.join(self.work, "certs")
        r = subprocess.run([self.rondo, "certs", "init", self.certdir],
                           capture_output=True, text=True, timeout=60)
        if r.returncode != 0:
            raise RuntimeError("rondo certs init: " + r.stderr)
        for name in ("controller", "A", "B"):
            r = subprocess.run([self.rondo, "certs", "issue", self.certdir,
                                name, "--host", "127.0.0.1", "--host",
                                "localhost"],
                               capture_output=True, text=True, timeout=60)
            if r.returncode != 0:
                raise RuntimeError("rondo certs issue: " + r.stderr)
        self.ca = os.path.join(self.certdir, "ca.crt")

    def tls_flags(self, name):
        if not self.tls:
            return []
        return ["--cert", os.path.join(self.certdir, name + ".crt"),
                "--key", os.path.join(self.certdir, name + ".key"),
                "--ca", self.ca]

    def start_two(self):
        w = self.work
        if self.tls:
            self.certs()
        self.start_controller(extra=self.tls_flags("controller"),
                              scheme=self.scheme)
        self.admin = self.token("admin")
        for c in ("A", "B"):
            self.start_named_combiner(c, 0)
        token_file = os.path.join(w, "client.token")
        with open(token_file, "w") as f:
            f.write(self.token("client") + "\n")
        self.client_where = ["--api-url", self.api, "--token-file",
                             token_file] + (["--ca", self.ca] if self.tls
                                            else [])

    def start_named_combiner(self, c, port, log_name=None):
        """Starts combiner `c` on `port` (0: any) and its database."""
        w = self.work
        port_file = os.path.join(w, c + ".port")
        if os.path.exists(port_file):
            os.remove(port_file)
        self.spawn(c, ["combiner", "--name", c, "--port", str(port),
                       "--port-file", port_file,
                       "--db", os.path.join(w, c + "-db"),
                       "--controller", self.controller,
                       "--auth-secret-file", self.secret_file]
                   + self.tls_flags(c), log_name=log_name)
        self.combiner_ports[c] = self.wait_file(c, c + ".port")

    def start_api_client(self, name, delta, n):
        """A client joining through the API, downloading the package."""
        env = dict(os.environ, RONDO_TEST_NAME=name,
                   RONDO_TEST_DELTA=str(delta), RONDO_TEST_EXAMPLES=str(n),
                   RONDO_TEST_MARKS=self.marks)
        work_dir = os.path.join(self.work, name + "-work")
        os.makedirs(work_dir)
        self.spawn(name, ["client"] + self.client_where
                   + ["--name", name, "--work-dir", work_dir], env=env)

    def cli(self, *args, timeout=120):
        extra = ["--ca", self.ca] if self.tls else []
        return super().cli(*args, *extra, timeout=timeout)

    def http(self, method, path, body=None, headers=None, timeout=30):
        req = urllib.request.Request(self.api + path, data=body,
                                     method=method)
        req.add_header("Authorization", "Bearer " + self.admin)
        for k, v in (headers or {}).items():
            req.add_header(k, v)
        ctx = ssl.create_default_context(cafile=self.ca) if self.tls \
            else None
        try:
            with urllib.request.urlopen(req, timeout=timeout,
                                        context=ctx) as r:
                return r.status, r.read().decode()
        except urllib.error.HTTPError as e:
            return e.code, e.read().decode()

    def upload_package(self):
        """POST /api/v1/packages/ with a .tgz of tests/cluster/package
        (multipart: file, name, helper)."""
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w:gz") as tar:
            for name in ("fedn.yaml", "npz_task.py"):
                tar.add(os.path.join(PACKAGE, name),
                        arcname="package/" + name)
        r = requests.post(self.api + "/api/v1/packages/",
                          headers={"Authorization": "Bearer " + self.admin},
                          files={"file": ("package.tgz", buf.getvalue())},
                          data={"name": "failover", "helper": "numpyhelper"},
                          verify=self.ca if self.tls else True, timeout=30)
        if r.status_code != 200:
            raise RuntimeError("package upload: HTTP %d: %s"
                               % (r.status_code, r.text[:300]))


def assigned(f, name):
    """The combiner `name`'s log says it was assigned (first assignment)."""
    m = re.search(r"the controller assigned combiner (\S+) at", f.log(name))
    return m.group(1) if m else None


def stream_opened(f, combiner_log, name):
    return ("task stream of client '%s' (%s) opened" % (name, name)
            in f.log(combiner_log))


def export_values(f, model_id, name):
    out = os.path.join(f.work, name + ".npz")
    r = f.cli("models", "export", model_id, out)
    check(r.returncode == 0, "models export %s (%s)" % (model_id,
                                                          r.stderr.strip()))
    return [v for _, _, _, vs in npz_task.read_npz(out) for v in vs]


def body(f, work):
    f.start_two()
    f.seed()
    f.upload_package()
    # One at a time, so that each ask sees the previous assignment.
    for name, (delta, n) in CLIENTS.items():
        f.start_api_client(name, delta, n)
        got = wait_until(name + " assigned", lambda: assigned(f, name), 60)
        check(got == EXPECTED[name], "%s was assigned combiner %s (least "
              "loaded)" % (name, got))
    for name in CLIENTS:
        wait_until(name + "'s task stream open on its combiner",
                   lambda: stream_opened(f, EXPECTED[name], name), 60)
    if f.tls:
        check(all("(TLS)" in f.log(n) for n in CLIENTS),
              "the clients were told their combiners serve TLS")

    # 1. Both combiners, four updates.
    rnd = run_session(f, "before")
    check(rnd["status"] == "success" and rnd["updates_accepted"] == 4,
          "round 1 on A and B has 4 updates (%s, %s)"
          % (rnd["status"], rnd["updates_accepted"]))
    fedavg = sum(d * n for d, n in CLIENTS.values()) / 100.0  # 3.0
    got = export_values(f, rnd["model_id"], "before")
    check(all(abs(v - fedavg) < 1e-5 for v in got),
          "round 1's model %s is FedAvg of all four (%.4f)" % (got, fedavg))

    # 2. Kill B while its clients train.
    settings = json.dumps({"sleepers": ["c2", "c4"], "sleep": 120})
    follow = subprocess.Popen(
        [f.rondo, "session", "start", "--controller", f.api, "--token",
         f.admin, "--session-id", "lose-b", "--rounds", "1",
         "--clients-required", "2", "--round-timeout", "60", "--grace",
         "20", "--validate", "false", "--client-settings", settings,
         "--follow"] + (["--ca", f.ca] if f.tls else []),
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.monotonic() + 60
    while not all(os.path.exists(os.path.join(f.marks, x + ".1"))
                  for x in ("c2", "c4")):
        if time.monotonic() > deadline:
            follow.kill()
            raise AssertionError("c2 and c4 did not start training #2")
        time.sleep(0.05)
    f.procs["B"].send_signal(signal.SIGKILL)
    f.procs["B"].wait(timeout=10)
    killed = time.monotonic()
    print("ok: B's clients are training; combiner B killed", flush=True)
    text, _ = follow.communicate(timeout=200)
    check(follow.returncode == 0, "session 'lose-b' finished:\n" + text)
    rnd2 = json.loads(f.cli("session", "status", "lose-b",
                            "--json").stdout)["rounds"][0]
    check(rnd2["status"] == "success" and rnd2["updates_accepted"] == 2,
          "round 2 ended with A's 2 updates (%s, %s)"
          % (rnd2["status"], rnd2["updates_accepted"]))

    pa, pb = f.combiner_ports["A"], f.combiner_ports["B"]
    line = "reassigned from 127.0.0.1:%d to 127.0.0.1:%d" % (pb, pa)
    for name in ("c2", "c4"):
        wait_until(name + " reassigned and its stream open on A",
                   lambda: line in f.log(name)
                   and stream_opened(f, "A", name),
                   FAILOVER_BOUND - (time.monotonic() - killed))
    took = time.monotonic() - killed
    check(True, "c2 and c4 logged '%s' and opened their streams on A "
          "%.1f s after B died (bound %d s)" % (line, took, FAILOVER_BOUND))
    check(took >= REASSIGN_AFTER,
          "they waited --reassign-after (%d s) first" % REASSIGN_AFTER)
    for name in ("c2", "c4"):
        log = f.log(name)
        m = re.search(r"\(training\) abandoned after ([0-9.]+) s", log)
        check(m and float(m.group(1)) < 60 and "leaving combiner" in log,
              "%s stopped its 120 s training on B after %s s (nothing sent "
              "for it)" % (name, m and m.group(1)))
        check(log.count("downloaded the compute package") == 1,
              "%s kept its compute package (downloaded once)" % name)
    for name in ("c1", "c3"):
        check("reassigned" not in f.log(name),
              "%s stayed on A" % name)

    # 3. All four on A.
    rnd3 = run_session(f, "after")
    parts = {x["combiner_id"]: x["status"] for x in rnd3["combiners"]}
    check(rnd3["status"] == "success" and rnd3["updates_accepted"] == 4
          and parts.get("A") == "success" and "B" not in parts,
          "round 3 on A alone has all 4 clients' updates (%s, %s, %s)"
          % (rnd3["status"], rnd3["updates_accepted"], parts))
    round2 = export_values(f, rnd2["model_id"], "lose-b")
    got = export_values(f, rnd3["model_id"], "after")
    want = [v + fedavg for v in round2]
    check(all(abs(a - b) < 1e-4 for a, b in zip(got, want)),
          "round 3's model %s is round 2's plus FedAvg of all four (%s)"
          % (got, want))

    # 4. B comes back; a new client gets it.
    f.start_named_combiner("B", pb, log_name="B-restarted")

    def b_alive():
        status, text = f.http("GET", "/api/v1/combiners/")
        if status != 200:
            return False
        for c in json.loads(text).get("result", []):
            if c.get("name") == "B" and c.get("status") == "online":
                return True
        return False
    wait_until("restarted B online at the controller", b_alive, 60, 0.3)
    f.start_api_client("c5", 5.0, 50)
    got = wait_until("c5 assigned", lambda: assigned(f, "c5"), 60)
    check(got == "B", "a new client gets the restarted B, the least loaded "
          "(got %s)" % got)
    wait_until("c5's stream open on B",
               lambda: stream_opened(f, "B-restarted", "c5"), 60)
    check(True, "c5 connected to B")

    # 5. B is killed and restarted at once: c5 reconnects to it (a new
    # channel per attempt; an old TLS channel failed its handshakes with
    # the restarted combiner for minutes) before --reassign-after.
    f.procs["B"].send_signal(signal.SIGKILL)
    f.procs["B"].wait(timeout=10)
    f.start_named_combiner("B", pb, log_name="B-again")
    back = time.monotonic()
    wait_until("c5 reconnected to the restarted B",
               lambda: stream_opened(f, "B-again", "c5"), 15)
    check("reassigned" not in f.log("c5"),
          "c5 reconnected to B %.1f s after its restart, without a "
          "reassignment" % (time.monotonic() - back))


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--plain", action="store_true",
                   help="no TLS (tokens only)")
    p.add_argument("--keep", action="store_true",
                   help="keep the work folder")
    args = p.parse_args()
    tls = not args.plain
    return run_case("rondo-failover-", body, args.keep,
                    lambda rondo, work: Failover(rondo, work, tls))


if __name__ == "__main__":
    sys.exit(main())
