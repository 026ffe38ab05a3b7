#!/usr/bin/env python3
"""Multi-combiner integration test: a `rondo controller` process and two
`rondo combiner` processes joined to it over the CAF middleman, with two
`rondo client` processes each (tests/cluster/package, stdlib only).

1. One training round: the controller's reduced model equals flat FedAvg of
   the four clients' updates (weights num_examples 10, 30, 20, 40).
2. Killing combiner B (SIGKILL) while its clients are training: the round
   still ends, well within round_timeout + grace, with A's model; B's part is
   Failed("combiner B lost ..."). Then a validation runs on the new model.
3. B restarts on its port and database, rejoins, and takes part again.
4. B freezes (SIGSTOP) mid-round: the middleman heartbeat makes the
   controller drop it ("combiner B lost ...") and the round ends with A's model.

Usage: cluster_test.py --rondo PATH [--keep]. Exit 0 on success, 1 on a
failed check (with the logs' tails), every wait bounded.
"""

import argparse
import json
import os
import signal
import struct
import subprocess
import sys
import tempfile
import time
import zipfile

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "package"))
import npz_task  # noqa: E402

# name -> (combiner, delta, num_examples)
CLIENTS = {"a1": ("A", 1.0, 10), "a2": ("A", 2.0, 30),
           "b1": ("B", 3.0, 20), "b2": ("B", 4.0, 40)}


class Cluster:
    def __init__(self, rondo, work):
        self.rondo, self.work = rondo, work
        self.procs = {}
        self.marks = os.path.join(work, "marks")
        os.makedirs(self.marks)

    def spawn(self, name, args, env=None, log_name=None):
        log = open(os.path.join(self.work, (log_name or name) + ".log"), "w")
        self.procs[name] = subprocess.Popen(
            [self.rondo] + args, stdout=log, stderr=subprocess.STDOUT,
            env=env)

    def wait_port(self, name, port_name=None):
        path = os.path.join(self.work, (port_name or name) + ".port")
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if os.path.exists(path) and open(path).read().strip():
                return int(open(path).read())
            if self.procs[name].poll() is not None:
                raise RuntimeError(name + " exited early")
            time.sleep(0.05)
        raise RuntimeError(name + " wrote no port within 30 s")

    def start(self):
        self.spawn("controller", ["controller", "--port", "0", "--port-file",
                                  os.path.join(self.work, "controller.port"),
                                  "--db", os.path.join(self.work, "ctrl-db"),
                                  "--client-wait", "60",
                                  "--http-port", "0", "--http-port-file",
                                  os.path.join(self.work, "api.port")])
        # The middleman port (combiners) and the HTTP API (operators).
        self.controller = "127.0.0.1:%d" % self.wait_port("controller")
        self.api = "127.0.0.1:%d" % self.wait_port("controller", "api")
        self.ports = ports = {}
        for c in ("A", "B"):
            self.spawn(c, ["combiner", "--port", "0", "--port-file",
                           os.path.join(self.work, c + ".port"), "--db",
                           os.path.join(self.work, c + "-db"), "--name", c,
                           "--controller", self.controller])
            ports[c] = self.wait_port(c)
        package = os.path.join(HERE, "package")
        for name, (c, delta, n) in CLIENTS.items():
            env = dict(os.environ, RONDO_TEST_NAME=name,
                       RONDO_TEST_DELTA=str(delta),
                       RONDO_TEST_EXAMPLES=str(n), RONDO_TEST_MARKS=self.marks)
            self.spawn(name, ["client", "--host", "127.0.0.1", "--port",
                              str(ports[c]), "--name", name, "--package",
                              package], env=env)

    def cli(self, *args, timeout=120):
        r = subprocess.run([self.rondo] + list(args) +
                           ["--controller", self.api],
                           capture_output=True, text=True, timeout=timeout)
        return r

    def stop(self):
        for p in self.procs.values():
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in self.procs.values():
            try:
                p.wait(timeout=15)
            except subprocess.TimeoutExpired:
                p.kill()

    def tails(self):
        for name in sorted(os.listdir(self.work)):
            if not name.endswith(".log"):
                continue
            path = os.path.join(self.work, name)
            lines = open(path, errors="replace").read().splitlines()[-15:]
            print("---- %s (last %d lines)" % (name, len(lines)))
            print("\n".join(lines))


def wait_marks(c, names, n, suffix=""):
    """Waits (60 s at most) until each client began its n-th training (with
    suffix ".done": finished it)."""
    deadline = time.monotonic() + 60
    while not all(os.path.exists(os.path.join(
            c.marks, "%s.%d%s" % (x, n - 1, suffix))) for x in names):
        if time.monotonic() > deadline:
            raise AssertionError("%s did not start training #%d in 60 s"
                                 % (names, n))
        time.sleep(0.05)


def check(cond, what):
    if not cond:
        raise AssertionError(what)
    print("ok:", what, flush=True)


def values_of(path):
    return [v for _, _, _, vs in npz_task.read_npz(path) for v in vs]


def run(c):
    seed = os.path.join(c.work, "seed.npz")
    from array import array
    npz_task.write_npz(seed, [("0.npy", "<f4", (3,), array("f", [0, 0, 0]))])
    r = c.cli("seed", seed)
    check(r.returncode == 0, "rondo seed exits 0 (%s)" % r.stderr.strip())
    seed_id = r.stdout.strip()

    # 1. Flat FedAvg across two combiners.
    r = c.cli("session", "start", "--session-id", "flat", "--rounds", "1",
              "--clients-required", "2", "--round-timeout", "60",
              "--validate", "false", "--model-id", seed_id, "--follow",
              timeout=240)
    check(r.returncode == 0, "session 'flat' finished:\n" + r.stdout
          + r.stderr)
    report = json.loads(c.cli("session", "status", "flat", "--json").stdout)
    rnd = report["rounds"][0]
    check(rnd["status"] == "success", "round 1 succeeded")
    check(sorted(x["status"] for x in rnd["combiners"]) ==
          ["success", "success"], "both combiners succeeded")
    check(rnd["updates_accepted"] == 4 and rnd["num_examples"] == 100,
          "4 updates with 100 examples in all")
    out = os.path.join(c.work, "flat.npz")
    r = c.cli("models", "export", rnd["model_id"], out)
    check(r.returncode == 0, "models export exits 0 (%s)" % r.stderr.strip())
    expected = sum(d * n for _, d, n in CLIENTS.values()) / 100.0  # 2.9
    got = values_of(out)
    check(all(abs(v - expected) < 1e-6 for v in got),
          "reduced model %s equals flat FedAvg %.4f" % (got, expected))

    # 2. Lose combiner B mid-round.
    # B's clients train for 10 s: long enough to kill B first, short enough
    # to be free again for the next session.
    settings = json.dumps({"sleepers": ["b1", "b2"], "sleep": 10})
    round_timeout, grace = 60, 20
    t0 = time.monotonic()
    follow = subprocess.Popen(
        [c.rondo, "session", "start", "--controller", c.api,
         "--session-id", "lose-b", "--rounds", "1", "--clients-required",
         "2", "--round-timeout", str(round_timeout), "--grace", str(grace),
         "--validate", "true", "--client-settings", settings, "--follow"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    wait_marks(c, ["b1", "b2"], 2)
    print("ok: B's clients are training; killing combiner B", flush=True)
    c.procs["B"].send_signal(signal.SIGKILL)
    c.procs["B"].wait(timeout=10)
    text, _ = follow.communicate(timeout=round_timeout + grace + 60)
    took = time.monotonic() - t0
    check(follow.returncode == 0, "session 'lose-b' finished:\n" + text)
    check(took < round_timeout + grace,
          "it ended in %.1f s, within round_timeout + grace" % took)
    report = json.loads(c.cli("session", "status", "lose-b", "--json").stdout)
    rnd = report["rounds"][0]
    check(rnd["status"] == "success", "the round succeeded with A alone")
    parts = {x["combiner_id"]: x for x in rnd["combiners"]}
    check(parts["B"]["status"] == "failed"
          and parts["B"]["reason"].startswith("combiner B lost"),
          "B's part is Failed('combiner lost'): %s" % parts["B"])
    check(parts["A"]["status"] == "success", "A's part succeeded")
    out = os.path.join(c.work, "lose-b.npz")
    check(c.cli("models", "export", rnd["model_id"], out).returncode == 0,
          "export of the new model")
    expected2 = expected + (10 * 1.0 + 30 * 2.0) / 40.0  # 4.65
    got = values_of(out)
    check(all(abs(v - expected2) < 1e-5 for v in got),
          "new model %s is A's FedAvg on top of round 1 (%.4f)"
          % (got, expected2))
    accs = [v["metrics"]["test_accuracy"] for v in rnd["validations"]]
    check(len(accs) == 2 and all(abs(a - expected2) < 1e-5 for a in accs),
          "A's two validators validated the new model: %s" % accs)


def run_session(c, sid, extra=(), timeout=240):
    """Runs a one-round session to its end; returns its round's report."""
    r = c.cli("session", "start", "--session-id", sid, "--rounds", "1",
              "--clients-required", "2", "--round-timeout", "60",
              "--validate", "false", "--follow", *extra, timeout=timeout)
    check(r.returncode == 0, "session '%s' finished:\n%s%s"
          % (sid, r.stdout, r.stderr))
    report = json.loads(c.cli("session", "status", sid, "--json").stdout)
    return report["rounds"][0]


def rejoin_and_freeze(c):
    """Combiner B comes back and rejoins; later B freezes (SIGSTOP) and the
    middleman heartbeat makes the controller drop it."""
    # B's clients finish their training of the lost round first (its
    # update is then stale: the round ended).
    wait_marks(c, ["b1", "b2"], 2, suffix=".done")
    c.spawn("B", ["combiner", "--port", str(c.ports["B"]), "--db",
                  os.path.join(c.work, "B-db"), "--name", "B",
                  "--controller", c.controller], log_name="B-restarted")
    # The controller takes the combiners that have enough active trainers
    # when a round starts: wait for B's clients to reconnect to it.
    log = os.path.join(c.work, "B-restarted.log")
    deadline = time.monotonic() + 60
    while not all("(%s) opened" % x in open(log).read() for x in ("b1", "b2")):
        if time.monotonic() > deadline:
            raise AssertionError("b1 and b2 did not reconnect to B in 60 s")
        time.sleep(0.1)
    rnd = run_session(c, "rejoined")
    check(sorted(x["combiner_id"] for x in rnd["combiners"]
                 if x["status"] == "success") == ["A", "B"],
          "restarted combiner B rejoined and took part")

    settings = json.dumps({"sleepers": ["b1", "b2"], "sleep": 120})
    t0 = time.monotonic()
    follow = subprocess.Popen(
        [c.rondo, "session", "start", "--controller", c.api,
         "--session-id", "freeze-b", "--rounds", "1", "--clients-required",
         "2", "--round-timeout", "60", "--grace", "20", "--validate",
         "false", "--client-settings", settings, "--follow"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    wait_marks(c, ["b1", "b2"], 4)
    c.procs["B"].send_signal(signal.SIGSTOP)
    try:
        text, _ = follow.communicate(timeout=120)
    finally:
        c.procs["B"].send_signal(signal.SIGCONT)
    took = time.monotonic() - t0
    check(follow.returncode == 0, "session 'freeze-b' finished:\n" + text)
    report = json.loads(c.cli("session", "status", "freeze-b",
                              "--json").stdout)
    parts = {x["combiner_id"]: x for x in report["rounds"][0]["combiners"]}
    check(parts["B"]["status"] == "failed"
          and parts["B"]["reason"].startswith("combiner B lost")
          and parts["A"]["status"] == "success",
          "frozen combiner B was dropped after the heartbeat timeout; the "
          "round ended with A's model in %.1f s" % took)


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rondo", required=True)
    p.add_argument("--keep", action="store_true",
                   help="keep the work folder")
    args = p.parse_args()
    work = tempfile.mkdtemp(prefix="rondo-cluster-")
    c = Cluster(os.path.abspath(args.rondo), work)
    ok = False
    try:
        c.start()
        run(c)
        rejoin_and_freeze(c)
        ok = True
    except Exception as e:  # any failure: report it with the logs
        print("FAILED: %s: %s" % (type(e).__name__, e), flush=True)
    finally:
        c.stop()
    if ok:
        # A clean stop on SIGTERM: exit code 0, no crash at shutdown.
        codes = {n: c.procs[n].returncode for n in ("controller", "A", "B")}
        ok = all(code == 0 for code in codes.values())
        print("%s: controller and combiners exit 0 on SIGTERM: %s"
              % ("ok" if ok else "FAILED", codes), flush=True)
    if not ok:
        c.tails()
    if ok and not args.keep:
        subprocess.run(["rm", "-rf", work])
    else:
        print("work folder:", work)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
