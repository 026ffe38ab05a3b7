#!/usr/bin/python3
"""bench/combiner_load.py: a `rondo combiner` under a fleet of FEDn-protocol
clients; prints the combiner's CPU per round, idle CPU, peak RSS and the
time from the last model update to the round recorded (issue #14's
workload). A benchmark that prints its figures, not a test.

Usage (from the repository root, after a build):
  bench/combiner_load.py --rondo build/apps/rondo \\
      --stubs build/tests/pystubs [--clients 3,20,50] [--rounds 10]
      [--format deflate|stored] [--idle-seconds 20] [--perf FILE]
      [--big [--big-bytes 1073741824] [--big-round]] [--bad]
      [--combiner-args "..."]
or `cmake --build build --target bench_combiner_load` (the defaults, with
the build's rondo and stubs). Needs Debian's python3-numpy, python3-grpcio
and python3-protobuf, and the Python stubs of fedn.proto that the build
generates (the target conformance_stubs, in build/tests/pystubs).

Per client count N (--clients; "none" runs no rounds) one combiner process
runs standalone on 127.0.0.1, port 0, with a fresh --db in a temporary
folder:
 1. an admin uploads the seed global model through ModelService.Upload:
    P = 1,000,000 float32 values (--params) in one tensor "0", written as
    FEDn 0.33's numpyhelper writes it (np.savez_compressed: DEFLATE);
 2. N clients (tests/conformance/fedn_client.py, one thread each in this
    process, each on its own TCP connection) connect: heartbeats every 2 s,
    TaskStream open; each serves training tasks as FEDn's client does
    (status, download the global model, upload its update in 1 MiB chunks,
    SendModelUpdate with num_examples, status). Each client's update
    (random normal float32, np.savez_compressed, or np.savez with
    --format stored) is made once, before the rounds, so the clients'
    CPU does not weigh on the rounds;
 3. idle CPU: with every client listed online by ListActiveClients and no
    round, the combiner's utime+stime (/proc/PID/stat) over --idle-seconds,
    as a percentage of one core;
 4. --rounds rounds, one after another, through FEDn's Control.Start with
    wait=true (clients_required = max_clients = N, buffer_size -1,
    round_timeout
    --round-timeout, model_id = the previous round's model). Per round: the
    combiner's CPU seconds (utime+stime over the Start call), the round's
    wall time (the Start call), and "close": the time from the last
    client's SendModelUpdate reply to the Start reply (the round recorded).
    A round that is not "success" with N aggregated models, or an update
    not "accepted", ends the bench with an error;
 5. RSS: VmRSS at start, after the seed, with the clients connected, after
    the rounds, and the peak (VmHWM) from /proc/PID/status.
--perf FILE records `perf record -F 499 -g -p PID` of the combiner during
the rounds of the largest N (read it with `perf report --no-children
--sort dso,symbol --stdio -i FILE`).

--big: a fresh combiner; 8 clients (--big-clients) each upload a model of
--big-bytes (default 1 GiB: a STORED npz of one float32 tensor, written
once to a temporary file and streamed from it in 1 MiB chunks) at once,
under distinct model ids; prints the combiner's peak RSS against issue
#14's bound 2 x model + 8 x 4 MiB + 64 MiB. With --big-round, then one
training round on the same combiner: the model uploaded as global model,
8 clients download it (counting its bytes, not keeping them) and upload it
as their update (num_examples 100..107), FedAvg; its peak RSS is counted
from the round's start (VmHWM reset through /proc/PID/clear_refs).
--bad: a fresh combiner; 100 uploads (--bad-count) of 64 MiB
(--bad-bytes) that are not valid models, one after another: half a zip
local header of a DEFLATE "0.npy" member followed by random bytes, half a
DEFLATE npz cut short (no end of stream, no central directory); prints the
combiner's RSS before, after the first, after all, and the difference
(issue #14: back within a few MB).

The last line holds key=value pairs, lists in --clients order:
  clients=3,20,50 rounds=10,10,10 format=deflate cpu_per_round_s=…
  cpu_per_round_max_s=… round_s=… close_ms=… close_max_ms=… idle_cpu_pct=…
  peak_rss_mib=… rss_after_mib=… [big_* …] [bad_* …]
Every wait is bounded (port file, connections, gRPC deadlines, perf).
"""

import argparse
import io
import json
import os
import shlex
import signal
import subprocess
import sys
import tempfile
import threading
import time
import zipfile

MIB = 1 << 20
HERE = os.path.dirname(os.path.abspath(__file__))
CONFORMANCE = os.path.join(os.path.dirname(HERE), "tests", "conformance")
SESSION = "bench"


def fail(what):
    """Ends the bench with an error naming `what`."""
    print(f"error: {what}", file=sys.stderr, flush=True)
    sys.exit(1)


# -- the combiner process, from /proc -----------------------------------------

CLK_TCK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid):
    """utime + stime of process `pid` in seconds (/proc/PID/stat)."""
    with open(f"/proc/{pid}/stat") as f:
        # Fields after the command name, which may hold spaces: state is
        # field 3, utime 14, stime 15 (proc(5)).
        rest = f.read().rsplit(")", 1)[1].split()
    return (int(rest[11]) + int(rest[12])) / CLK_TCK


def status_mib(pid, key):
    """A kB field of /proc/PID/status (VmRSS, VmHWM) in MiB."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1]) / 1024
    fail(f"/proc/{pid}/status has no {key}")


# -- models ---------------------------------------------------------------------

def npz(arrays, fmt):
    """An npz archive of `arrays` ({key: ndarray}) as FEDn's numpyhelper
    writes it (np.savez_compressed) or STORED (np.savez)."""
    import numpy as np
    out = io.BytesIO()
    (np.savez_compressed if fmt == "deflate" else np.savez)(out, **arrays)
    return out.getvalue()


def random_model(params, seed, fmt):
    """One tensor "0" of `params` random normal float32 values, as npz."""
    import numpy as np
    rng = np.random.default_rng(seed)
    return npz({"0": rng.standard_normal(params, dtype=np.float32)}, fmt)


def write_stored_model(path, nbytes):
    """Writes to `path` a STORED npz (as np.savez writes it) of one float32
    tensor "0" of nbytes / 4 values, 16 MiB of random values at a time.
    Returns the file's size in bytes."""
    import numpy as np
    count = nbytes // 4
    block = np.random.default_rng(11).standard_normal(
        4 * MIB, dtype=np.float32).tobytes()
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as z:
        with z.open("0.npy", "w", force_zip64=True) as f:
            np.lib.format.write_array_header_1_0(
                f, {"descr": "<f4", "fortran_order": False,
                    "shape": (count,)})
            left = count * 4
            while left:
                n = min(left, len(block))
                f.write(block[:n])
                left -= n
    return os.path.getsize(path)


def file_chunks(path):
    """The bytes of `path` in chunks of 1 MiB (FEDn's chunk size)."""
    with open(path, "rb") as f:
        while True:
            data = f.read(MIB)
            if not data:
                return
            yield data


def bad_models(nbytes):
    """Two byte strings of `nbytes` that are not valid models: a zip local
    header of a DEFLATE "0.npy" member followed by random bytes, and a
    DEFLATE npz of random float32 cut at `nbytes` (its member's stream and
    the central directory missing)."""
    import struct
    import numpy as np
    rng = np.random.default_rng(13)
    name = b"0.npy"
    # Local file header: signature, version 2.0, flags 0, method 8
    # (DEFLATE), time, date, CRC-32, sizes (claimed), name length, extra.
    header = struct.pack("<4s5H3I2H", b"PK\x03\x04", 20, 0, 8, 0, 0x21,
                         0x12345678, nbytes, 4 * nbytes, len(name), 0) + name
    garbage = header + rng.bytes(nbytes - len(header))
    # Random normal float32 deflate to about 0.9 of their size: 1.25 x the
    # target in values is enough to cut the archive at `nbytes`.
    values = rng.standard_normal(nbytes * 5 // 16, dtype=np.float32)
    whole = npz({"0": values}, "deflate")
    if len(whole) <= nbytes:
        fail(f"the DEFLATE npz of {len(values)} values is only {len(whole)} "
             f"bytes; cannot cut it at {nbytes}")
    return {"garbage": garbage, "truncated": whole[:nbytes]}


# -- clients ----------------------------------------------------------------

def bench_client_class(big=False):
    """FednClient (tests/conformance/fedn_client.py) that also notes when
    each SendModelUpdate reply arrives, and serves training tasks on a
    thread with an update prepared in advance (with `big`, in a file)."""
    import fedn_pb2 as fedn
    from fedn_client import FednClient

    class BenchClient(FednClient):
        def __init__(self, address, name, update, num_examples):
            super().__init__(address, name)
            self.update = update
            self.num_examples = num_examples
            self.replied = {}   # round_id -> (monotonic time, response)
            self.errors = []    # what went wrong serving a task

        def send_model_update(self, task, update_id, meta):
            answer = super().send_model_update(task, update_id, meta)
            round_id = json.loads(task.data).get("round_id", "")
            self.replied[round_id] = (time.monotonic(), answer)
            return answer

        def serve(self):
            """Serves training tasks until close() (as FEDn's client's task
            loop: other task types are not sent in this bench)."""
            while not self._stop.is_set():
                task = self.next_task(0.5)
                if task is None:
                    continue
                if task.type != fedn.MODEL_UPDATE:
                    self.errors.append(f"unexpected task type {task.type}")
                    continue
                try:
                    self.train(task, lambda _model: self.update,
                               self.num_examples)
                except Exception as e:  # reported by the round driver
                    self.errors.append(f"{type(e).__name__}: {e}")

        def start_serving(self):
            self.start()
            self._spawn(self.serve)

    class BigClient(BenchClient):
        """A BenchClient whose update is a file, streamed in 1 MiB chunks,
        and which counts the global model's bytes instead of keeping
        them (eight 1 GiB models would not fit in this process)."""

        def download(self, model_id, timeout=300, unknown_wait=20):
            n = 0
            for r in self.models.Download(fedn.ModelRequest(id=model_id),
                                          metadata=self.metadata,
                                          timeout=timeout):
                if r.status == fedn.IN_PROGRESS:
                    n += len(r.data)
                elif r.status == fedn.OK:
                    return n
                else:
                    return None
            return None

        def upload(self, model_id, path, timeout=300):
            return self.upload_chunks(model_id, file_chunks(path), timeout)

    return BigClient if big else BenchClient


def check_round(rec, round_id, clients):
    """Fails the bench unless round `round_id` (its record `rec`) succeeded
    with an accepted update of every one of `clients`. Returns the clients'
    (reply time, response) of their SendModelUpdate."""
    n = len(clients)
    problems = [f"{c.name}: {e}" for c in clients for e in c.errors]
    if problems:
        fail(f"round {round_id}: " + "; ".join(problems[:5]))
    if rec.get("status") != "success" \
            or rec.get("nr_aggregated_models") != str(n):
        fail(f"round {round_id} with {n} clients: status "
             f"{rec.get('status')!r}, {rec.get('nr_aggregated_models')} "
             f"aggregated models, reason {rec.get('reason')!r}")
    replies = [c.replied.get(round_id) for c in clients]
    if any(x is None or x[1] != "accepted" for x in replies):
        fail(f"round {round_id}: updates not accepted: {replies}")
    return replies


def connect(clients, admin, timeout=60):
    """Starts `clients` serving and waits (bounded) until the combiner
    lists them all online, each with a heartbeat answered."""
    for c in clients:
        c.start_serving()
    ids = {c.client_id for c in clients}
    wait_for(lambda: all(c.heartbeats for c in clients)
             and ids <= online_clients(admin), timeout,
             f"{len(clients)} clients online with a heartbeat answered")


def round_config(round_id, model_id, n, args):
    """The Control.Start parameters of a training round of `n` clients."""
    return {"round_id": round_id, "session_id": SESSION,
            "model_id": model_id, "round_timeout": args.round_timeout,
            "clients_required": n, "max_clients": n, "buffer_size": -1,
            "validate": "false"}


def wait_for(pred, timeout, what, step=0.1):
    """Polls `pred` until it holds; fails the bench after `timeout` s."""
    deadline = time.monotonic() + timeout
    while not pred():
        if time.monotonic() >= deadline:
            fail(f"timed out after {timeout} s waiting for {what}")
        time.sleep(step)


def online_clients(admin):
    """The client ids the combiner lists as online (ListActiveClients)."""
    import fedn_pb2 as fedn
    reply = admin.connector.ListActiveClients(
        fedn.ListClientsRequest(sender=admin.sender()),
        metadata=admin.metadata, timeout=10)
    return {c.client_id for c in reply.client}


# -- scenarios --------------------------------------------------------------

def combiner(workdir, args):
    """A harness.Combiner (not started) with the bench's flags."""
    from harness import Combiner
    return Combiner(workdir, name="combiner-bench",
                    args=shlex.split(args.combiner_args),
                    log_level=args.log_level)


def summary(xs):
    """mean, min and max of the numbers `xs`."""
    return {"mean": sum(xs) / len(xs), "min": min(xs), "max": max(xs)}


def start_perf(pid, path):
    """`perf record -F 499 -g -p PID -o path` in the background."""
    log = open(path + ".log", "wb")
    proc = subprocess.Popen(["perf", "record", "-F", "499", "-g", "-p",
                             str(pid), "-o", path], stdout=log,
                            stderr=subprocess.STDOUT)
    log.close()
    time.sleep(1.0)  # perf attaches before the first round starts
    if proc.poll() is not None:
        fail(f"perf record exited with {proc.returncode}: see {path}.log")
    return proc


def stop_perf(proc, path):
    """Stops `perf record` (SIGINT: it writes its file), bounded."""
    proc.send_signal(signal.SIGINT)
    try:
        proc.wait(timeout=120)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=10)
        fail(f"perf record did not stop within 120 s of SIGINT ({path})")
    print(f"perf profile of the rounds: {path}", flush=True)


def end_clients(perf, clients):
    """Kills `perf` (a `perf record` an error left running, or None) and
    closes `clients`."""
    if perf:
        perf.kill()
        perf.wait(timeout=10)
    for c in clients:
        c.close()


def run_clients(n, rounds, args, perf_path):
    """One combiner, `n` clients, `rounds` rounds: the figures as a dict."""
    import fedn_pb2 as fedn
    from fedn_client import FednClient
    from harness import TempDir, run_round

    BenchClient = bench_client_class()
    seed = random_model(args.params, 1, "deflate")
    updates = [random_model(args.params, 100 + i, args.format)
               for i in range(n)]
    out = {"clients": n, "rounds": rounds,
           "update_bytes": sum(map(len, updates)) / n}
    with TempDir("rondo-bench-load-") as d, combiner(d, args) as comb:
        pid = comb.proc.pid
        out["rss_start"] = status_mib(pid, "VmRSS")
        admin = FednClient(comb.address, "bench-admin")
        clients = []
        perf = None
        try:
            reply = admin.upload("seed", seed)
            if reply.status != fedn.OK:
                fail(f"seed upload: {reply}")
            out["rss_seed"] = status_mib(pid, "VmRSS")
            clients = [BenchClient(comb.address, f"client-{i}", updates[i],
                                   100 + i) for i in range(n)]
            connect(clients, admin)
            # Let connection set-up settle: a few heartbeats each.
            time.sleep(2.0)
            out["rss_connected"] = status_mib(pid, "VmRSS")
            c0, t0 = cpu_seconds(pid), time.monotonic()
            time.sleep(args.idle_seconds)
            out["idle_cpu_pct"] = (100 * (cpu_seconds(pid) - c0)
                                   / (time.monotonic() - t0))

            if perf_path:
                perf = start_perf(pid, perf_path)
            cpu, wall, close = [], [], []
            model_id = "seed"
            for r in range(1, rounds + 1):
                round_id = str(r)
                c0, t0 = cpu_seconds(pid), time.monotonic()
                rec = run_round(comb.address,
                                round_config(round_id, model_id, n, args),
                                timeout=args.round_timeout + 120)
                t1 = time.monotonic()
                cpu.append(cpu_seconds(pid) - c0)
                wall.append(t1 - t0)
                replies = check_round(rec, round_id, clients)
                close.append(t1 - max(x[0] for x in replies))
                model_id = rec["model_id"]
                print(f"  N={n} round {r}: cpu {cpu[-1]:.3f} s, wall "
                      f"{wall[-1]:.2f} s, close {1000 * close[-1]:.0f} ms, "
                      f"VmRSS {status_mib(pid, 'VmRSS'):.0f} MiB",
                      flush=True)
            if perf:
                stop_perf(perf, perf_path)
                perf = None
            out["cpu"] = summary(cpu)
            out["wall"] = summary(wall)
            out["close_ms"] = summary([1000 * x for x in close])
            out["rss_after"] = status_mib(pid, "VmRSS")
            out["peak_rss"] = status_mib(pid, "VmHWM")
        finally:
            end_clients(perf, clients + [admin])
    return out


def print_clients(o):
    print(f"\n== {o['clients']} clients, {o['rounds']} rounds, update "
          f"{o['update_bytes'] / MIB:.2f} MiB ==")
    print(f"{'':34}{'mean':>10}{'min':>10}{'max':>10}")
    for label, key, fmt in (("combiner CPU per round (s)", "cpu", "{:10.3f}"),
                            ("round wall time (s)", "wall", "{:10.3f}"),
                            ("last update -> recorded (ms)", "close_ms",
                             "{:10.1f}")):
        s = o[key]
        print(f"{label:34}" + "".join(fmt.format(s[k])
                                      for k in ("mean", "min", "max")))
    print(f"idle CPU, {o['clients']} clients connected: "
          f"{o['idle_cpu_pct']:.2f} % of a core")
    print(f"RSS (MiB): start {o['rss_start']:.0f}, after seed "
          f"{o['rss_seed']:.0f}, clients connected {o['rss_connected']:.0f}, "
          f"after rounds {o['rss_after']:.0f}, peak (VmHWM) "
          f"{o['peak_rss']:.0f}", flush=True)


def run_big(args):
    """8 concurrent uploads of one --big-bytes model: the figures."""
    import fedn_pb2 as fedn
    from fedn_client import FednClient
    from harness import TempDir

    n = args.big_clients
    with TempDir("rondo-bench-big-") as d:
        path = os.path.join(d, "big-model.npz")
        size = write_stored_model(path, args.big_bytes)
        with combiner(d, args) as comb:
            pid = comb.proc.pid
            rss0 = status_mib(pid, "VmRSS")
            clients = [FednClient(comb.address, f"big-{i}") for i in range(n)]
            replies, errors = [None] * n, []

            def upload(i):
                try:
                    replies[i] = clients[i].upload_chunks(
                        f"big-model-{i}", file_chunks(path),
                        timeout=args.round_timeout + 600)
                except Exception as e:
                    errors.append(f"big-{i}: {e}")

            threads = [threading.Thread(target=upload, args=(i,), daemon=True)
                       for i in range(n)]
            t0 = time.monotonic()
            for t in threads:
                t.start()
            for t in threads:
                t.join(args.round_timeout + 660)
            wall = time.monotonic() - t0
            try:
                if any(t.is_alive() for t in threads):
                    fail("a big upload did not end")
                if errors:
                    fail("; ".join(errors))
                bad = [r for r in replies if r.status != fedn.OK]
                if bad:
                    fail(f"big uploads refused: {bad}")
                out = {"clients": n, "bytes": size, "wall": wall,
                       "rss_start": rss0,
                       "rss_after": status_mib(pid, "VmRSS"),
                       "peak_rss": status_mib(pid, "VmHWM"),
                       "bound": (2 * size + n * 4 * MIB + 64 * MIB) / MIB}
            finally:
                for c in clients:
                    c.close()
            if args.big_round:
                out["round"] = big_round(comb, path, n, args)
    print(f"\n== {n} concurrent uploads of {size / MIB:.0f} MiB (STORED) ==")
    print(f"wall {wall:.1f} s ({n * size / wall / 1e9:.2f} GB/s in all); "
          f"RSS (MiB): start {out['rss_start']:.0f}, after "
          f"{out['rss_after']:.0f}, peak (VmHWM) {out['peak_rss']:.0f}; "
          f"bound 2 x model + {n} x 4 MiB + 64 MiB = {out['bound']:.0f}",
          flush=True)
    if "round" in out:
        r = out["round"]
        print(f"one round of {n} clients with it (seed upload, {n} "
              f"downloads, {n} concurrent uploads, FedAvg): wall "
              f"{r['wall']:.1f} s, combiner CPU {r['cpu']:.1f} s; RSS (MiB) "
              f"before {r['rss_before']:.0f}, after {r['rss_after']:.0f}, "
              f"peak (VmHWM) {r['peak_rss']:.0f}", flush=True)
    return out


def big_round(comb, path, n, args):
    """One training round of `n` clients on the combiner `comb` whose
    global model and updates are the model file `path`; the combiner's peak
    RSS counted from the round's start (VmHWM reset through
    /proc/PID/clear_refs)."""
    import fedn_pb2 as fedn
    from fedn_client import FednClient
    from harness import run_round

    BigClient = bench_client_class(big=True)
    pid = comb.proc.pid
    with open(f"/proc/{pid}/clear_refs", "w") as f:
        f.write("5")  # resets VmHWM to the current RSS (proc(5))
    out = {"rss_before": status_mib(pid, "VmRSS")}
    admin = FednClient(comb.address, "bench-admin")
    clients = [BigClient(comb.address, f"big-trainer-{i}", path, 100 + i)
               for i in range(n)]
    try:
        c0, t0 = cpu_seconds(pid), time.monotonic()
        reply = admin.upload_chunks("big-seed", file_chunks(path),
                                    timeout=args.round_timeout)
        if reply.status != fedn.OK:
            fail(f"big seed upload: {reply}")
        connect(clients, admin)
        rec = run_round(comb.address, round_config("big", "big-seed", n, args),
                        timeout=args.round_timeout + 120)
        check_round(rec, "big", clients)
        out.update(wall=time.monotonic() - t0, cpu=cpu_seconds(pid) - c0,
                   rss_after=status_mib(pid, "VmRSS"),
                   peak_rss=status_mib(pid, "VmHWM"))
    finally:
        for c in clients:
            c.close()
        admin.close()
    return out


def run_bad(args):
    """--bad-count corrupt uploads, one after another: the figures."""
    import grpc
    import fedn_pb2 as fedn
    from fedn_client import FednClient
    from harness import TempDir

    kinds = bad_models(args.bad_bytes)
    seed = random_model(args.params, 1, "deflate")
    with TempDir("rondo-bench-bad-") as d, combiner(d, args) as comb:
        pid = comb.proc.pid
        c = FednClient(comb.address, "bad-uploader")
        outcomes = {}
        try:
            if c.upload("seed", seed).status != fedn.OK:
                fail("seed upload refused")
            rss = {"before": status_mib(pid, "VmRSS")}
            for i in range(args.bad_count):
                kind = ("garbage", "truncated")[i % 2]
                try:
                    r = c.upload(f"bad-{i}", kinds[kind],
                                 timeout=args.round_timeout)
                    what = fedn.ModelStatus.Name(r.status)
                except grpc.RpcError as e:
                    what = e.code().name
                key = f"{kind}:{what}"
                outcomes[key] = outcomes.get(key, 0) + 1
                if i == 0:
                    rss["first"] = status_mib(pid, "VmRSS")
            time.sleep(2.0)
            rss["after"] = status_mib(pid, "VmRSS")
            rss["peak"] = status_mib(pid, "VmHWM")
        finally:
            c.close()
    out = {"count": args.bad_count, "bytes": args.bad_bytes,
           "outcomes": outcomes, **rss}
    print(f"\n== {args.bad_count} corrupt uploads of "
          f"{args.bad_bytes / MIB:.0f} MiB ==")
    print("replies: " + ", ".join(f"{k} x{v}"
                                  for k, v in sorted(outcomes.items())))
    print(f"RSS (MiB): before {rss['before']:.1f}, after the first "
          f"{rss['first']:.1f}, after all {rss['after']:.1f} (difference "
          f"{rss['after'] - rss['before']:+.1f}), peak (VmHWM) "
          f"{rss['peak']:.0f}", flush=True)
    return out


# -- main -------------------------------------------------------------------

def int_list(text, what):
    try:
        return [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        fail(f"{what} must be a comma-separated list of integers, got "
             f"{text!r}")


def load_client_modules(rondo, stubs):
    """Checks the `rondo` executable and the folder `stubs` of the generated
    fedn_pb2*.py, and makes the conformance client, harness and stubs
    importable (fails the bench naming what is missing). The clients then
    open one TCP connection each, as separate client processes do."""
    if not os.access(rondo, os.X_OK):
        fail(f"--rondo {rondo!r} is not an executable")
    if not os.path.exists(os.path.join(stubs, "fedn_pb2_grpc.py")):
        fail(f"--stubs {stubs!r} has no fedn_pb2_grpc.py: build the "
             f"conformance_stubs target (needs protobuf-compiler-grpc)")
    try:
        import numpy  # noqa: F401
        import grpc  # noqa: F401
    except ImportError as e:
        fail(f"{sys.executable} lacks {e.name}: install Debian's "
             f"python3-numpy, python3-grpcio and python3-protobuf (and run "
             f"/usr/bin/python3)")
    # harness.Combiner runs RONDO_BIN; the conformance client and harness
    # and the generated stubs are imported from their folders.
    os.environ["RONDO_BIN"] = os.path.abspath(rondo)
    sys.path[:0] = [os.path.abspath(stubs), CONFORMANCE]
    import fedn_client
    # One TCP connection per client, as separate client processes have
    # (gRPC would otherwise share one between channels of equal options).
    fedn_client.CHANNEL_OPTIONS = fedn_client.CHANNEL_OPTIONS + [
        ("grpc.use_local_subchannel_pool", 1)]


def add_common_args(p):
    """The argparse options every bench driving `rondo` over FEDn's
    protocol takes: --rondo, --stubs and --round-timeout (seconds)."""
    p.add_argument("--rondo", default="build/apps/rondo",
                   help="the rondo executable (default %(default)s)")
    p.add_argument("--stubs", default="build/tests/pystubs",
                   help="the folder of the generated fedn_pb2.py and "
                        "fedn_pb2_grpc.py (default %(default)s)")
    p.add_argument("--round-timeout", type=float, default=600.0,
                   help="each round's round_timeout in seconds (default "
                        "%(default)s)")


def main(argv):
    p = argparse.ArgumentParser(
        description="CPU and memory of a rondo combiner under FEDn-protocol "
                    "clients (issue #14); see the file's comment.")
    add_common_args(p)
    p.add_argument("--clients", default="3,20,50",
                   help="client counts, one combiner each; 'none' runs no "
                        "rounds (default %(default)s)")
    p.add_argument("--rounds", default="10",
                   help="rounds per client count: one number, or one per "
                        "--clients entry (default %(default)s)")
    p.add_argument("--params", type=int, default=1_000_000,
                   help="float32 values of the model (default %(default)s)")
    p.add_argument("--format", choices=("deflate", "stored"),
                   default="deflate",
                   help="the clients' updates: np.savez_compressed as FEDn's "
                        "numpyhelper (deflate) or np.savez (stored)")
    p.add_argument("--idle-seconds", type=float, default=20.0,
                   help="idle CPU sampling time (default %(default)s)")
    p.add_argument("--perf", metavar="FILE",
                   help="record `perf record -F 499 -g` of the combiner "
                        "during the rounds of the largest client count")
    p.add_argument("--big", action="store_true",
                   help="also the concurrent large-upload case")
    p.add_argument("--big-bytes", type=int, default=1 << 30,
                   help="its model size in bytes (default %(default)s)")
    p.add_argument("--big-clients", type=int, default=8,
                   help="its concurrent uploads (default %(default)s)")
    p.add_argument("--big-round", action="store_true",
                   help="then one training round of as many clients with "
                        "that model as global model and as every update")
    p.add_argument("--bad", action="store_true",
                   help="also the corrupt-upload case")
    p.add_argument("--bad-count", type=int, default=100,
                   help="its uploads (default %(default)s)")
    p.add_argument("--bad-bytes", type=int, default=64 * MIB,
                   help="each one's size in bytes (default %(default)s)")
    p.add_argument("--combiner-args", default="",
                   help="extra `rondo combiner` flags, one shell-quoted "
                        "string")
    p.add_argument("--log-level", default="info",
                   help="the combiner's --log-level (default %(default)s)")
    args = p.parse_args(argv)

    counts = [] if args.clients == "none" else int_list(args.clients,
                                                        "--clients")
    rounds = int_list(args.rounds, "--rounds")
    if len(rounds) == 1:
        rounds = rounds * len(counts)
    if counts and len(rounds) != len(counts):
        fail(f"--rounds has {len(rounds)} entries, --clients {len(counts)}")
    if any(n < 1 for n in counts) or any(r < 1 for r in rounds):
        fail("client and round counts must be >= 1")
    if args.bad and args.bad_bytes < 4096:
        fail("--bad-bytes must be at least 4096")
    load_client_modules(args.rondo, args.stubs)

    print(f"rondo {args.rondo}; model {args.params} float32; updates "
          f"{args.format}; load average {os.getloadavg()[0]:.2f} "
          f"(nproc {os.cpu_count()})", flush=True)
    results = []
    for n, r in zip(counts, rounds):
        perf = args.perf if args.perf and n == max(counts) else None
        o = run_clients(n, r, args, perf)
        print_clients(o)
        results.append(o)
    big = run_big(args) if args.big else None
    bad = run_bad(args) if args.bad else None

    def col(key, stat=None, fmt="{:.3f}"):
        return ",".join(fmt.format(o[key] if stat is None else o[key][stat])
                        for o in results)
    kv = []
    if results:
        kv += [f"clients={col('clients', fmt='{}')}",
               f"rounds={col('rounds', fmt='{}')}",
               f"format={args.format}",
               f"cpu_per_round_s={col('cpu', 'mean')}",
               f"cpu_per_round_max_s={col('cpu', 'max')}",
               f"round_s={col('wall', 'mean')}",
               f"close_ms={col('close_ms', 'mean', '{:.1f}')}",
               f"close_max_ms={col('close_ms', 'max', '{:.1f}')}",
               f"idle_cpu_pct={col('idle_cpu_pct', fmt='{:.2f}')}",
               f"peak_rss_mib={col('peak_rss', fmt='{:.0f}')}",
               f"rss_after_mib={col('rss_after', fmt='{:.0f}')}"]
    if big:
        kv += [f"big_clients={big['clients']}",
               f"big_model_mib={big['bytes'] / MIB:.0f}",
               f"big_peak_rss_mib={big['peak_rss']:.0f}",
               f"big_bound_mib={big['bound']:.0f}",
               f"big_within_bound={int(big['peak_rss'] <= big['bound'])}"]
        if "round" in big:
            kv += [f"big_round_peak_rss_mib={big['round']['peak_rss']:.0f}",
                   f"big_round_cpu_s={big['round']['cpu']:.1f}"]
    if bad:
        kv += [f"bad_uploads={bad['count']}",
               f"bad_rss_before_mib={bad['before']:.1f}",
               f"bad_rss_after_mib={bad['after']:.1f}",
               f"bad_rss_diff_mib={bad['after'] - bad['before']:.1f}"]
    print(" ".join(kv), flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
