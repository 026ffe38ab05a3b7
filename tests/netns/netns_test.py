#!/usr/bin/env python3
"""A federation across network namespaces (deploy/netns_cluster.py): one
host for the controller, one per combiner (3), three client hosts, each its
own namespace and address on a private subnet behind a bridge; TLS on the
middleman, the API and the client edge, tokens for operators and each
client. Clients run tests/cluster/package (npz_task.py: each adds its delta
to the global model and reports its num_examples), so every reduce is
checkable exactly.

Cases (--case):
- federation: 9 clients join through clients/add (`rondo client --api-url
  --preferred-combiner`) as 1, 3 and 5 clients of the three combiners; a
  3-round session: every round Success, each round's model equals the
  previous one plus the flat FedAvg of all 9 clients' deltas, each
  combiner's part Success with its own clients' examples.
- failover: 9 clients spread 3/3/3 by clients/add, with --reassign-after;
  mid-round 2 of a 4-round session combiner-2's host dies (its process
  SIGKILLed, its link down): round 2 ends Success (clients_required 1 per
  combiner) with combiner-2's part Failed("combiner combiner-2 lost ...")
  and the two live combiners' updates; combiner-2's clients log
  "reassigned" and land on live combiners; round 4 has all 9 updates and
  the flat FedAvg of all 9.
- partition: 9 clients spread 3/3/3, with --reassign-after; combiner-2's
  link goes down (its process runs on) while its clients train in round 1
  of 4: the controller counts it lost within its connection timeout, round
  1 ends Success with combiner-2's part Failed("combiner combiner-2 lost
  ..."), its clients log "reassigned", round 4 has all 9 updates; once the
  link is back combiner-2 joins again and gets the next new client.
- drain: 9 clients spread 3/3/3; while combiner-2's clients train in round
  1 (they sleep 6 s), `rondo combiners drain combiner-2`: round 1's part of
  combiner-2 is Success with all its clients' examples; the listing shows
  it draining; clients/add never returns it afterwards; its clients are
  told "is draining" once their round-1 training is done and move (log
  "reassigned"); rounds 2 and 3 do not include it; round 3 has all 9
  updates.

Usage: netns_test.py --rondo PATH --case NAME [--keep]. Exit 0 on success,
1 on a failed check (with the logs' tails), 77 (skipped) when network
namespaces cannot be made here (not root, no iproute2, no CAP_NET_ADMIN).
Every wait is bounded; everything made is removed on exit.
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from array import array

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
PACKAGE = os.path.join(ROOT, "tests", "cluster", "package")
sys.path.insert(0, os.path.join(ROOT, "deploy"))
sys.path.insert(0, PACKAGE)
import netns_cluster  # noqa: E402
import npz_task  # noqa: E402

# name -> (delta added to the model, num_examples); 9 clients.
CLIENTS = {"c%d" % k: (float(k), 10 * (10 - k)) for k in range(1, 10)}
# federation: preferred combiner per client (1, 3 and 5 clients).
PREFERRED = {"c1": "combiner-1",
             "c2": "combiner-2", "c3": "combiner-2", "c4": "combiner-2",
             "c5": "combiner-3", "c6": "combiner-3", "c7": "combiner-3",
             "c8": "combiner-3", "c9": "combiner-3"}
MODEL_SIZE = 4  # float32 values in the seed model


def check(cond, what):
    if not cond:
        raise AssertionError(what)
    print("ok:", what, flush=True)


def failure(r):
    """': <stderr>' of a failed CompletedProcess, '' of one that exited 0."""
    return "" if r.returncode == 0 else ": exit %d: %s" % (
        r.returncode, (r.stdout + r.stderr).strip())


def fedavg(names):
    """The weighted mean of `names`' deltas (what a round adds)."""
    n = sum(CLIENTS[x][1] for x in names)
    return sum(CLIENTS[x][0] * CLIENTS[x][1] for x in names) / n


class Test:
    def __init__(self, net, rondo, work):
        self.net, self.work = net, work
        self.marks = os.path.join(work, "marks")
        os.makedirs(self.marks)
        self.followers = []  # the sessions' `--follow` processes
        self.fed = netns_cluster.Federation(net, rondo, work, combiners=3,
                                            client_hosts=3)

    def start(self, preferred=None, client_extra=()):
        """Controller, 3 combiners, the 9 clients (3 per client host); waits
        until the combiners count all 9 online."""
        fed = self.fed
        fed.start_controller()
        fed.start_combiners()
        check(netns_cluster.reachable(fed.ctl.ip, int(
            fed.url.rsplit(":", 1)[1])), "the controller's API at %s is "
            "reachable from the root namespace through the bridge" % fed.url)
        for i, (name, (delta, n)) in enumerate(sorted(CLIENTS.items())):
            fed.start_client(
                name, fed.client_hosts[i % 3], package=PACKAGE,
                preferred=(preferred or {}).get(name), extra=client_extra,
                env={"RONDO_TEST_NAME": name, "RONDO_TEST_DELTA": str(delta),
                     "RONDO_TEST_EXAMPLES": str(n),
                     "RONDO_TEST_MARKS": self.marks})
        self.wait_online(9)
        seed = os.path.join(self.work, "seed.npz")
        npz_task.write_npz(seed, [("0.npy", "<f4", (MODEL_SIZE,),
                                   array("f", [0.0] * MODEL_SIZE))])
        r = fed.operator("seed", seed)
        check(r.returncode == 0, "rondo seed through the bridge"
              + failure(r))
        self.seed_id = r.stdout.strip()

    def start_balanced(self):
        """start() without preferred combiners and with --reassign-after 6
        (the client's heartbeat is every 2 s; the controller drops a
        silent combiner after 3 s); checks that clients/add spread the 9
        clients 3/3/3 and returns {combiner: its clients' names}."""
        self.start(client_extra=["--reassign-after", "6"])
        where = self.clients()
        counts = {c: sorted(x for x in where if where[x] == c)
                  for c in ("combiner-1", "combiner-2", "combiner-3")}
        check(all(len(v) == 3 for v in counts.values()),
              "clients/add spread the clients 3/3/3: %s" % counts)
        return counts

    def check_moved(self, names):
        """Checks that GET /api/v1/clients/ lists each of names (combiner-2's
        clients) on combiner-1 or combiner-3."""
        where = self.clients()
        check(all(where[x] in ("combiner-1", "combiner-3") for x in names),
              "combiner-2's clients now belong to the other combiners: %s"
              % {x: where[x] for x in names})

    def wait_online(self, total, timeout=90, exclude=()):
        """Until the live combiners (but `exclude`) count `total` clients
        online; returns {combiner: clients_online}."""
        deadline = time.monotonic() + timeout
        while True:
            online = {n: c["clients_online"]
                      for n, c in self.fed.combiners().items()
                      if c["alive"] and n not in exclude}
            if sum(online.values()) == total:
                return online
            if time.monotonic() > deadline:
                raise AssertionError("clients online %s, wanted %d in all"
                                     % (online, total))
            time.sleep(0.3)

    def clients(self):
        """{client name: its combiner} from GET /api/v1/clients/."""
        status, body = self.fed.api("GET", "/api/v1/clients/",
                                    headers={"X-Limit": "100"})
        check(status == 200, "GET /api/v1/clients/")
        return {c["name"]: c["combiner"] for c in body["result"]}

    def session(self, sid, rounds, settings=None, timeout=300, **extra):
        """Starts session sid (clients_required 1, every client asked) and
        returns the Popen of its `--follow`."""
        args = ["session", "start", "--session-id", sid, "--rounds",
                str(rounds), "--clients-required", "1",
                "--clients-requested", "9", "--round-timeout", "90",
                "--validate", "false", "--model-id", self.seed_id, "--follow"]
        if settings:
            args += ["--client-settings", json.dumps(settings)]
        for k, v in extra.items():
            args += ["--" + k.replace("_", "-"), str(v)]
        fed = self.fed
        follow = subprocess.Popen(
            [fed.rondo] + args + ["--controller", fed.url, "--ca", fed.ca,
                                  "--token-file", fed.admin_token_file],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        self.followers.append(follow)
        return follow

    def stop_followers(self):
        """Kills the `--follow` commands still running (after a failure)."""
        for follow in self.followers:
            if follow.poll() is None:
                follow.kill()
                follow.wait(timeout=10)

    def finish(self, follow, sid, timeout=300):
        """Waits (timeout s) for session sid's `--follow` to end, prints
        its output; returns (its exit code, `session status --json`)."""
        try:
            text, _ = follow.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            follow.kill()
            follow.communicate(timeout=10)
            raise
        print(text, end="", flush=True)
        r = self.fed.operator("session", "status", sid, "--json")
        check(r.returncode == 0, "session status %s" % sid + failure(r))
        return follow.returncode, json.loads(r.stdout)

    def model(self, model_id):
        out = os.path.join(self.work, model_id + ".npz")
        r = self.fed.operator("models", "export", model_id, out)
        check(r.returncode == 0, "models export %s" % model_id + failure(r))
        return [v for _, _, _, vs in npz_task.read_npz(out) for v in vs]

    def check_model(self, rnd, expected, what):
        got = self.model(rnd["model_id"])
        check(len(got) == MODEL_SIZE and
              all(abs(v - expected) < 1e-4 for v in got),
              "round %s's model %s equals %s (%.5f)"
              % (rnd["round_id"], got, what, expected))
        return got[0]

    def wait_marks(self, names, n, timeout=60):
        """Until each client in names began its n-th training."""
        deadline = time.monotonic() + timeout
        while not all(os.path.exists(os.path.join(
                self.marks, "%s.%d" % (x, n - 1))) for x in names):
            if time.monotonic() > deadline:
                raise AssertionError("%s did not begin training #%d in %d s"
                                     % (names, n, timeout))
            time.sleep(0.05)

    def log(self, name):
        return open(self.fed.path(name + ".log"), errors="replace").read()

    def logged_at(self, name, text):
        """The time (seconds since the epoch) of the first line of name's
        log containing text (spdlog's local-time stamp); None if none."""
        for line in self.log(name).splitlines():
            if text in line and line.startswith("["):
                stamp = line[1:line.index("]")]
                t = time.mktime(time.strptime(stamp.split(".")[0],
                                              "%Y-%m-%d %H:%M:%S"))
                return t + float("0." + stamp.split(".")[1])
        return None


def parts_of(rnd):
    return {p["combiner_id"]: p for p in rnd["combiners"]}


def case_federation(t):
    t.start(preferred=PREFERRED)
    online = t.wait_online(9)
    check(online == {"combiner-1": 1, "combiner-2": 3, "combiner-3": 5},
          "the preferred combiners got 1, 3 and 5 clients: %s" % online)
    where = t.clients()
    check(all(where[x] == PREFERRED[x] for x in CLIENTS),
          "GET /api/v1/clients/ lists each client on its combiner")
    follow = t.session("federation", 3)
    code, report = t.finish(follow, "federation")
    check(code == 0 and report["status"] == "finished",
          "the 3-round session finished (follow exit %d)" % code)
    rounds = report["rounds"]
    check([r["status"] for r in rounds] == ["success"] * 3,
          "every round Success")
    step = fedavg(CLIENTS)
    mine = {c: [x for x in CLIENTS if PREFERRED[x] == c]
            for c in ("combiner-1", "combiner-2", "combiner-3")}
    for i, rnd in enumerate(rounds, 1):
        check(rnd["updates_accepted"] == 9 and rnd["num_examples"] ==
              sum(n for _, n in CLIENTS.values()) and
              sorted(rnd["clients_accepted"]) == sorted(CLIENTS),
              "round %d: 9 updates accepted, %d examples"
              % (i, rnd["num_examples"]))
        parts = parts_of(rnd)
        for c, names in mine.items():
            p = parts.get(c, {})
            want = sum(CLIENTS[x][1] for x in names)
            check(p.get("status") == "success" and
                  p.get("num_examples") == want,
                  "round %d: %s's part Success with its %d clients' %d "
                  "examples" % (i, c, len(names), want))
        t.check_model(rnd, i * step, "%d x the flat FedAvg of 9 updates" % i)


def case_failover(t):
    counts = t.start_balanced()
    lost = counts["combiner-2"]
    # Every client takes 8 s per training: combiner-2's host dies while its
    # clients train in round 2.
    follow = t.session("failover", 4, {"sleepers": sorted(CLIENTS),
                                       "sleep": 8}, grace=15)
    t.wait_marks(lost, 2)
    killed_at = time.time()
    t.net.kill_host(t.fed.combiner_hosts["combiner-2"])
    print("ok: combiner-2's host is down (SIGKILL, link down) while %s "
          "train in round 2" % lost, flush=True)
    code, report = t.finish(follow, "failover", timeout=400)
    rounds = report["rounds"]
    check(len(rounds) == 4, "4 rounds ran")
    r2 = rounds[1]
    p2 = parts_of(r2)
    check(r2["status"] == "success", "round 2 Success: clients_required 1 "
          "per combiner, two combiners reported")
    check(p2["combiner-2"]["status"] == "failed" and
          p2["combiner-2"]["reason"].startswith("combiner combiner-2 lost"),
          "round 2: combiner-2's part Failed: %s" % p2["combiner-2"])
    live = counts["combiner-1"] + counts["combiner-3"]
    check(r2["updates_accepted"] == 6 and
          sorted(r2["clients_accepted"]) == sorted(live),
          "round 2 has the 6 updates of the live combiners' clients")
    base = t.check_model(rounds[0], fedavg(CLIENTS), "the flat FedAvg")
    base = t.check_model(r2, base + fedavg(live),
                         "round 1's + the live clients' FedAvg")
    for x in lost:
        at = t.logged_at(x, "reassigned")
        # --reassign-after 6 s, a training of 8 s that may still be under
        # way, then clients/add: well within 30 s.
        check(at is not None and at - killed_at < 30,
              "%s logged 'reassigned' %.1f s after the loss"
              % (x, (at or 0) - killed_at))
    t.check_moved(lost)
    online = t.wait_online(9, exclude=("combiner-2",))
    check(sorted(online) == ["combiner-1", "combiner-3"],
          "9 clients online on the live combiners: %s" % online)
    r3, r4 = rounds[2], rounds[3]
    check(r3["status"] == "success" and "combiner-2" not in parts_of(r4),
          "rounds 3 and 4 ran without combiner-2")
    check(r4["status"] == "success" and r4["updates_accepted"] == 9 and
          sorted(r4["clients_accepted"]) == sorted(CLIENTS),
          "round 4 has all 9 clients' updates")
    r3_value = t.model(r3["model_id"])[0]
    t.check_model(r4, r3_value + fedavg(CLIENTS),
                  "round 3's + the flat FedAvg of all 9")
    check(code == 0, "the session finished with every round successful")


def case_drain(t):
    counts = t.start_balanced()
    drained = counts["combiner-2"]
    follow = t.session("drain", 3, {"sleepers": drained, "sleep": 6})
    t.wait_marks(drained, 1)
    r = t.fed.operator("combiners", "drain", "combiner-2")
    check(r.returncode == 0, "rondo combiners drain combiner-2 while its "
          "clients train" + failure(r))
    listing = t.fed.combiners()
    check(listing["combiner-2"].get("draining") is True and
          not listing["combiner-1"].get("draining"),
          "GET /api/v1/combiners/ shows combiner-2 draining")
    # Ask for new clients: none may land on the drained combiner, even
    # though it is (or soon is) the least loaded.
    for i in range(4):
        status, body = t.fed.api("POST", "/api/v1/clients/add", {
            "client_id": "new-%d" % i, "name": "new-%d" % i,
            "package": "local"})
        check(status == 200 and body.get("host") != t.fed.combiner_hosts[
            "combiner-2"].ip, "clients/add for new-%d gives %s, not the "
            "drained combiner" % (i, body.get("host")))
    code, report = t.finish(follow, "drain")
    rounds = report["rounds"]
    r1 = rounds[0]
    p1 = parts_of(r1)
    want = sum(CLIENTS[x][1] for x in drained)
    check(r1["status"] == "success" and r1["updates_accepted"] == 9 and
          p1["combiner-2"]["status"] == "success" and
          p1["combiner-2"]["num_examples"] == want,
          "round 1: the drained combiner's part Success with its 3 clients' "
          "%d examples (none lost mid-round); 9 updates" % want)
    t.check_model(r1, fedavg(CLIENTS), "the flat FedAvg of 9")
    for rnd in rounds[1:]:
        check(rnd["status"] == "success" and
              "combiner-2" not in parts_of(rnd),
              "round %s does not include combiner-2" % rnd["round_id"])
    for x in drained:
        at = t.logged_at(x, "reassigned")
        done = os.path.getmtime(os.path.join(t.marks, x + ".0.done"))
        check("is draining" in t.log(x) and at is not None and at >= done,
              "%s was told 'is draining' and logged 'reassigned' %.1f s "
              "after it finished its training of round 1"
              % (x, (at or 0) - done))
    t.check_moved(drained)
    check(rounds[2]["updates_accepted"] == 9, "round 3 has all 9 updates")
    r2_value = t.model(rounds[1]["model_id"])[0]
    t.check_model(rounds[2], r2_value + fedavg(CLIENTS),
                  "round 2's + the flat FedAvg of all 9")
    check(code == 0, "the session finished with every round successful")


def case_partition(t):
    counts = t.start_balanced()
    cut = counts["combiner-2"]
    host = t.fed.combiner_hosts["combiner-2"]
    # Trainings of 10 s: round 4 begins some 30 s after the cut, well
    # after the cut clients rejoined (about 17 s).
    follow = t.session("partition", 4, {"sleepers": sorted(CLIENTS),
                                        "sleep": 10}, grace=15)
    t.wait_marks(cut, 1)
    cut_at = time.time()
    t.net.link(host, False)
    print("ok: combiner-2's link is down (its process runs on) while %s "
          "train in round 1" % cut, flush=True)
    code, report = t.finish(follow, "partition", timeout=400)
    rounds = report["rounds"]
    r1 = rounds[0]
    p1 = parts_of(r1)
    check(r1["status"] == "success" and p1["combiner-2"]["status"] ==
          "failed" and p1["combiner-2"]["reason"].startswith(
              "combiner combiner-2 lost"),
          "round 1 Success without the partitioned combiner-2, its part "
          "Failed: %s" % p1["combiner-2"]["reason"])
    check(r1["seconds"] < 90, "round 1 ended in %.1f s, within its "
          "round_timeout" % r1["seconds"])
    lost_at = t.logged_at("controller", "combiner combiner-2 lost")
    check(lost_at is not None and lost_at - cut_at < 3 + 5,
          "the controller counted combiner-2 lost %.1f s after the cut "
          "(--connection-timeout 3 s)" % ((lost_at or 0) - cut_at))
    # Without a reset from the lost host, the client's task stream ends
    # only when gRPC's keepalive gives up on it (about 15 s); then
    # --reassign-after (6 s) runs.
    for x in cut:
        at = t.logged_at(x, "reassigned")
        check(at is not None and at - cut_at < 40,
              "%s logged 'reassigned' %.1f s after the cut"
              % (x, (at or 0) - cut_at))
    check(rounds[3]["status"] == "success" and
          rounds[3]["updates_accepted"] == 9,
          "round 4 has all 9 clients' updates")
    # The link comes back: the combiner joins again and, the least loaded,
    # gets the next new client.
    t.net.link(host, True)
    t.fed.wait_alive(list(t.fed.combiner_hosts), timeout=60)
    status, body = t.fed.api("POST", "/api/v1/clients/add", {
        "client_id": "late", "name": "late", "package": "local"})
    check(status == 200 and body.get("host") == host.ip,
          "back on the network, combiner-2 gets the next new client: %s"
          % body)


CASES = {"federation": case_federation, "failover": case_failover,
         "drain": case_drain, "partition": case_partition}


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rondo", required=True)
    p.add_argument("--case", required=True, choices=sorted(CASES))
    p.add_argument("--keep", action="store_true", help="keep the work folder")
    args = p.parse_args()
    # Well before ctest's TIMEOUT (300 s), which kills without a chance to
    # clean up.
    net = netns_cluster.up_or_skip(deadline=270)
    if net is None:
        return 77
    work = tempfile.mkdtemp(prefix="rondo-netns-%s-" % args.case)
    print("run %s: subnet %s, work folder %s" % (net.prefix, net.subnet,
                                                 work), flush=True)
    ok = False
    t = None
    try:
        t = Test(net, os.path.abspath(args.rondo), work)
        CASES[args.case](t)
        ok = True
    except (Exception, SystemExit) as e:  # report it with the logs
        print("FAILED: %s: %s" % (type(e).__name__, e), flush=True)
        if t:
            t.fed.tails()
    finally:
        if t:
            t.stop_followers()
        net.close()
    return netns_cluster.finish(net, work, ok, args.keep)


if __name__ == "__main__":
    sys.exit(main())
