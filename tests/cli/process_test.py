#!/usr/bin/env python3
"""`rondo combiner` and `rondo controller` processes from outside: a port
that is taken makes the second process fail at once with a plain message
and leaves no database behind. Standard library only."""

import os
import subprocess
import time

from cli_cases import check, run_cases

RONDO = os.environ.get("RONDO_BIN", "rondo")


def wait_for(path, seconds=30):
    deadline = time.monotonic() + seconds
    while not os.path.exists(path):
        check(time.monotonic() < deadline, f"{path} did not appear")
        time.sleep(0.1)
    with open(path) as f:
        return int(f.read().strip())


def case_taken_port(d):
    # The controller's HTTP API port (--http-port) is checked as well.
    http = {"combiner": [],
            "controller": ["--http-port", "0", "--http-port-file",
                           f"{d}/controller-api.port"]}
    for role in ("combiner", "controller"):
        first = subprocess.Popen(
            [RONDO, role, "--db", f"{d}/{role}-1", "--port", "0",
             "--port-file", f"{d}/{role}.port"] + http[role],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            port = wait_for(f"{d}/{role}.port")
            taken = [("--port", port)]
            if role == "controller":
                taken.append(("--http-port",
                              wait_for(f"{d}/controller-api.port")))
            for flag, busy in taken:
                ports = {"--port": "0"}
                if role == "controller":
                    ports["--http-port"] = "0"
                ports[flag] = str(busy)
                r = subprocess.run([RONDO, role, "--db", f"{d}/{role}-2"]
                                   + [x for kv in ports.items() for x in kv],
                                   capture_output=True, text=True, timeout=30)
                check(r.returncode == 1, f"{role} {flag}: exit {r.returncode}")
                check(f"cannot listen on 127.0.0.1:{busy}: the port is in use"
                      in r.stderr, r.stderr)
                check(not os.path.exists(f"{d}/{role}-2"),
                      f"{role} {flag}: the second database was created")
                check(first.poll() is None, f"the first {role} died")
        finally:
            first.terminate()
            check(first.wait(timeout=30) == 0,
                  f"the first {role} did not exit cleanly")


def case_bad_byte_counts(d):
    """Byte-count options of `rondo combiner` refuse what CLI11 would
    otherwise read as huge numbers (a negative one) or what would break
    uploads (a gRPC quota below four of the largest messages), naming the
    option and the value, before anything is created."""
    for flag, value, says in [
            ("--update-memory-bytes", "-5", "got -5"),
            ("--max-model-bytes", "-1", "got -1"),
            ("--grpc-memory-bytes", "-5", "got -5"),
            ("--grpc-memory-bytes", "1000", "0 (no limit) or 17039360")]:
        r = subprocess.run([RONDO, "combiner", "--db", f"{d}/db", "--port",
                            "0", flag, value],
                           capture_output=True, text=True, timeout=30)
        check(r.returncode == 2, f"{flag} {value}: exit {r.returncode}")
        check(flag in r.stderr and says in r.stderr,
              f"{flag} {value}: {r.stderr!r}")
        check(not os.path.exists(f"{d}/db"),
              f"{flag} {value}: the database was created")


CASES = {"taken_port": case_taken_port,
         "bad_byte_counts": case_bad_byte_counts}

if __name__ == "__main__":
    run_cases(CASES, "rondo-process-")
