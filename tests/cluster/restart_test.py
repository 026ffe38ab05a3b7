"""A controller killed with SIGKILL in the middle of a session's round, and
started again on the same database: the session resumes from its last
committed global model and finishes all its rounds; round ids strictly
increase (none is reused); every model of the trail is still there, intact
(exported and checked against the FedAvg arithmetic, and `rondo store
verify` checks every stored model's checksum).

Usage: restart_test.py [--keep]   (RONDO_BIN names the rondo binary)"""

import argparse
import json
import os
import signal
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "api"))
from federation import run_case, check  # noqa: E402
sys.path.insert(0, os.path.join(HERE, "package"))
import npz_task  # noqa: E402

ROUNDS = 4
# c1 adds 1.0 with 10 examples, c2 adds 3.0 with 30: FedAvg adds 2.5 a round.
STEP = (1.0 * 10 + 3.0 * 30) / 40


def status(f, sid):
    r = f.cli("session", "status", sid, "--json", timeout=60)
    if r.returncode != 0:
        return None
    return json.loads(r.stdout)


def wait_status(f, sid, cond, what, timeout):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        rep = status(f, sid)
        if rep is not None and cond(rep):
            return rep
        time.sleep(0.3)
    raise AssertionError("%s: not within %d s (last: %s)"
                         % (what, timeout, json.dumps(rep)[:2000]))


def start_controller(f, port, http_port, log_name):
    w = f.work
    f.spawn("controller", [
        "controller", "--port", str(port),
        "--port-file", os.path.join(w, "controller.port"),
        "--http-port", str(http_port),
        "--http-port-file", os.path.join(w, "controller.http"),
        "--auth-secret-file", f.secret_file,
        "--db", os.path.join(w, "ctrl-db"), "--client-wait", "60"],
        log_name=log_name)


def body(f, work):
    f.start()
    seed = f.seed()
    sid = "resume-me"
    # c1 sleeps 1.5 s in each training: rounds last long enough to be
    # killed in.
    settings = json.dumps({"sleepers": ["c1"], "sleep": 1.5})
    r = f.cli("session", "start", "--session-id", sid, "--rounds",
              str(ROUNDS), "--clients-required", "2", "--round-timeout", "60",
              "--validate", "false", "--client-settings", settings,
              "--model-id", seed)
    check(r.returncode == 0, "session started: " + r.stdout + r.stderr)
    # A follower that outlives the controller's restart.
    follow_log = open(os.path.join(work, "follow.out"), "w")
    follower = subprocess.Popen(
        [f.rondo, "session", "follow", sid, "--controller", f.api,
         "--token", f.admin], stdout=follow_log, stderr=subprocess.STDOUT)
    # Kill the controller while round 2 is at the clients (both began their
    # second training; c1 sleeps in it).
    mid = wait_status(f, sid, lambda rep: sum(
        1 for x in rep["rounds"] if x["status"] == "success") >= 1
        and any(x["status"] == "running" for x in rep["rounds"]),
        "round 1 ended and round 2 runs", 120)
    before = [x["round_id"] for x in mid["rounds"]]
    port = int(open(os.path.join(work, "controller.port")).read())
    http_port = int(open(os.path.join(work, "controller.http")).read())
    f.procs["controller"].send_signal(signal.SIGKILL)
    f.procs["controller"].wait(timeout=30)
    check(True, "controller killed with SIGKILL during round %s"
          % before[-1])
    os.remove(os.path.join(work, "controller.port"))
    start_controller(f, port, http_port, "controller-restarted")
    f.wait_file("controller", "controller.port")
    rep = wait_status(f, sid, lambda rep: rep["status"] != "running",
                      "session ended", 240)
    rounds = rep["rounds"]
    check(rep["status"] == "finished",
          "the session resumed and finished: %s %s"
          % (rep["status"], rep["reason"]))
    ids = [int(x["round_id"]) for x in rounds]
    check(all(a < b for a, b in zip(ids, ids[1:])),
          "round ids strictly increase: %s" % ids)
    ok = [x for x in rounds if x["status"] == "success"]
    check(len(ok) == ROUNDS, "%d rounds succeeded: %s"
          % (ROUNDS, [(x["round_id"], x["status"]) for x in rounds]))
    failed = [x for x in rounds if x["status"] != "success"]
    check(all("controller restart" in x["reason"] for x in failed),
          "a failed round is the one cut short by the restart: %s"
          % [(x["round_id"], x["reason"]) for x in failed])
    check(before[-1] in [x["round_id"] for x in rounds],
          "the round in flight at the kill is recorded")
    follower.wait(timeout=60)
    text = open(os.path.join(work, "follow.out")).read()
    lines = text.splitlines()
    printed = [ln.split()[0] for ln in lines if ln.split()
               and ln.split()[0].isdigit()]
    check(printed == [x["round_id"] for x in rounds]
          and "controller unreachable" in text
          and ("session %s finished" % sid) in lines,
          "`rondo session follow` rode out the restart and printed each "
          "round once, then the end:\n" + text)
    # Every model of the trail: present, exported, the FedAvg of its depth.
    trail = json.loads(f.cli("models", "list", "--json").stdout)
    check(len(trail) == 1 + ROUNDS,
          "the trail holds the seed and %d models: %d" % (ROUNDS, len(trail)))
    depth = {seed: 0}
    for m in trail:
        if m.get("parent_id") or m.get("parent_model"):
            parent = m.get("parent_id") or m.get("parent_model")
            depth[m["model_id"]] = depth[parent] + 1
        out = os.path.join(work, m["model_id"] + ".npz")
        r = f.cli("models", "export", m["model_id"], out)
        check(r.returncode == 0, "model %s exported: %s"
              % (m["model_id"], r.stderr))
        got = [v for _, _, _, vs in npz_task.read_npz(out) for v in vs]
        want = STEP * depth[m["model_id"]]
        check(all(abs(v - want) < 1e-4 for v in got),
              "model %s (depth %d) holds %.2f: %s"
              % (m["model_id"], depth[m["model_id"]], want, got))
    check(max(depth.values()) == ROUNDS, "the newest model is %d rounds deep"
          % ROUNDS)
    f.procs["controller"].send_signal(signal.SIGTERM)
    f.procs["controller"].wait(timeout=30)
    r = subprocess.run([f.rondo, "store", "--db",
                        os.path.join(work, "ctrl-db"), "verify"],
                       capture_output=True, text=True, timeout=120)
    check(r.returncode == 0, "every stored model matches its checksum: "
          + r.stdout + r.stderr)


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--keep", action="store_true")
    a = p.parse_args()
    return run_case("rondo-restart-", body, a.keep)


if __name__ == "__main__":
    sys.exit(main())
