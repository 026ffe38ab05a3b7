#!/usr/bin/python3
"""bench/soak.py: a long-running federation on loopback (issue #15, item 9).
A benchmark that prints its figures, not a test.

Usage (from the repository root, after a build):
  bench/soak.py [--rondo build/apps/rondo] [--rounds 2000] [--clients 3]
                [--window 100] [--out FILE.csv] [--validate]
                [--package DIR] [--work DIR] [--keep]

It starts, secured as deploy/quickstart.sh starts them (a throwaway
cluster CA, mutual TLS between controller and combiner, the controller's
API over HTTPS with an admin token, TLS and one token per client on the
combiner's port): a `rondo controller`, a `rondo combiner` joined to it and
--clients `rondo client --api-url` processes that download the compute
package from the controller: by default bench/soak_package (shell
scripts: training returns the model unchanged, so a round measures the
controller, the combiner and the clients' protocol, not a Python start;
--package tests/cluster/package adds a constant in Python instead). The
model is tiny (3 float32 values). It seeds the model and runs ONE
session of --rounds FedAvg rounds (clients_required = --clients; a
validation after each with --validate), followed by `rondo session start
--follow`, whose lines mark the rounds' ends.

Every --window rounds (counted by the rounds --follow printed) it prints
and (with --out) writes a CSV row:
  rounds             the window, e.g. 101-200
  comb_rss_mb        the combiner's VmRSS (/proc/PID/status), MB
  ctrl_rss_mb        the controller's VmRSS, MB
  comb_cpu_s         the combiner's utime+stime in the window, seconds
  ctrl_cpu_s         the controller's utime+stime in the window, seconds
  round_ms           mean round time as recorded (ended_at - started_at,
                     as --follow prints it: in steps of 10 ms)
  wall_ms            wall time per round in the window (includes the
                     controller's work between rounds)
  comb_db_mb         the size of the files in the combiner's --db folder
                     (apparent size), MB
  ctrl_db_mb         the same for the controller's --db folder (its trail
                     included), MB
  failed             rounds that failed in the window
(MB = 10^6 bytes.)

At the end it prints the goal check of issue #15: the last window against
the second (rounds 101-200 with the default window): each server's RSS
within 2 MB, the wall time per round (wall_ms) within 10 %, and disk
bounded: the combiner's database at most twice its size after the second
window plus 1 MB (its staged and aggregated models are dropped once
committed), the controller's growth over the second half at most 8 KiB
per round (it keeps the trail of global models and the round records, as
FEDn does).
Then the total time, and how long `rondo session status soak --json` takes
to report every round. Exit 0 when the session finished, the status
listed every round and every goal held, 1 otherwise.

Every wait is bounded (port files, HTTP requests, the session: --rounds x
--round-timeout at most). Ctrl-C stops every process it started; the work
folder (logs, databases) is removed unless --keep or --work is given.
"""

import argparse
import csv
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
# The default compute package: shell scripts, the model unchanged.
PACKAGE = os.path.join(HERE, "soak_package")
# The cluster test's package (Python, adds a constant to the model).
PYTHON_PACKAGE = os.path.join(ROOT, "tests", "cluster", "package")
sys.path.insert(0, os.path.dirname(PYTHON_PACKAGE))
from cluster_test import Cluster  # noqa: E402
import npz_task  # noqa: E402  (cluster_test put it on the path)

CLK_TCK = os.sysconf("SC_CLK_TCK")
MB = 1e6


def fail(what):
    print(f"soak: error: {what}", file=sys.stderr, flush=True)
    sys.exit(1)


# -- processes, from /proc ----------------------------------------------------

def cpu_seconds(pid):
    """utime + stime of process `pid` in seconds (proc(5) fields 14, 15)."""
    with open(f"/proc/{pid}/stat") as f:
        rest = f.read().rsplit(")", 1)[1].split()
    return (int(rest[11]) + int(rest[12])) / CLK_TCK


def rss_mb(pid):
    """VmRSS of process `pid`, MB."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024 / MB
    fail(f"/proc/{pid}/status has no VmRSS")


def disk_mb(folder):
    """The size of the files under `folder` (`du --apparent-size`: RocksDB
    preallocates its write-ahead log, so allocated blocks hide growth),
    MB."""
    total = 0
    for top, _, files in os.walk(folder):
        for name in files:
            try:
                total += os.lstat(os.path.join(top, name)).st_size
            except FileNotFoundError:  # a file RocksDB just removed
                pass
    return total / MB


class Federation(Cluster):
    """The processes this bench starts, their logs in `work` (the cluster
    test's spawn, wait_port and stop)."""

    def __init__(self, rondo, work):
        super().__init__(rondo, work)
        self.certs = os.path.join(work, "certs")

    def run(self, *args, timeout=60):
        r = subprocess.run([self.rondo] + list(args), capture_output=True,
                           text=True, timeout=timeout)
        if r.returncode != 0:
            fail(f"rondo {args[0]} {args[1] if len(args) > 1 else ''}: "
                 f"{r.stderr.strip()}")
        return r.stdout

    def secure(self, clients):
        """The quickstart's certificates and tokens."""
        c = self.certs
        self.run("certs", "init", c)
        for name in ("controller", "combiner-1"):
            self.run("certs", "issue", c, name, "--host", "127.0.0.1",
                     "--host", "localhost")
        self.secret = os.path.join(c, "token-secret")
        with open(os.open(self.secret, os.O_WRONLY | os.O_CREAT, 0o600),
                  "w") as f:
            f.write(os.urandom(36).hex() + "\n")

        def token(path, *args):
            text = self.run("token", "create", "--secret-file", self.secret,
                            "--ttl", "7d", *args)
            with open(os.open(path, os.O_WRONLY | os.O_CREAT, 0o600),
                      "w") as f:
                f.write(text)
            return path
        self.admin_token = token(os.path.join(c, "admin.token"), "--role",
                                 "admin")
        self.client_tokens = [
            token(os.path.join(c, f"client-{i}.token"), "--role", "client",
                  "--client", f"client-{i}") for i in range(clients)]

    def tls(self, name):
        c = self.certs
        return ["--cert", f"{c}/{name}.crt", "--key", f"{c}/{name}.key",
                "--ca", f"{c}/ca.crt"]

    def start(self, clients, package):
        w = self.work
        self.spawn("controller", [
            "controller", "--host", "127.0.0.1", "--port", "0",
            "--port-file", f"{w}/controller.port", "--http-port", "0",
            "--http-port-file", f"{w}/controller-api.port",
            "--auth-secret-file", self.secret, "--db", f"{w}/controller-db"]
            + self.tls("controller"))
        controller = "127.0.0.1:%d" % self.wait_port("controller")
        self.api = "127.0.0.1:%d" % self.wait_port("controller",
                                                   "controller-api")
        self.spawn("combiner", [
            "combiner", "--host", "127.0.0.1", "--port", "0",
            "--port-file", f"{w}/combiner.port", "--db", f"{w}/combiner-db",
            "--name", "combiner-1", "--controller", controller,
            "--auth-secret-file", self.secret] + self.tls("combiner-1"))
        self.wait_port("combiner")
        self.upload_package(package)
        for i in range(clients):
            # The package runs `python3`: Debian's, not a shim earlier on
            # PATH (pyenv's takes seconds to start).
            env = dict(os.environ, RONDO_TEST_NAME=f"client-{i}",
                       RONDO_TEST_DELTA=str(i + 1),
                       RONDO_TEST_EXAMPLES=str(10 * (i + 1)),
                       SOAK_EXAMPLES=str(10 * (i + 1)),
                       PATH="/usr/bin:" + os.environ.get("PATH", ""))
            self.spawn(f"client-{i}", [
                "client", "--api-url", f"https://{self.api}",
                "--name", f"client-{i}", "--ca", f"{self.certs}/ca.crt",
                "--token-file", self.client_tokens[i],
                "--work-dir", f"{w}/client-{i}"], env=env)

    def operator(self):
        return ["--controller", self.api, "--ca", f"{self.certs}/ca.crt",
                "--token-file", self.admin_token]

    def upload_package(self, package):
        """The folder `package` as the controller's active compute package
        (curl, as deploy/quickstart.sh uploads it)."""
        tgz = os.path.join(self.work, "package.tgz")
        package = os.path.abspath(package)
        subprocess.run(["tar", "-czf", tgz, "-C", os.path.dirname(package),
                        "--exclude=__pycache__", os.path.basename(package)],
                       check=True, timeout=60)
        token = open(self.admin_token).read().strip()
        r = subprocess.run(
            ["curl", "--silent", "--show-error", "--fail-with-body",
             "--max-time", "60", "--cacert", f"{self.certs}/ca.crt",
             "-H", f"Authorization: Bearer {token}", "-F", f"file=@{tgz}",
             "-F", "name=soak", "-F", "helper=numpyhelper",
             f"https://{self.api}/api/v1/packages/"],
            capture_output=True, text=True, timeout=90)
        if r.returncode != 0:
            fail("package upload: " + r.stdout + r.stderr)

    def seed(self):
        from array import array
        path = os.path.join(self.work, "seed.npz")
        npz_task.write_npz(path, [("0.npy", "<f4", (3,),
                                   array("f", [0, 0, 0]))])
        return self.run("seed", *self.operator(), path).strip()


# -- the soak -----------------------------------------------------------------

COLUMNS = ["rounds", "comb_rss_mb", "ctrl_rss_mb", "comb_cpu_s", "ctrl_cpu_s",
           "round_ms", "wall_ms", "comb_db_mb", "ctrl_db_mb", "failed"]


def round_line(line):
    """(status, seconds) of a round line --follow prints, else None."""
    words = line.split()
    if len(words) < 6 or words[0] in ("round", "session"):
        return None
    try:
        return words[1], float(words[5])
    except ValueError:
        return None


class Sampler:
    """Per-window figures of the controller and the combiner."""

    def __init__(self, fed, window, out):
        self.fed, self.window, self.out = fed, window, out
        self.pids = {k: fed.procs[k].pid for k in ("combiner", "controller")}
        self.rows = []
        self.begin()
        self.first = 1
        print("  ".join(f"{c:>11}" for c in COLUMNS), flush=True)

    def begin(self):
        self.cpu = {k: cpu_seconds(p) for k, p in self.pids.items()}
        self.t0 = time.monotonic()
        self.seconds, self.failed, self.n = 0.0, 0, 0

    def add(self, status, seconds):
        self.n += 1
        self.seconds += seconds
        self.failed += status != "success"

    def sample(self):
        if self.n == 0:
            return
        cpu = {k: cpu_seconds(p) for k, p in self.pids.items()}
        w = self.fed.work
        row = {"rounds": f"{self.first}-{self.first + self.n - 1}",
               "comb_rss_mb": rss_mb(self.pids["combiner"]),
               "ctrl_rss_mb": rss_mb(self.pids["controller"]),
               "comb_cpu_s": cpu["combiner"] - self.cpu["combiner"],
               "ctrl_cpu_s": cpu["controller"] - self.cpu["controller"],
               "round_ms": 1000 * self.seconds / self.n,
               "wall_ms": 1000 * (time.monotonic() - self.t0) / self.n,
               "comb_db_mb": disk_mb(f"{w}/combiner-db"),
               "ctrl_db_mb": disk_mb(f"{w}/controller-db"),
               "failed": self.failed, "n": self.n}
        self.rows.append(row)
        print("  ".join(f"{row[c]:>11.2f}" if isinstance(row[c], float)
                        else f"{row[c]:>11}" for c in COLUMNS), flush=True)
        if self.out:
            with open(self.out, "a", newline="") as f:
                csv.writer(f).writerow(
                    [f"{row[c]:.3f}" if isinstance(row[c], float) else row[c]
                     for c in COLUMNS])
        self.first += self.n
        self.begin()


def goal_check(rows, window):
    """Prints issue #15's goals, last window against the second; @returns
    whether all held."""
    full = [r for r in rows if r["n"] == window]
    if len(full) < 3:
        print("goal check: needs at least 3 full windows of "
              f"{window} rounds; got {len(full)}")
        return False
    base, last = full[1], full[-1]
    ok = True

    def verdict(name, good, detail):
        nonlocal ok
        ok = ok and good
        print(f"  {'ok  ' if good else 'MISS'} {name}: {detail}")
    print(f"goal check: rounds {last['rounds']} against {base['rounds']}")
    for k, who in (("comb_rss_mb", "combiner"), ("ctrl_rss_mb",
                                                 "controller")):
        d = last[k] - base[k]
        verdict(f"{who} RSS within 2 MB", abs(d) <= 2.0,
                f"{base[k]:.1f} -> {last[k]:.1f} MB ({d:+.1f})")
    # Wall time per round: it includes the controller's work between
    # rounds, and the records' times are printed in steps of 10 ms.
    change = last["wall_ms"] / base["wall_ms"] - 1
    verdict("round time within 10 %", abs(change) <= 0.10,
            f"{base['wall_ms']:.1f} -> {last['wall_ms']:.1f} ms a round "
            f"({100 * change:+.1f} %)")
    bound = 2 * base["comb_db_mb"] + 1
    verdict("combiner disk bounded", last["comb_db_mb"] <= bound,
            f"{base['comb_db_mb']:.2f} -> {last['comb_db_mb']:.2f} MB "
            f"(bound {bound:.2f})")
    half = full[len(full) // 2]
    rounds = sum(r["n"] for r in full[len(full) // 2 + 1:])
    if rounds > 0:
        per_round = (last["ctrl_db_mb"] - half["ctrl_db_mb"]) * MB / rounds
        verdict("controller disk growth <= 8 KiB per round",
                per_round <= 8192,
                f"{half['ctrl_db_mb']:.2f} -> {last['ctrl_db_mb']:.2f} MB, "
                f"{per_round / 1024:.2f} KiB per round over the second half")
    return ok


def session_status(fed, rounds):
    """Times `rondo session status soak --json` (the whole report of the
    long session); @returns whether it listed all `rounds` rounds."""
    t0 = time.monotonic()
    r = subprocess.run([fed.rondo, "session", "status", *fed.operator(),
                        "--timeout", "120", "soak", "--json"],
                       capture_output=True, text=True, timeout=300)
    took = time.monotonic() - t0
    try:
        n = len(json.loads(r.stdout)["rounds"])
    except (ValueError, KeyError):
        n = -1
    print(f"soak: `rondo session status soak --json` took {took:.1f} s, "
          f"listed {n} rounds" + (f" ({r.stderr.strip()})" if r.returncode
                                  else ""))
    return r.returncode == 0 and n == rounds


def main():
    p = argparse.ArgumentParser(
        description="A long-running federation: RSS, CPU, round time and "
                    "disk per window of rounds (issue #15).")
    p.add_argument("--rondo", default=os.path.join(ROOT, "build", "apps",
                                                   "rondo"))
    p.add_argument("--rounds", type=int, default=2000)
    p.add_argument("--clients", type=int, default=3)
    p.add_argument("--window", type=int, default=100,
                   help="rounds per printed row (default 100)")
    p.add_argument("--round-timeout", type=float, default=60,
                   help="seconds (default 60)")
    p.add_argument("--package", default=PACKAGE,
                   help="the compute package folder (default "
                        "bench/soak_package: shell, the model unchanged; "
                        "tests/cluster/package: Python, adds to it)")
    p.add_argument("--validate", action="store_true",
                   help="a validation after each training round")
    p.add_argument("--out", help="also write the rows to this CSV file")
    p.add_argument("--work", help="a new or empty folder for logs and "
                   "databases (kept)")
    p.add_argument("--keep", action="store_true",
                   help="keep the temporary work folder")
    a = p.parse_args()
    if a.rounds < 1 or a.clients < 1 or a.window < 1:
        fail("--rounds, --clients and --window must be >= 1")
    if not os.access(a.rondo, os.X_OK):
        fail(f"no rondo executable at {a.rondo} (build it: "
             "deploy/build.sh --target rondo)")
    work = a.work or tempfile.mkdtemp(prefix="rondo-soak-")
    os.makedirs(work, exist_ok=True)
    if os.listdir(work):
        fail(f"--work {work} is not empty")
    if a.out:
        with open(a.out, "w", newline="") as f:
            csv.writer(f).writerow(COLUMNS)
    fed = Federation(os.path.abspath(a.rondo), work)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(130))
    follow = None
    started = time.monotonic()
    ok = False
    try:
        fed.secure(a.clients)
        fed.start(a.clients, a.package)
        seed = fed.seed()
        print(f"soak: {a.rounds} rounds, {a.clients} clients, work folder "
              f"{work}", flush=True)
        follow = subprocess.Popen(
            [fed.rondo, "session", "start", *fed.operator(),
             "--session-id", "soak", "--rounds", str(a.rounds),
             "--clients-required", str(a.clients), "--clients-requested",
             str(a.clients), "--round-timeout", str(a.round_timeout),
             "--validate", "true" if a.validate else "false",
             "--model-id", seed, "--follow"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        # --follow's lines arrive as rounds end; the session is bounded by
        # its rounds' timeouts, and this process by that plus a margin.
        # A watchdog ends --follow (and so this loop) past that bound.
        watchdog = threading.Timer(a.rounds * (a.round_timeout + 60),
                                   follow.kill)
        watchdog.daemon = True
        watchdog.start()
        sampler = Sampler(fed, a.window, a.out)
        end = ""
        for line in follow.stdout:
            if line.startswith("session soak ") and "started" not in line:
                end = line.strip()
                continue
            r = round_line(line)
            if r:
                sampler.add(*r)
                if sampler.n == a.window:
                    sampler.sample()
        sampler.sample()
        watchdog.cancel()
        follow.wait(timeout=60)
        err = follow.stderr.read().strip()
        took = time.monotonic() - started
        done = sum(r["n"] for r in sampler.rows)
        print(f"soak: {end or 'no end line'}; {done} rounds in {took:.0f} s "
              f"({took / max(done, 1) * 1000:.0f} ms per round, set-up "
              f"included)" + (f"; follow: {err}" if err else ""))
        listed = session_status(fed, done)
        goals = goal_check(sampler.rows, a.window)
        ok = end == "session soak finished" and follow.returncode == 0 \
            and goals and listed
    except KeyboardInterrupt:
        print("soak: interrupted", file=sys.stderr)
    except RuntimeError as e:  # a process that did not start
        print(f"soak: error: {e}", file=sys.stderr)
    finally:
        if follow and follow.poll() is None:
            follow.kill()
            follow.wait(timeout=10)
        fed.stop()
        if not ok:
            print(f"soak: logs in {work}", file=sys.stderr)
        elif not a.work and not a.keep:
            shutil.rmtree(work, ignore_errors=True)
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
