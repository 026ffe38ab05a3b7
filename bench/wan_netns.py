#!/usr/bin/env python3
"""WAN-like links: a federation across network namespaces
(deploy/netns_cluster.py: controller, combiners and client hosts, TLS and
tokens on) where every client host's link is limited by a token bucket
(tc tbf, both directions) to --rate (100mbit), training a model of
--model-mb (100) MB (one float32 tensor) with bench/wan_package (numpy:
adds a delta, reports num_examples).

Prints, per round: status, seconds, updates accepted of clients asked,
and the round's mean rate per client host (the model down and the update
up: 2 x model bytes x clients on the host / the round's seconds); per
client and round its own fetch, train and upload times and the rates of
its download and upload; then whether
every round succeeded, whether no client was dropped (updates_accepted ==
clients every round), the reduced model's check (seed + rounds x the mean
of the deltas weighted by examples), the clients' liveness state (warnings
in their logs: "unreachable", "task stream ... ended") and the combiners'
("lost", "silent"), and the tbf statistics of each client host's link.

Usage: bench/wan_netns.py --rondo PATH [--combiners 3] [--clients-per-host 1]
       [--rounds 3] [--model-mb 100] [--rate 100mbit] [--round-timeout 600]
       [--keep]. Needs root and iproute2; exit 77 where namespaces cannot
       be made, 1 when a round failed or a client was dropped.
"""

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(ROOT, "deploy"))
import netns_cluster  # noqa: E402

PACKAGE = os.path.join(HERE, "wan_package")
PY = "/usr/bin/python3"  # Debian's, with python3-numpy


def numpy_script(code, *args, timeout=300):
    """Runs `code` with Debian's python3 (numpy); returns its stdout."""
    r = subprocess.run([PY, "-c", code] + [str(a) for a in args],
                       capture_output=True, text=True, timeout=timeout)
    if r.returncode != 0:
        raise RuntimeError("numpy helper failed: %s" % r.stderr.strip())
    return r.stdout


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rondo", required=True)
    p.add_argument("--combiners", type=int, default=3)
    p.add_argument("--clients-per-host", type=int, default=1,
                   help="clients on each client host (one client host "
                   "per combiner)")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--model-mb", type=float, default=100,
                   help="model size in MB (10^6 bytes)")
    p.add_argument("--rate", default="100mbit",
                   help="each client host's link rate (tc units)")
    p.add_argument("--round-timeout", type=int, default=600)
    p.add_argument("--keep", action="store_true", help="keep the work folder")
    args = p.parse_args()

    net = netns_cluster.up_or_skip()
    if net is None:
        return 77
    work = tempfile.mkdtemp(prefix="rondo-wan-")
    values = int(args.model_mb * 1e6 / 4)
    ok = False
    try:
        fed = netns_cluster.Federation(net, os.path.abspath(args.rondo), work,
                                       combiners=args.combiners,
                                       client_hosts=args.combiners)
        print("run %s: %d combiners, %d client hosts with %d client(s) each,"
              " links %s (tbf both ways), model %d float32 (%.1f MB)"
              % (net.prefix, args.combiners, args.combiners,
                 args.clients_per_host, args.rate, values, values * 4 / 1e6),
              flush=True)
        for host in fed.client_hosts:
            net.limit(host, rate=args.rate)
        fed.start_controller()
        fed.start_combiners()
        clients = {}  # name -> (delta, examples)
        names = list(fed.combiner_hosts)
        for i, host in enumerate(fed.client_hosts):
            for j in range(args.clients_per_host):
                name = "wan-%d-%d" % (i + 1, j + 1)
                clients[name] = (float(len(clients) + 1),
                                 10 * (len(clients) + 1))
                fed.start_client(name, host, package=PACKAGE,
                                 preferred=names[i], env={
                                     "WAN_DELTA": str(clients[name][0]),
                                     "WAN_EXAMPLES": str(clients[name][1])})
        n_clients = len(clients)
        deadline = time.monotonic() + 90
        while sum(c["clients_online"] for c in fed.combiners().values()) \
                < n_clients:
            if time.monotonic() > deadline:
                raise RuntimeError("not every client online after 90 s")
            time.sleep(0.3)
        seed = os.path.join(work, "seed.npz")
        numpy_script("import numpy as np, sys\n"
                     "with open(sys.argv[1], 'wb') as f:\n"
                     "    np.savez(f, **{'0': np.zeros(int(sys.argv[2]),"
                     " np.float32)})", seed, values)
        r = fed.operator("seed", seed, timeout=300)
        if r.returncode != 0:
            raise RuntimeError("rondo seed: %s" % r.stderr.strip())
        seed_id = r.stdout.strip()
        t0 = time.monotonic()
        r = fed.operator(
            "session", "start", "--session-id", "wan", "--rounds",
            str(args.rounds), "--clients-required", "1",
            "--clients-requested", str(args.clients_per_host),
            "--round-timeout", str(args.round_timeout), "--validate",
            "false", "--model-id", seed_id, "--follow",
            timeout=args.rounds * (args.round_timeout + 120))
        took = time.monotonic() - t0
        print(r.stdout + r.stderr, end="", flush=True)
        report = json.loads(fed.operator("session", "status", "wan",
                                         "--json").stdout)
        rounds = report["rounds"]
        model_bits = values * 4 * 8
        # The mean rate of a client host's link over the round: the model
        # down and each update up, over the round's time (training too).
        print("\n%6s %8s %9s %9s %22s" % ("round", "status", "seconds",
                                          "accepted",
                                          "Mbit/s per client link"))
        for rnd in rounds:
            secs = rnd["seconds"]
            rate = (2 * model_bits * args.clients_per_host / secs / 1e6
                    if secs else 0)
            print("%6s %8s %9.1f %6d/%-2d %22.1f"
                  % (rnd["round_id"], rnd["status"], secs,
                     rnd["updates_accepted"], n_clients, rate))
        print("session: %d rounds in %.1f s" % (len(rounds), took))
        # Each client's own timing of its training task (its log line
        # "round R: model update ... sent (..., fetch F s, train T s,
        # upload U s)"): the model's download and the update's upload
        # across its limited link.
        timing = re.compile(r"round (\d+): model update \S+ sent \(.*?"
                            r"fetch ([\d.]+) s, train ([\d.]+) s, upload "
                            r"([\d.]+) s\)")
        print("\n%-10s %6s %8s %8s %8s %13s %13s"
              % ("client", "round", "fetch s", "train s", "upload s",
                 "fetch Mbit/s", "upload Mbit/s"))
        for name in clients:
            for m in timing.finditer(open(fed.path(name + ".log"),
                                          errors="replace").read()):
                fetch, train, upload = (float(x) for x in m.groups()[1:])
                print("%-10s %6s %8.2f %8.2f %8.2f %13.1f %13.1f"
                      % (name, m.group(1), fetch, train, upload,
                         model_bits / fetch / 1e6 if fetch else 0,
                         model_bits / upload / 1e6 if upload else 0))
        all_ok = (len(rounds) == args.rounds and
                  all(x["status"] == "success" for x in rounds))
        none_dropped = all(x["updates_accepted"] == n_clients
                           for x in rounds)
        print("every round succeeded: %s" % ("yes" if all_ok else "NO"))
        print("no client dropped (updates_accepted == %d each round): %s"
              % (n_clients, "yes" if none_dropped else "NO"))
        total = sum(n for _, n in clients.values())
        step = sum(d * n for d, n in clients.values()) / total
        model_ok = False
        if all_ok:
            out = os.path.join(work, "final.npz")
            e = fed.operator("models", "export", rounds[-1]["model_id"], out,
                             timeout=300)
            if e.returncode == 0:
                got = numpy_script(
                    "import numpy as np, sys\n"
                    "m = np.load(sys.argv[1])['0']\n"
                    "print(m.size, float(m.min()), float(m.max()))", out)
                size, lo, hi = got.split()
                want = args.rounds * step
                model_ok = (int(size) == values and abs(float(lo) - want) <
                            1e-3 and abs(float(hi) - want) < 1e-3)
                print("final model: %s values in [%s, %s], expected %.4f "
                      "(seed + %d x FedAvg of the deltas): %s"
                      % (size, lo, hi, want, args.rounds,
                         "yes" if model_ok else "NO"))
        warn = re.compile(r"\[warn\]|\[error\]")
        client_warnings = {}
        for name in clients:
            lines = [x for x in open(fed.path(name + ".log"),
                                     errors="replace").read().splitlines()
                     if warn.search(x)]
            if lines:
                client_warnings[name] = lines
        print("client liveness: %s" % (
            "no warning in any client's log (no 'unreachable', no 'task "
            "stream ... ended')" if not client_warnings else
            json.dumps(client_warnings, indent=1)))
        lost = []
        for name in list(fed.combiner_hosts) + ["controller"]:
            for x in open(fed.path(name + ".log"),
                          errors="replace").read().splitlines():
                if re.search(r"lost|silent|dropped|unreachable", x):
                    lost.append("%s: %s" % (name, x))
        print("controller/combiner logs: %s" % (
            "no client or combiner lost, silent or dropped" if not lost
            else "\n  " + "\n  ".join(lost[:20])))
        for host in fed.client_hosts:
            for way, text in net.qdisc(host).items():
                sent = re.search(r"Sent (\d+) bytes .*?\(dropped (\d+), "
                                 r"overlimits (\d+)", text, re.S)
                print("tbf %s %-7s: %s" % (
                    host.name, way, "sent %.1f MB, dropped %s packets, "
                    "overlimits %s" % (int(sent.group(1)) / 1e6,
                                       sent.group(2), sent.group(3))
                    if sent else " ".join(text.split())))
        ok = all_ok and none_dropped and model_ok and not client_warnings
    except Exception as e:  # report with the logs, then clean up
        print("FAILED: %s: %s" % (type(e).__name__, e), flush=True)
        try:
            fed.tails()
        except NameError:
            pass
    finally:
        net.close()
    return netns_cluster.finish(net, work, ok, args.keep)


if __name__ == "__main__":
    sys.exit(main())
