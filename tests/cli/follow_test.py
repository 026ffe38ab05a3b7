#!/usr/bin/env python3
"""`rondo session start --follow` prints every round's final state exactly
once, and the session's end once.

Cases (one ctest entry each, `--case NAME`):
- rounds_once: a real `rondo controller`, one `rondo combiner` and
  `rondo client`s running tests/cluster/package; a 5-round session that
  needs 2 trainers starts while only one client is connected, so its first
  round(s) fail (the controller's --client-wait runs out), then the second
  client joins and the rest succeed. The lines --follow prints are exactly
  the stored rounds (`session status --json`): each round once, with its
  final status, never "running"; the end line once, last; metrics.csv
  holds the same rounds; exit 1 naming the failed rounds.
- scripted_answers: a scripted controller API (Python's http.server)
  answers the wait route the way the controller may: rounds from
  `first_round` on only, a round in progress that ends in the next answer,
  an empty wait (204), and the session's end while its last round still
  looks running although it is stored as a success (the issue's round
  125). --follow must ask with after_rounds 0, 1, 2, 2, print rounds 1..3
  once each with their final state (round 3 read back from
  /api/v1/rounds/3), show round 2's missing validation, and exit 1 saying
  a round has no validation.
- scripted_full_reports: the same session answered as a controller before
  #15 answers the wait (every round each time, no first_round): the same
  output; the round still "running" in the last answer is printed once,
  as stored, never as running.

Standard library only; every wait is bounded.
"""

import json
import os
import queue
import subprocess
import sys
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "api"))
from cli_cases import check, run_cases  # noqa: E402
from federation import Federation  # noqa: E402

RONDO = os.environ.get("RONDO_BIN", "rondo")


class LineReader:
    """Reads a process's stdout on a thread so that a test can wait for a
    line with a bound."""

    def __init__(self, stream):
        self.lines = queue.Queue()
        self.seen = []
        self.thread = threading.Thread(target=self._pump, args=(stream,),
                                       daemon=True)
        self.thread.start()

    def _pump(self, stream):
        for line in stream:
            self.lines.put(line.rstrip("\n"))
        self.lines.put(None)

    def wait_for(self, pred, seconds):
        """The first line satisfying pred within `seconds`; raises
        otherwise."""
        deadline = time.monotonic() + seconds
        while True:
            left = deadline - time.monotonic()
            check(left > 0, f"no such line within {seconds} s: {self.seen}")
            try:
                line = self.lines.get(timeout=left)
            except queue.Empty:
                continue
            check(line is not None, f"output ended: {self.seen}")
            self.seen.append(line)
            if pred(line):
                return line

    def rest(self, seconds):
        """Every remaining line until the stream ends (bounded)."""
        self.thread.join(timeout=seconds)
        check(not self.thread.is_alive(), "the output did not end")
        while True:
            line = self.lines.get_nowait()
            if line is None:
                return self.seen
            self.seen.append(line)


def round_lines(lines):
    """The round lines --follow printed: those between the table header
    and the session's end line, as (round id, status)."""
    out = []
    for line in lines:
        words = line.split()
        if (len(words) >= 2 and words[0] not in ("round", "session")
                and not line.startswith("session ")):
            out.append((words[0], words[1]))
    return out


def case_rounds_once(d):
    f = Federation(RONDO, d)
    try:
        # Client c1 only, and a client wait of 3 s: a round without
        # enough trainers fails soon.
        f.start(clients={"c1": (1.0, 10)}, client_wait=3)
        seed_id = f.seed()
        csv = os.path.join(d, "metrics.csv")
        rounds = 5
        follow = subprocess.Popen(
            [RONDO, "session", "start", "--controller", f.api, "--token",
             f.admin, "--session-id", "followed", "--rounds", str(rounds),
             "--clients-required", "2", "--round-timeout", "20",
             "--validate", "false", "--model-id", seed_id, "--follow",
             "--metrics-csv", csv],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            out = LineReader(follow.stdout)
            first = out.wait_for(lambda x: x.split()[1:2] == ["failed"], 60)
            print("ok: a round failed with one trainer:", first, flush=True)
            f.start_client("c2", 3.0, 30)
            lines = out.rest(240)
            err = follow.stderr.read()
            follow.wait(timeout=30)
        finally:
            if follow.poll() is None:
                follow.kill()
        text = "\n".join(lines)
        printed = round_lines(lines)
        ends = [x for x in lines if x.startswith("session followed ")
                and "started" not in x]
        check(ends == ["session followed finished"] and lines[-1] == ends[0],
              "the end line once, last:\n" + text + "\n" + err)
        r = f.cli("session", "status", "followed", "--json")
        check(r.returncode == 0, "session status: " + r.stderr)
        stored = [(x["round_id"], x["status"])
                  for x in json.loads(r.stdout)["rounds"]]
        check(len(stored) == rounds, f"{rounds} rounds stored: {stored}")
        check(len(printed) == len({i for i, _ in printed}),
              "no round printed twice:\n" + text)
        check(sorted(printed) == sorted(stored),
              f"each stored round printed once with its final state: "
              f"printed {printed}, stored {stored}")
        statuses = [s for _, s in printed]
        check("failed" in statuses and "success" in statuses,
              f"failed and successful rounds: {statuses}")
        failed = statuses.count("failed")
        check(follow.returncode == 1
              and f"{failed} of {rounds} rounds of session followed failed"
              in err, f"exit 1 naming the failed rounds: "
                      f"{follow.returncode} {err}")
        rows = [tuple(x.split(",")[:2])
                for x in open(csv).read().splitlines()[1:]]
        check(rows == printed, f"metrics.csv has the printed rounds: {rows}")
        print("ok:", printed, flush=True)
    except Exception:
        f.tails()
        raise
    finally:
        f.stop()


# -- a scripted controller API ------------------------------------------------

def api_round(round_id, status, **extra):
    """A round as the API renders it (the fields --follow reads)."""
    r = {"round_id": round_id, "session_id": "s", "status": status,
         "reason": "", "model_id": "m" + round_id, "started_at": 100.0
         + int(round_id), "ended_at": 0.0 if status == "Running"
         else 100.5 + int(round_id),
         "clients_selected": ["a", "b"], "clients_accepted": ["a", "b"],
         "clients_rejected": [], "clients_silent": [], "combiners": [],
         "num_examples": 40, "validation_failure": None}
    r.update(extra)
    return r


def api_session(status):
    return {"session_id": "s", "status": status, "reason": "",
            "session_config": {"rounds": 3}, "round_ids": []}


def validation(round_id, acc):
    return {"validation_id": "v" + round_id, "model_id": "m" + round_id,
            "round_id": round_id, "session_id": "s",
            "data": json.dumps({"test_accuracy": acc, "test_loss": 0.5}),
            "sender": {"name": "a", "client_id": "a"}}


# after_rounds -> the answers, in order (None: 204, the wait ran out):
# rounds from first_round on, as the controller answers since #15.
PARTIAL = [
    (0, {"session": api_session("Started"), "first_round": 0,
         "rounds": [api_round("1", "Finished"), api_round("2", "Running")],
         "validations": [validation("1", 0.25)]}),
    (1, {"session": api_session("Started"), "first_round": 1,
         "rounds": [api_round("2", "Finished", validation_failure="no "
                              "validator answered within 30 s"),
                    api_round("3", "Running")],
         "validations": []}),
    (2, None),
    (2, {"session": api_session("Finished"), "first_round": 2,
         "rounds": [api_round("3", "Running")], "validations": []}),
]

# The same session as a controller before #15 answers: every round each
# time, no first_round.
ROUND_2_DONE = api_round("2", "Finished", validation_failure="no validator "
                         "answered within 30 s")
FULL = [
    (0, {"session": api_session("Started"),
         "rounds": [api_round("1", "Finished"), api_round("2", "Running")],
         "validations": [validation("1", 0.25)]}),
    (1, {"session": api_session("Started"),
         "rounds": [api_round("1", "Finished"), ROUND_2_DONE,
                    api_round("3", "Running")],
         "validations": [validation("1", 0.25)]}),
    (2, None),
    (2, {"session": api_session("Finished"),
         "rounds": [api_round("1", "Finished"), ROUND_2_DONE,
                    api_round("3", "Running")],
         "validations": [validation("1", 0.25)]}),
]


class ScriptedApi(BaseHTTPRequestHandler):
    """Answers the requests of `session start --follow` from `waits`; any
    other request is recorded as unexpected and answered 500."""
    waits = []
    asked = []
    unexpected = []

    def log_message(self, *args):
        pass

    def answer(self, code, body=None):
        data = json.dumps(body).encode() if body is not None else b""
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_POST(self):
        n = int(self.headers.get("Content-Length", "0"))
        body = json.loads(self.rfile.read(n) or b"{}")
        if self.path == "/api/v1/sessions/":
            self.answer(200, {"session_id": "s", "status": "Created"})
        elif self.path == "/api/v1/sessions/start" \
                and body.get("session_id") == "s":
            self.answer(200, {"message": "Session started"})
        else:
            self.unexpected.append("POST " + self.path)
            self.answer(500, {"message": "unexpected"})

    def do_GET(self):
        url = urllib.parse.urlparse(self.path)
        q = urllib.parse.parse_qs(url.query)
        if url.path == "/api/v1/sessions/s/wait":
            after = int(q["after_rounds"][0])
            self.asked.append(after)
            if not self.waits or self.waits[0][0] != after:
                self.unexpected.append(f"wait after_rounds={after}")
                self.answer(500, {"message": "unexpected wait"})
                return
            _, body = self.waits.pop(0)
            if body is None:
                self.answer(204)
            else:
                self.answer(200, body)
        elif url.path == "/api/v1/rounds/3":
            self.answer(200, api_round("3", "Finished"))
        elif url.path == "/api/v1/validations/" and q.get("round_id") == ["3"]:
            self.answer(200, {"count": 1, "result": [validation("3", 0.75)]})
        else:
            self.unexpected.append("GET " + self.path)
            self.answer(500, {"message": "unexpected"})


def follow_scripted(d, waits):
    """Runs `session start --follow` against ScriptedApi answering the
    waits `waits`; checks what it asked and printed."""
    ScriptedApi.waits = list(waits)
    server = ThreadingHTTPServer(("127.0.0.1", 0), ScriptedApi)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        csv = os.path.join(d, "metrics.csv")
        r = subprocess.run(
            [RONDO, "session", "start", "--controller",
             "127.0.0.1:%d" % server.server_address[1], "--session-id", "s",
             "--rounds", "3", "--follow", "--metrics-csv", csv],
            capture_output=True, text=True, timeout=60)
    finally:
        server.shutdown()
    lines = r.stdout.splitlines()
    text = r.stdout + r.stderr
    check(ScriptedApi.unexpected == [],
          f"only the expected requests: {ScriptedApi.unexpected}\n{text}")
    check(ScriptedApi.asked == [0, 1, 2, 2],
          f"after_rounds counts the rounds printed: {ScriptedApi.asked}")
    check(round_lines(lines) == [("1", "success"), ("2", "success"),
                                 ("3", "success")],
          "rounds 1..3 once each, with their final state:\n" + text)
    by_id = {x.split()[0]: x for x in lines if x.split()[:1] in
             (["1"], ["2"], ["3"])}
    check("0.2500" in by_id["1"] and "0.7500" in by_id["3"],
          "each round's validation metrics:\n" + text)
    check("(no validation: no validator answered within 30 s)"
          in by_id["2"], "round 2's missing validation is shown:\n" + text)
    check(lines[-1] == "session s finished"
          and sum(x.startswith("session s finished") for x in lines) == 1,
          "the end line once, last:\n" + text)
    check(r.returncode == 1 and "1 of 3 rounds of session s have no "
          "validation (first: round 2: no validator answered within 30 s)"
          in r.stderr, f"exit 1 naming the unvalidated round: "
                       f"{r.returncode} {r.stderr}")
    rows = open(csv).read().splitlines()
    check(rows[0].startswith("round,status,")
          and [x.split(",")[:2] for x in rows[1:]]
          == [["1", "success"], ["2", "success"], ["3", "success"]],
          f"metrics.csv: {rows}")


def case_scripted_answers(d):
    follow_scripted(d, PARTIAL)


def case_scripted_full_reports(d):
    follow_scripted(d, FULL)


CASES = {"rounds_once": case_rounds_once,
         "scripted_answers": case_scripted_answers,
         "scripted_full_reports": case_scripted_full_reports}

if __name__ == "__main__":
    run_cases(CASES, "rondo-follow-")
