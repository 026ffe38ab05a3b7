#!/usr/bin/python3
"""bench/scale.py: horizontal scale of a federation (issue #16, item 5): a
`rondo controller` and K = 1, 2, 4 `rondo combiner`s joined to it, a fixed
total number of load clients spread evenly over the combiners, rounds
driven through the controller; prints updates folded per second, GB/s of
updates, round time and the CPU of every process. A benchmark that prints
its figures, not a test.

Usage (from the repository root, after a build):
  bench/scale.py --rondo build/apps/rondo --stubs build/tests/pystubs
      [--combiners 1,2,4] [--clients 8] [--params 1000000,25000000]
      [--rounds 10,3] [--client-cores CPUS] [--controller-cores CPUS]
      [--no-pin] [--round-timeout 600] [--combiner-args "..."]
      [--updates DIR] [--perf DIR] [--keep]
or `cmake --build build --target bench_scale` (the defaults, with the
build's rondo and stubs). Needs Debian's python3-numpy, python3-grpcio and
python3-protobuf and the Python stubs of fedn.proto (the target
conformance_stubs, in build/tests/pystubs).

Everything runs on this machine, on 127.0.0.1 (plaintext, no tokens: the
processes are separate, the network is loopback). Per model size (--params:
float32 values of one tensor "0"; the defaults are 4 MB and 100 MB) the
clients' updates are made once, before any process starts: random normal
float32 written as FEDn 0.33's numpyhelper writes a model
(np.savez_compressed: DEFLATE), one file per client, which the client
streams in 1 MiB chunks. Then per K (--combiners), with fresh databases:
 1. `rondo controller` (--http-port 0; pinned to --controller-cores when
    given) and K `rondo combiner --controller ...`, each started through
    `taskset -c CPU`: combiner i on CPU (n - 1 - i) mod n of the n CPUs
    this process may use, so with 2 CPUs K = 1 runs on CPU 1, K = 2 on
    CPUs 1 and 0, K = 4 two combiners on each CPU (--no-pin: none pinned);
    the bench waits (bounded) until the controller lists K combiners;
 2. --clients load clients (bench/combiner_load.py's clients:
    tests/conformance/fedn_client.py in threads of this process, one TCP
    connection each), clients / K on each combiner, connected straight to
    its port; each answers a training task at once as FEDn's client does
    (status, download the global model, counting its bytes, upload its
    prepared update, SendModelUpdate with num_examples, status);
 3. a seed model (random normal float32, DEFLATE) through `rondo seed`;
    one warm-up session of 1 round, then the measured session of --rounds
    rounds through `rondo session start --follow` (clients_required =
    clients_requested = clients / K: FEDn's per-combiner counts,
    buffer_size -1, no validation). Every round must succeed with all K
    combiners and every client's update accepted, or the bench fails.
Over the measured session (its wall time, set-up excluded) it prints:
 - updates folded per second: clients x rounds / wall time, and per
   combiner; GB/s of updates: their npz bytes (10^9) / wall time;
 - round time: the mean of the rounds' recorded times (--follow's
   column, in steps of 10 ms);
 - per round, where the time went (PHASES below): round start to the
   first task, download, upload (the slowest client), last update to
   the round recorded, and the gap to the next round, from the clients'
   notes and the controller's round records (GET /api/v1/rounds/ID);
 - CPU (utime + stime from /proc/PID/stat, as % of one core over the wall
   time) of each combiner, the controller, this process (the load
   clients) and `rondo session start --follow`; combiner CPU seconds per
   update, controller CPU seconds per round, and all of these per update
   (with the ceiling it sets: CPUs / CPU seconds per update);
 - who took the cores: the machine's busy CPUs and I/O wait (/proc/stat),
   the CPU of every other process (busy minus the bench's own, so also
   processes that ended meanwhile) and the largest of those still
   running by name (/proc/*/stat), e.g. a compiler; the load average
   before and after.
Then per size the throughput of K combiners against one (the ratio issue
#16 asks of 2 combiners: >= 1.8). The last line holds key=value pairs.

--perf DIR records `perf record -F 499 -g -p PIDS` of the controller and
the combiners during each measured session (read a file with `perf report
--no-children --sort comm,dso,symbol --stdio -i FILE`; perf's own CPU
weighs on the figures). --client-cores CPUS pins this process (the load
clients) and --controller-cores CPUS the controller (taskset lists, e.g.
"0"); by default both may run on every CPU. Every wait is bounded (port
files, the controller's combiner list, client connections, the sessions:
rounds x (--round-timeout + 60) s). Ctrl-C stops every process it
started; the work folder (logs, databases, updates) is removed unless
--keep.
"""

import argparse
import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(ROOT, "tests", "cluster"))
import combiner_load as load  # noqa: E402
from cluster_test import Cluster  # noqa: E402

CLK_TCK = os.sysconf("SC_CLK_TCK")
# The CPUs this process may use when it starts (before --client-cores).
ALL_CPUS = sorted(os.sched_getaffinity(0))
fail = load.fail
cpu_seconds = load.cpu_seconds


# -- the machine, from /proc ------------------------------------------------

def machine_seconds():
    """(busy, iowait): CPU seconds all CPUs spent busy (neither idle nor
    waiting for I/O) and waiting for I/O since boot (/proc/stat's "cpu"
    line)."""
    with open("/proc/stat") as f:
        fields = [int(x) for x in f.readline().split()[1:]]
    # guest time is counted in user already (proc(5)).
    return ((sum(fields[:8]) - fields[3] - fields[4]) / CLK_TCK,
            fields[4] / CLK_TCK)


def process_cpu():
    """{pid: (command name, utime + stime seconds)} of every process."""
    out = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat") as f:
                text = f.read()
        except OSError:  # gone meanwhile
            continue
        comm = text[text.index("(") + 1:text.rindex(")")]
        rest = text.rsplit(")", 1)[1].split()
        out[int(name)] = (comm, (int(rest[11]) + int(rest[12])) / CLK_TCK)
    return out


def others_cpu(before, after, ours):
    """CPU seconds of the processes not in `ours` between two process_cpu()
    snapshots, summed per command name, largest first."""
    per = {}
    for pid, (comm, cpu) in after.items():
        if pid in ours:
            continue
        used = cpu - before.get(pid, (comm, 0.0))[1]
        if used > 0:
            per[comm] = per.get(comm, 0.0) + used
    return sorted(per.items(), key=lambda x: -x[1])


def cpu_list(text, what):
    """The CPUs of a taskset list such as "0", "0,1" or "0-3"."""
    cpus = set()
    try:
        for part in text.split(","):
            lo, _, hi = part.strip().partition("-")
            cpus.update(range(int(lo), int(hi or lo) + 1))
    except ValueError:
        fail(f"{what} must be a CPU list such as 0 or 0,1 or 0-3, got "
             f"{text!r}")
    allowed = os.sched_getaffinity(0)
    if not cpus or not cpus <= allowed:
        fail(f"{what} {text!r} names CPUs outside {sorted(allowed)}")
    return cpus


def combiner_cpus(k, cpus):
    """The CPU of each of `k` combiners: from the last of `cpus` down,
    wrapping around (the first CPUs stay for the clients longest)."""
    n = len(cpus)
    return [cpus[(n - 1 - i) % n] for i in range(k)]


# -- the federation -----------------------------------------------------------

class Federation(Cluster):
    """The controller and combiners of one K, their logs in `work` (the
    cluster test's wait_port, stop and tails); `spawn` runs a process
    through `taskset -c` when given CPUs."""

    def spawn(self, name, args, env=None, log_name=None, cpus=None):
        log = open(os.path.join(self.work, (log_name or name) + ".log"), "w")
        pin = [] if cpus is None else ["taskset", "-c",
                                      ",".join(map(str, sorted(cpus)))]
        self.procs[name] = subprocess.Popen(
            pin + [self.rondo] + args, stdout=log, stderr=subprocess.STDOUT,
            env=env)
        log.close()

    def start(self, k, combiner_pins, controller_pin, combiner_args=()):
        w = self.work
        self.combiner_args = list(combiner_args)
        self.spawn("controller", [
            "controller", "--port", "0", "--port-file",
            f"{w}/controller.port", "--db", f"{w}/controller-db",
            "--http-port", "0", "--http-port-file", f"{w}/api.port",
            "--client-wait", "60"], cpus=controller_pin)
        self.controller = "127.0.0.1:%d" % self.wait_port("controller")
        self.api = "127.0.0.1:%d" % self.wait_port("controller", "api")
        self.combiners = []
        for i in range(k):
            name = f"combiner-{i}"
            self.spawn(name, [
                "combiner", "--port", "0", "--port-file",
                f"{w}/{name}.port", "--db", f"{w}/{name}-db", "--name", name,
                "--controller", self.controller] + self.combiner_args,
                cpus=None if combiner_pins is None else {combiner_pins[i]})
            self.combiners.append(
                (name, "127.0.0.1:%d" % self.wait_port(name)))
        load.wait_for(lambda: self.listed_combiners() >= k, 30,
                      f"the controller to list {k} combiners", step=0.2)

    def get(self, path):
        """The JSON of GET `path` on the controller's API."""
        with urllib.request.urlopen(f"http://{self.api}{path}",
                                    timeout=10) as r:
            return json.load(r)

    def listed_combiners(self):
        """How many combiners GET /api/v1/combiners/ lists."""
        return self.get("/api/v1/combiners/")["count"]

    def cli(self, *args, timeout=120):
        """`rondo ARGS --controller API`; fails the bench on an error."""
        r = subprocess.run([self.rondo] + list(args) +
                           ["--controller", self.api],
                           capture_output=True, text=True, timeout=timeout)
        if r.returncode != 0:
            fail(f"rondo {' '.join(args[:2])}: {r.stderr.strip()}\n"
                 f"{r.stdout}")
        return r.stdout

    def pids(self):
        return {name: p.pid for name, p in self.procs.items()}


def run_session(fed, sid, rounds, per_combiner, k, n, model_id, args):
    """One session of `rounds` rounds through `rondo session start
    --follow`; fails the bench unless every round succeeded with `k`
    combiners and `n` accepted updates. Returns the rounds' recorded
    seconds."""
    out = fed.cli("session", "start", "--session-id", sid,
                  "--rounds", str(rounds),
                  "--clients-required", str(per_combiner),
                  "--clients-requested", str(per_combiner),
                  "--buffer-size", "-1",
                  "--round-timeout", str(args.round_timeout),
                  "--validate", "false", "--model-id", model_id, "--follow",
                  timeout=rounds * (args.round_timeout + 60))
    seconds = []
    for line in out.splitlines():
        # round, status, combiners ok/asked, asked, accepted, seconds
        w = line.split()
        if len(w) < 6 or w[0] in ("round", "session"):
            continue
        if w[1] != "success" or w[2] != f"{k}/{k}" or w[4] != str(n):
            fail(f"session {sid}: round {w[0]} is {w[1]} with combiners "
                 f"{w[2]} and {w[4]} accepted updates (expected {k}/{k} "
                 f"and {n}):\n{out}")
        seconds.append(float(w[5]))
    if len(seconds) != rounds:
        fail(f"session {sid}: --follow printed {len(seconds)} rounds, not "
             f"{rounds}:\n{out}")
    return seconds


def timed_client_class():
    """bench/combiner_load.py's load client (the global model counted, not
    kept; the update streamed from its file) that also notes, per round id,
    when its task arrived, when the global model was downloaded, when its
    update was uploaded and when SendModelUpdate was answered (time.time(),
    to compare with the controller's round records)."""
    Base = load.bench_client_class(big=True)

    class TimedClient(Base):
        def __init__(self, *args):
            super().__init__(*args)
            self.times = {}  # round_id -> {"task": t, "downloaded": t, ...}
            self._now = None

        def train(self, task, update_fn, num_examples):
            # One task at a time (serve()): _now is this task's entry.
            self._now = self.times.setdefault(
                json.loads(task.data).get("round_id", ""), {})
            self._now["task"] = time.time()
            return super().train(task, update_fn, num_examples)

        def download(self, model_id, timeout=300, unknown_wait=20):
            got = super().download(model_id, timeout, unknown_wait)
            self._now["downloaded"] = time.time()
            return got

        def upload(self, model_id, path, timeout=300):
            reply = super().upload(model_id, path, timeout)
            self._now["uploaded"] = time.time()
            return reply

        def send_model_update(self, task, update_id, meta):
            answer = super().send_model_update(task, update_id, meta)
            self._now["replied"] = time.time()
            return answer

    return TimedClient


PHASES = (("start", "round start to the first task (the combiners fetch "
                    "the global model from the controller)"),
          ("download", "the global model downloaded (slowest client)"),
          ("upload", "its update uploaded (slowest client)"),
          ("close", "last update accepted to the round recorded (the "
                    "combiners fold, their models go to the controller, "
                    "which reduces and stores the new global model)"),
          ("gap", "round recorded to the next round's start"))


def phases(clients, records):
    """Mean seconds per round of the PHASES, from the clients' notes and
    the controller's round `records` (started_at, ended_at: seconds since
    the epoch), in the order the rounds ran."""
    out = {k: [] for k, _ in PHASES}
    ended = None
    for rec in records:
        ts = [c.times[rec["round_id"]] for c in clients]
        if ended is not None:
            out["gap"].append(rec["started_at"] - ended)
        out["start"].append(min(t["task"] for t in ts) - rec["started_at"])
        out["download"].append(max(t["downloaded"] - t["task"] for t in ts))
        out["upload"].append(max(t["uploaded"] - t["downloaded"]
                                 for t in ts))
        out["close"].append(rec["ended_at"] - max(t["replied"] for t in ts))
        ended = rec["ended_at"]
    return {k: sum(v) / len(v) if v else float("nan")
            for k, v in out.items()}


def check_clients(clients, rounds):
    """Fails the bench unless every client served `rounds` training tasks
    without an error, each update accepted."""
    for c in clients:
        if c.errors:
            fail(f"{c.name}: {'; '.join(c.errors[:3])}")
        answers = [a for _, a in c.replied.values()]
        if len(answers) != rounds or any(a != "accepted" for a in answers):
            fail(f"{c.name}: {len(answers)} updates sent in {rounds} "
                 f"rounds, answers {sorted(set(answers))}")


# -- one measurement ---------------------------------------------------------

def make_updates(d, params, n):
    """`n` update files of `params` random normal float32 as FEDn's
    numpyhelper writes them (DEFLATE npz) in `d`, and a seed; returns
    (update paths, seed path). Files already there (--updates) are kept:
    their names hold the size and the seed of the random values."""
    paths = []
    for i in range(n + 1):
        name = f"update-{params}-{i}.npz" if i < n else f"seed-{params}.npz"
        path = os.path.join(d, name)
        if not os.path.exists(path):
            with open(path + ".part", "wb") as f:
                f.write(load.random_model(params, 100 + i, "deflate"))
            os.replace(path + ".part", path)
        paths.append(path)
    return paths[:n], paths[n]


def measure(k, params, rounds, updates, seed, args, work):
    """One federation of `k` combiners: the figures of its measured
    session as a dict."""
    from fedn_client import FednClient
    n = len(updates)
    per = n // k
    pins = None if args.no_pin else combiner_cpus(k, ALL_CPUS)
    fed = Federation(os.path.abspath(args.rondo), work)
    Client = timed_client_class()
    clients, admins = [], []
    perf = None
    try:
        fed.start(k, pins, args.controller_cpus,
                  shlex.split(args.combiner_args))
        for j, (name, address) in enumerate(fed.combiners):
            mine = [Client(address, f"client-{j * per + i}",
                           updates[j * per + i], 100 + j * per + i)
                    for i in range(per)]
            admin = FednClient(address, f"bench-admin-{j}")
            admins.append(admin)
            clients += mine
            load.connect(mine, admin)
        model_id = f"seed-{k}"
        fed.cli("seed", "--model-id", model_id, seed)
        run_session(fed, f"warm-up-{k}", 1, per, k, n, model_id, args)
        check_clients(clients, 1)
        warm = set(clients[0].times)

        pids = fed.pids()
        ours = set(pids.values()) | {os.getpid()}
        before = {name: cpu_seconds(pid) for name, pid in pids.items()}
        me0, machine0, snap0 = cpu_seconds(os.getpid()), machine_seconds(), \
            process_cpu()
        load0 = os.getloadavg()[0]
        if args.perf:
            perf_path = os.path.join(os.path.abspath(args.perf),
                                     f"perf-k{k}-p{params}.data")
            perf = load.start_perf(",".join(map(str, pids.values())),
                                   perf_path)
        # `rondo session start --follow` is a child this process waits for:
        # its CPU lands in the children's times.
        cli0 = os.times()
        t0 = time.monotonic()
        seconds = run_session(fed, f"scale-{k}", rounds, per, k, n, model_id,
                              args)
        wall = time.monotonic() - t0
        if perf:
            load.stop_perf(perf, perf_path)
            perf = None
        used = {name: cpu_seconds(pid) - before[name]
                for name, pid in pids.items()}
        me = cpu_seconds(os.getpid()) - me0
        cli1 = os.times()
        cli = (cli1.children_user + cli1.children_system
               - cli0.children_user - cli0.children_system)
        busy, iowait = (b - a for a, b in zip(machine0, machine_seconds()))
        others = others_cpu(snap0, process_cpu(), ours)
        check_clients(clients, 1 + rounds)
        records = sorted((fed.get(f"/api/v1/rounds/{rid}")
                          for rid in set(clients[0].times) - warm),
                         key=lambda rec: rec["started_at"])
        seen = phases(clients, records)
    finally:
        load.end_clients(perf, clients + admins)
        fed.stop()
    size = sum(os.path.getsize(p) for p in updates) / n
    comb = [used[name] for name, _ in fed.combiners]
    return {
        "k": k, "clients": n, "rounds": rounds, "params": params,
        "update_bytes": size, "wall": wall,
        "updates_per_s": n * rounds / wall,
        "gb_per_s": n * rounds * size / wall / 1e9,
        "round_s": sum(seconds) / len(seconds),
        "round_max_s": max(seconds),
        "combiner_cpu_pct": [100 * c / wall for c in comb],
        "combiner_cpu_per_update_s": sum(comb) / (n * rounds),
        # Everything the federation and its load used, per update.
        "all_cpu_per_update_s": (sum(used.values()) + me + cli)
                                / (n * rounds),
        "controller_cpu_pct": 100 * used["controller"] / wall,
        "controller_cpu_per_round_s": used["controller"] / rounds,
        "clients_cpu_pct": 100 * me / wall,
        "machine_busy_cpus": busy / wall,
        "machine_iowait_cpus": iowait / wall,
        "cli_cpu_pct": 100 * cli / wall,
        "others_cpu_pct": 100 * (busy - sum(used.values()) - me - cli)
                          / wall,
        "phases": seen,
        "others": [(comm, 100 * c / wall) for comm, c in others[:4]],
        "load": (load0, os.getloadavg()[0]),
        "pins": pins,
    }


# -- output -------------------------------------------------------------------

def print_result(o):
    per = o["clients"] // o["k"]
    pins = ("unpinned" if o["pins"] is None else
            "CPUs " + ",".join(map(str, o["pins"])))
    print(f"\n== K={o['k']} combiners ({pins}), {o['clients']} clients "
          f"({per} each), model {4 * o['params'] / 1e6:.1f} MB (update npz "
          f"{o['update_bytes'] / 1e6:.1f} MB), {o['rounds']} rounds ==")
    print(f"updates folded {o['updates_per_s']:.2f}/s "
          f"({o['updates_per_s'] / o['k']:.2f} per combiner), "
          f"{o['gb_per_s']:.3f} GB/s of updates; round time "
          f"{o['round_s']:.2f} s mean, {o['round_max_s']:.2f} max; session "
          f"wall {o['wall']:.1f} s")
    print("CPU, % of one core: combiners "
          + " ".join(f"{c:.0f}" for c in o["combiner_cpu_pct"])
          + f"; controller {o['controller_cpu_pct']:.0f}; load clients "
          f"{o['clients_cpu_pct']:.0f}; `rondo session start --follow` "
          f"{o['cli_cpu_pct']:.0f}; other processes "
          f"{o['others_cpu_pct']:.0f} ("
          + (", ".join(f"{comm} {pct:.0f}" for comm, pct in o["others"])
             or "none") + " of those still running); the machine: "
          f"{o['machine_busy_cpus']:.2f} of {len(ALL_CPUS)} CPUs busy, "
          f"{o['machine_iowait_cpus']:.2f} in I/O wait")
    print("per round, seconds: " + ", ".join(
        f"{key} {o['phases'][key]:.2f}" for key, _ in PHASES))
    print(f"combiner CPU per update {o['combiner_cpu_per_update_s']:.3f} s "
          f"(a combiner with a core to itself, if CPU were its only "
          f"limit: {1 / o['combiner_cpu_per_update_s']:.1f} updates/s); "
          f"controller CPU per round {o['controller_cpu_per_round_s']:.3f} "
          f"s; all of this bench's processes {o['all_cpu_per_update_s']:.3f} "
          f"s per update (so with all {len(ALL_CPUS)} CPUs to themselves at "
          f"most {len(ALL_CPUS) / o['all_cpu_per_update_s']:.1f} updates/s, "
          f"whatever K); load average {o['load'][0]:.2f} -> "
          f"{o['load'][1]:.2f}", flush=True)


# -- main --------------------------------------------------------------------

def main(argv):
    p = argparse.ArgumentParser(
        description="Horizontal scale: a controller and K combiners under a "
                    "fixed number of load clients (issue #16); see the "
                    "file's comment.")
    load.add_common_args(p)
    p.add_argument("--combiners", default="1,2,4",
                   help="combiner counts K (default %(default)s)")
    p.add_argument("--clients", type=int, default=8,
                   help="load clients in all, a multiple of every K "
                        "(default %(default)s)")
    p.add_argument("--params", default="1000000,25000000",
                   help="model sizes in float32 values (default "
                        "%(default)s: 4 MB and 100 MB)")
    p.add_argument("--rounds", default="10,3",
                   help="measured rounds: one number, or one per --params "
                        "entry (default %(default)s)")
    p.add_argument("--client-cores", metavar="CPUS",
                   help="pin the load clients (this process) to these CPUs "
                        "(a taskset list; default: all)")
    p.add_argument("--controller-cores", metavar="CPUS",
                   help="pin the controller to these CPUs (default: all)")
    p.add_argument("--no-pin", action="store_true",
                   help="do not pin the combiners")
    p.add_argument("--combiner-args", default="",
                   help="extra `rondo combiner` flags, one shell-quoted "
                        "string")
    p.add_argument("--updates", metavar="DIR",
                   help="make the updates in DIR and keep them there for "
                        "the next run (default: in the work folder)")
    p.add_argument("--perf", metavar="DIR",
                   help="record `perf record -F 499 -g` of the controller "
                        "and the combiners during each measured session "
                        "into DIR/perf-kK-pPARAMS.data")
    p.add_argument("--keep", action="store_true",
                   help="keep the work folder (logs, databases, updates)")
    args = p.parse_args(argv)

    ks = load.int_list(args.combiners, "--combiners")
    sizes = load.int_list(args.params, "--params")
    rounds = load.int_list(args.rounds, "--rounds")
    if len(rounds) == 1:
        rounds = rounds * len(sizes)
    if len(rounds) != len(sizes):
        fail(f"--rounds has {len(rounds)} entries, --params {len(sizes)}")
    if not ks or not sizes or min(ks + sizes + rounds) < 1:
        fail("--combiners, --params and --rounds must be numbers >= 1")
    if args.clients < 1 or any(args.clients % k for k in ks):
        fail(f"--clients {args.clients} must be a multiple of every K "
             f"({args.combiners})")
    args.controller_cpus = None if args.controller_cores is None else \
        cpu_list(args.controller_cores, "--controller-cores")
    if args.client_cores is not None:
        # Before gRPC starts a thread: every later thread inherits it.
        os.sched_setaffinity(0, cpu_list(args.client_cores,
                                         "--client-cores"))
    load.load_client_modules(args.rondo, args.stubs)
    if args.perf:
        os.makedirs(args.perf, exist_ok=True)

    print(f"rondo {args.rondo}; {args.clients} load clients in this process "
          f"(CPUs {args.client_cores or 'all'}), controller on CPUs "
          f"{args.controller_cores or 'all'}, {len(ALL_CPUS)} CPUs "
          f"{ALL_CPUS}; updates DEFLATE npz; load average "
          f"{os.getloadavg()[0]:.2f}; "
          f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}",
          flush=True)
    work = tempfile.mkdtemp(prefix="rondo-bench-scale-")
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(130))
    results = {}
    ok = False
    try:
        for params, r in zip(sizes, rounds):
            d = args.updates or os.path.join(work, f"updates-{params}")
            os.makedirs(d, exist_ok=True)
            t0 = time.monotonic()
            updates, seed = make_updates(d, params, args.clients)
            print(f"\n{args.clients} updates of {params} float32 made in "
                  f"{time.monotonic() - t0:.0f} s", flush=True)
            for k in ks:
                fed_dir = os.path.join(work, f"k{k}-p{params}")
                os.makedirs(fed_dir)
                o = measure(k, params, r, updates, seed, args, fed_dir)
                print_result(o)
                results[(params, k)] = o
            if not args.updates:
                shutil.rmtree(d, ignore_errors=True)
        ok = True
    except KeyboardInterrupt:
        print("scale: interrupted", file=sys.stderr)
    finally:
        if args.keep or not ok:
            print(f"scale: work folder (logs) {work}", file=sys.stderr)
        else:
            shutil.rmtree(work, ignore_errors=True)
    if not ok:
        sys.exit(1)

    print("\n== throughput against one combiner (updates folded per "
          "second) ==")
    kv = [f"clients={args.clients}",
          f"combiners={','.join(map(str, ks))}"]
    for params in sizes:
        mb = f"{4 * params / 1e6:.0f}mb"
        rate = {k: results[(params, k)]["updates_per_s"] for k in ks}
        base = rate.get(1)
        print(f"{mb.upper():>6}: " + "; ".join(
            f"K={k}: {rate[k]:.2f}/s"
            + (f" ({rate[k] / base:.2f}x)" if base else "") for k in ks))

        def col(key, fmt):
            return ",".join(fmt.format(results[(params, k)][key])
                            for k in ks)
        kv += [f"updates_per_s_{mb}={col('updates_per_s', '{:.2f}')}",
               f"gb_per_s_{mb}={col('gb_per_s', '{:.3f}')}",
               f"round_s_{mb}={col('round_s', '{:.2f}')}",
               f"combiner_cpu_per_update_s_{mb}="
               f"{col('combiner_cpu_per_update_s', '{:.3f}')}",
               f"clients_cpu_pct_{mb}={col('clients_cpu_pct', '{:.0f}')}",
               f"all_cpu_per_update_s_{mb}="
               f"{col('all_cpu_per_update_s', '{:.3f}')}"]
        if base:
            kv.append(f"speedup_{mb}="
                      + ",".join(f"{rate[k] / base:.2f}" for k in ks))
    print(" ".join(kv), flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
