#!/usr/bin/env python3
"""Mutual TLS on the CAF middleman, with real `rondo` processes on loopback
(standard library only; certificates from `rondo certs`).

Cases (--case NAME):
  certs                       `rondo certs init/issue` output: verifies with
                              `openssl verify`, SANs, key usages, keys 0600,
                              nothing overwritten.
  stranger_cannot_reach_basp  a TLS controller, a combiner and 2 clients run
                              a session of several rounds while strangers
                              connect: TLS without a certificate, TLS with a
                              certificate of another CA, plaintext BASP
                              headers (the zero header and one announcing a
                              0xFFFFFF00-byte payload), and silent
                              connections held open. The controller stays
                              alive, its RSS does not jump and every round
                              succeeds. With --plaintext the same attack runs
                              against a controller without TLS (it is
                              expected to FAIL: the controller dies).
  wrong_ca_cannot_join        a combiner with another CA's certificate fails
                              at once with a clear error; the controller
                              sees no combiner; one with the right CA joins.
                              A controller restarted with a certificate of
                              another CA on the same port is not rejoined by
                              the combiner's link (CAF's own client-side
                              verification); restarted with the right one, it
                              is.
  refuses_open_host           `rondo controller --host 0.0.0.0` without
                              certificates exits 2 naming --cert/--key/--ca,
                              with certificates but no --auth-secret-file
                              (its HTTP API) it exits 2 naming that; with
                              --insecure it starts and warns; with both it
                              starts without the warning, serves an
                              operator with an admin token over HTTPS (not
                              one without) and a combiner over mutual TLS.

Usage: cluster_tls_test.py --rondo PATH --case NAME [--plaintext] [--keep].
Exit 0 on success, 1 on a failed check (with the logs' tails). Every wait is
bounded.
"""

import argparse
import json
import os
import signal
import socket
import ssl
import struct
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
PACKAGE = os.path.join(HERE, "..", "cluster", "package")
sys.path.insert(0, PACKAGE)
import npz_task  # noqa: E402


def check(cond, what):
    if not cond:
        raise AssertionError(what)
    print("ok:", what, flush=True)


class Procs:
    """The processes of one case, their logs in the work folder."""

    def __init__(self, rondo, work):
        self.rondo, self.work = rondo, work
        self.procs = {}

    def log_path(self, name):
        return os.path.join(self.work, name + ".log")

    def spawn(self, name, args, env=None):
        log = open(self.log_path(name), "a")
        self.procs[name] = subprocess.Popen(
            [self.rondo] + args, stdout=log, stderr=subprocess.STDOUT,
            env=env)
        return self.procs[name]

    def log(self, name):
        return open(self.log_path(name), errors="replace").read()

    def wait_port(self, name, timeout=30, proc=None):
        """The port in `name`.port, written by process `proc` (default:
        name)."""
        path = os.path.join(self.work, name + ".port")
        name = proc or name
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if os.path.exists(path) and open(path).read().strip():
                return int(open(path).read())
            if self.procs[name].poll() is not None:
                raise AssertionError("%s exited early (%s):\n%s" % (
                    name, self.procs[name].returncode, self.log(name)))
            time.sleep(0.05)
        raise AssertionError(name + " wrote no port within %d s" % timeout)

    def wait_log(self, name, text, timeout=30, start=0):
        """Waits until `text` is in name's log past offset `start`."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if text in self.log(name)[start:]:
                return
            time.sleep(0.05)
        raise AssertionError("%r not in %s's log within %d s" % (
            text, name, timeout))

    def stop(self, name, timeout=15):
        p = self.procs[name]
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
        try:
            return p.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            p.kill()
            return p.wait()

    def stop_all(self):
        for name in list(self.procs):
            self.stop(name)

    def tails(self):
        for name in sorted(os.listdir(self.work)):
            if not name.endswith(".log"):
                continue
            lines = open(os.path.join(self.work, name),
                         errors="replace").read().splitlines()[-20:]
            print("---- %s (last %d lines)" % (name, len(lines)))
            print("\n".join(lines))


def rondo_run(rondo, *args, timeout=60):
    return subprocess.run([rondo] + list(args), capture_output=True,
                          text=True, timeout=timeout)


def make_certs(rondo, d, *nodes):
    """A CA in `d` and one certificate per node (SAN 127.0.0.1)."""
    r = rondo_run(rondo, "certs", "init", d, "--days", "30")
    check(r.returncode == 0, "certs init %s (%s)" % (d, r.stderr.strip()))
    for n in nodes:
        r = rondo_run(rondo, "certs", "issue", d, n, "--host", "127.0.0.1",
                      "--days", "30")
        check(r.returncode == 0, "certs issue %s (%s)" % (n, r.stderr.strip()))


def tls_flags(d, name):
    return ["--cert", os.path.join(d, name + ".crt"),
            "--key", os.path.join(d, name + ".key"),
            "--ca", os.path.join(d, "ca.crt")]


def vm_rss_kib(pid):
    for line in open("/proc/%d/status" % pid):
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS for pid %d" % pid)


# -- the strangers ----------------------------------------------------------

ZERO_HEADER = struct.pack(">BBBBIQQQ", 1, 0, 0, 0, 0, 0, 0, 0)
HUGE_HEADER = struct.pack(">BBBBIQQQ", 1, 0, 0, 0, 0xFFFFFF00, 0, 0, 0)


def plaintext_junk(port, header):
    """Sends a BASP header as plaintext; @returns what came back before the
    server closed (or 2 s passed)."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.settimeout(2)
        try:
            s.sendall(header)
            got = b""
            while True:
                chunk = s.recv(4096)
                if not chunk:
                    break
                got += chunk
        except (socket.timeout, ConnectionError):
            pass
        return got


def tls_stranger(port, ca, cert=None, key=None):
    """A TLS client (trusting `ca`, presenting cert/key if given). @returns
    'refused: <reason>' when the handshake or the first read fails, or
    'talked' when the server sent application data."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.load_verify_locations(ca)
    if cert:
        ctx.load_cert_chain(cert, key)
    with socket.create_connection(("127.0.0.1", port), timeout=5) as raw:
        try:
            with ctx.wrap_socket(raw) as s:
                # TLS 1.3: the server checks our certificate after our
                # Finished; a rejection arrives as an alert on first read.
                s.settimeout(5)
                data = s.recv(64)
                return "talked" if data else "refused: closed"
        except (ssl.SSLError, ConnectionError, socket.timeout) as e:
            return "refused: %s" % e


# -- cases --------------------------------------------------------------------


def case_certs(rondo, work, procs):
    d = os.path.join(work, "certs")
    r = rondo_run(rondo, "certs", "init", d, "--days", "30")
    check(r.returncode == 0, "certs init exits 0 (%s)" % r.stderr.strip())
    check(os.path.join(d, "ca.key") in r.stdout
          and os.path.join(d, "ca.crt") in r.stdout,
          "certs init prints the files written:\n" + r.stdout)
    r = rondo_run(rondo, "certs", "issue", d, "ctrl", "--host", "127.0.0.1",
                  "--host", "ctrl.example.org", "--host", "::1")
    check(r.returncode == 0, "certs issue ctrl exits 0 (%s)"
          % r.stderr.strip())
    check(os.path.join(d, "ctrl.crt") in r.stdout, "issue prints ctrl.crt")
    r = rondo_run(rondo, "certs", "issue", d, "op")
    check(r.returncode == 0, "certs issue op (no --host) exits 0")
    for n in ("ctrl", "op"):
        crt = os.path.join(d, n + ".crt")
        v = subprocess.run(["openssl", "verify", "-CAfile",
                            os.path.join(d, "ca.crt"), crt],
                           capture_output=True, text=True)
        check(v.returncode == 0 and v.stdout.strip() == crt + ": OK",
              "openssl verify -CAfile ca.crt %s.crt: %s" % (n, v.stdout.strip()))
    def ext(n, name):
        return subprocess.run(
            ["openssl", "x509", "-noout", "-ext", name, "-in",
             os.path.join(d, n + ".crt")],
            capture_output=True, text=True).stdout
    san = ext("ctrl", "subjectAltName")
    check("IP Address:127.0.0.1" in san and "DNS:ctrl.example.org" in san
          and "IP Address:0:0:0:0:0:0:0:1" in san,
          "ctrl's SANs: %s" % " ".join(san.split()))
    check("DNS:op" in ext("op", "subjectAltName"),
          "without --host the SAN is the name")
    eku = ext("ctrl", "extendedKeyUsage")
    check("TLS Web Server Authentication" in eku
          and "TLS Web Client Authentication" in eku,
          "serverAuth and clientAuth")
    check("CA:FALSE" in ext("ctrl", "basicConstraints")
          and "CA:TRUE" in ext("ca", "basicConstraints"),
          "basicConstraints: the CA is one, the node is not")
    check("Certificate Sign" in ext("ca", "keyUsage"), "CA keyCertSign")
    for f in ("ca.key", "ctrl.key", "op.key"):
        mode = os.stat(os.path.join(d, f)).st_mode & 0o777
        check(mode == 0o600, "%s is mode %o" % (f, mode))
    check(os.stat(d).st_mode & 0o777 == 0o700, "the folder is 0700")
    key = open(os.path.join(d, "ctrl.key")).read()
    r = rondo_run(rondo, "certs", "issue", d, "ctrl")
    check(r.returncode == 1 and "exists" in r.stderr
          and open(os.path.join(d, "ctrl.key")).read() == key,
          "issuing ctrl again is refused, its key kept: " + r.stderr.strip())
    r = rondo_run(rondo, "certs", "init", d)
    check(r.returncode == 1 and "ca.key exists" in r.stderr,
          "init again is refused: " + r.stderr.strip())
    r = rondo_run(rondo, "certs", "issue", d, "../evil")
    check(r.returncode == 1 and "NAME" in r.stderr
          and not os.path.exists(os.path.join(work, "evil.key")),
          "a path-like NAME is refused: " + r.stderr.strip())


def start_controller(procs, work, flags, name="controller", port=0,
                     extra=()):
    """Starts a controller; @returns its middleman port (combiners). Its
    HTTP API port (operators) is then in procs.wait_port(name + "-api")."""
    procs.spawn(name, ["controller", "--port", str(port), "--port-file",
                       os.path.join(work, name + ".port"), "--db",
                       os.path.join(work, "ctrl-db"), "--client-wait", "60",
                       "--http-port", "0", "--http-port-file",
                       os.path.join(work, name + "-api.port")]
                + flags + list(extra))
    return procs.wait_port(name)


def start_combiner(procs, work, name, ctrl_port, flags):
    procs.spawn(name, ["combiner", "--port", "0", "--port-file",
                       os.path.join(work, name + ".port"), "--db",
                       os.path.join(work, name + "-db"), "--name", name,
                       "--controller", "127.0.0.1:%d" % ctrl_port] + flags)


def case_stranger(rondo, work, procs, plaintext):
    d = os.path.join(work, "certs")
    other = os.path.join(work, "other")
    make_certs(rondo, d, "ctrl", "comb", "op")
    make_certs(rondo, other, "mallory")
    ca = os.path.join(d, "ca.crt")
    flags = (lambda n: []) if plaintext else (lambda n: tls_flags(d, n))
    port = start_controller(procs, work, flags("ctrl"))
    ctrl = procs.procs["controller"]
    start_combiner(procs, work, "A", port, flags("comb"))
    comb_port = procs.wait_port("A")
    procs.wait_log("A", "joined the controller")
    marks = os.path.join(work, "marks")
    os.makedirs(marks)
    for i, (delta, n) in enumerate(((1.0, 10), (2.0, 30))):
        env = dict(os.environ, RONDO_TEST_NAME="c%d" % i,
                   RONDO_TEST_DELTA=str(delta), RONDO_TEST_EXAMPLES=str(n),
                   RONDO_TEST_MARKS=marks)
        # The combiner's --cert/--key also serve its client edge over TLS.
        client_tls = [] if plaintext else ["--ca", ca]
        procs.spawn("c%d" % i, ["client", "--host", "127.0.0.1", "--port",
                                str(comb_port), "--name", "c%d" % i,
                                "--package", PACKAGE] + client_tls, env=env)
    # The operator reaches the controller's HTTP API: over HTTPS (the
    # controller's --cert/--key) verified with --ca unless plaintext.
    api_port = procs.wait_port("controller-api", proc="controller")
    op = ["--controller", "127.0.0.1:%d" % api_port] + (
        [] if plaintext else ["--ca", ca])
    seed = os.path.join(work, "seed.npz")
    from array import array
    npz_task.write_npz(seed, [("0.npy", "<f4", (3,), array("f", [0, 0, 0]))])
    r = rondo_run(rondo, "seed", seed, *op)
    check(r.returncode == 0, "rondo seed over %s exits 0 (%s)"
          % ("plaintext" if plaintext else "TLS", r.stderr.strip()))

    rounds = 4
    follow = subprocess.Popen(
        [rondo, "session", "start", "--session-id", "s1", "--rounds",
         str(rounds), "--clients-required", "2", "--round-timeout", "60",
         "--validate", "false", "--follow"] + op,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    # Strangers while the session runs: once its first round is under way.
    deadline = time.monotonic() + 60
    while not all(os.path.exists(os.path.join(marks, "c%d.0" % i))
                  for i in (0, 1)):
        if time.monotonic() > deadline:
            raise AssertionError("round 1 did not start within 60 s")
        time.sleep(0.05)
    rss0 = vm_rss_kib(ctrl.pid)
    silent = [socket.create_connection(("127.0.0.1", port), timeout=5)
              for _ in range(3)]
    print("ok: 3 silent connections held open", flush=True)
    for attempt in range(5):
        if not plaintext:
            res = tls_stranger(port, ca)
            check(res.startswith("refused"),
                  "TLS without a certificate: %s" % res)
            res = tls_stranger(port, ca, os.path.join(other, "mallory.crt"),
                               os.path.join(other, "mallory.key"))
            check(res.startswith("refused"),
                  "TLS with another CA's certificate: %s" % res)
        for header, what in ((ZERO_HEADER, "zero"),
                             (HUGE_HEADER, "0xFFFFFF00-length")):
            try:
                got = plaintext_junk(port, header)
            except ConnectionError as e:
                got = b"(%s)" % str(e).encode()
            print("ok: sent the %s BASP header as plaintext (%d bytes back)"
                  % (what, len(got)), flush=True)
            check(ctrl.poll() is None,
                  "the controller is alive after the %s header (#%d)%s"
                  % (what, attempt + 1,
                     "" if ctrl.poll() is None
                     else ": it exited with %s" % ctrl.returncode))
    rss1 = vm_rss_kib(ctrl.pid)
    check(rss1 - rss0 < 100 * 1024,
          "controller VmRSS %d -> %d KiB (< +100 MB)" % (rss0, rss1))
    text, _ = follow.communicate(timeout=300)
    check(follow.returncode == 0,
          "session s1 finished, every round successful:\n" + text)
    for s in silent:
        s.close()
    r = rondo_run(rondo, "session", "status", "s1", "--json", *op)
    report = json.loads(r.stdout)
    statuses = [x["status"] for x in report["rounds"]]
    check(report["status"] == "finished"
          and statuses == ["success"] * rounds,
          "status: session finished, rounds %s" % statuses)
    check(ctrl.poll() is None and vm_rss_kib(ctrl.pid) - rss0 < 100 * 1024,
          "the controller is still alive, RSS within +100 MB")
    # The strangers' failed connections (and the operator commands' closes)
    # must not take the combiner's healthy connection down with them.
    log = procs.log("controller")
    check(log.count("combiner A joined") == 1 and "combiner A lost" not in log,
          "combiner A stayed joined throughout (joined once, never lost)")
    check(procs.stop("controller") == 0, "the controller exits 0 on SIGTERM")


def case_wrong_ca(rondo, work, procs):
    d = os.path.join(work, "certs")
    other = os.path.join(work, "other")
    make_certs(rondo, d, "ctrl", "good")
    make_certs(rondo, other, "bad", "ctrl-x")
    port = start_controller(procs, work, tls_flags(d, "ctrl"))

    # A combiner of another cluster: its CA does not know the controller.
    t0 = time.monotonic()
    start_combiner(procs, work, "bad", port, tls_flags(other, "bad"))
    code = procs.procs["bad"].wait(timeout=30)
    took = time.monotonic() - t0
    log = procs.log("bad")
    check(code == 2 and "does not verify against --ca" in log,
          "a combiner with another CA exits 2 in %.1f s: %s"
          % (took, log.strip().splitlines()[-1]))
    check(took < 15, "it failed at once (%.1f s), without retrying" % took)
    # Our certificate, their CA: refused locally before any connection.
    r = rondo_run(rondo, "combiner", "--port", "0", "--db",
                  os.path.join(work, "mixed-db"), "--controller",
                  "127.0.0.1:%d" % port,
                  "--cert", os.path.join(other, "bad.crt"),
                  "--key", os.path.join(other, "bad.key"),
                  "--ca", os.path.join(d, "ca.crt"), timeout=30)
    check(r.returncode == 2 and "does not verify against --ca" in r.stderr,
          "a combiner whose certificate is not signed by --ca exits 2: "
          + r.stderr.strip())
    # No certificates at all against the TLS controller.
    r = rondo_run(rondo, "combiner", "--port", "0", "--db",
                  os.path.join(work, "none-db"), "--controller",
                  "127.0.0.1:%d" % port, timeout=30)
    check(r.returncode == 2 and "give --cert, --key and --ca" in r.stderr,
          "a combiner without certificates exits 2: " + r.stderr.strip())
    check(procs.procs["controller"].poll() is None
          and "joined" not in procs.log("controller"),
          "the controller is alive and saw no combiner join")

    # The right CA: it joins.
    start_combiner(procs, work, "good", port, tls_flags(d, "good"))
    procs.wait_log("controller", "combiner good joined")
    procs.wait_log("good", "joined the controller")
    print("ok: combiner 'good' joined the TLS controller", flush=True)

    # The controller comes back with a certificate of another CA (its --ca
    # still trusts ours, so only the combiner's side can refuse): CAF's
    # client-side verification must keep the link from rejoining.
    check(procs.stop("controller") == 0, "controller stopped")
    bundle = os.path.join(work, "both-cas.crt")
    with open(bundle, "w") as f:
        f.write(open(os.path.join(d, "ca.crt")).read())
        f.write(open(os.path.join(other, "ca.crt")).read())
    procs.wait_log("good", "lost the controller")
    mark = len(procs.log("good"))
    ctrl_log = len(procs.log("controller"))
    # (the controller removes its port file when it stops)
    start_controller(procs, work,
                     ["--cert", os.path.join(other, "ctrl-x.crt"),
                      "--key", os.path.join(other, "ctrl-x.key"),
                      "--ca", bundle], port=port)
    procs.wait_log("good", "the TLS handshake failed", timeout=60,
                   start=mark)
    line = [x for x in procs.log("good")[mark:].splitlines()
            if "TLS handshake failed" in x][0]
    print("ok: the link refused the impostor: " + line, flush=True)
    check("joined" not in procs.log("controller")[ctrl_log:],
          "the impostor controller saw no combiner join")
    check(procs.stop("controller") == 0, "impostor stopped")

    # The real controller again: the link's bounded back-off rejoins it.
    ctrl_log = len(procs.log("controller"))
    # (the controller removes its port file when it stops)
    t0 = time.monotonic()
    start_controller(procs, work, tls_flags(d, "ctrl"), port=port)
    procs.wait_log("controller", "combiner good joined", timeout=30,
                   start=ctrl_log)
    check(True, "combiner 'good' rejoined the real controller in %.1f s"
          % (time.monotonic() - t0))


def case_refuses_open_host(rondo, work, procs):
    db = os.path.join(work, "db")
    r = rondo_run(rondo, "controller", "--host", "0.0.0.0", "--port", "0",
                  "--db", db)
    check(r.returncode == 2
          and "--cert, --key, --ca, --auth-secret-file" in r.stderr
          and "0.0.0.0" in r.stderr,
          "--host 0.0.0.0 without certificates exits 2: " + r.stderr.strip())
    check(not os.path.exists(db), "and creates no database")
    d = os.path.join(work, "certs")
    make_certs(rondo, d, "ctrl", "comb")
    r = rondo_run(rondo, "controller", "--host", "0.0.0.0", "--port", "0",
                  "--db", db, "--cert", os.path.join(d, "ctrl.crt"))
    check(r.returncode == 2 and "missing: --key, --ca" in r.stderr,
          "--cert alone exits 2: " + r.stderr.strip())
    procs.spawn("insecure", ["controller", "--host", "0.0.0.0", "--port", "0",
                             "--port-file",
                             os.path.join(work, "insecure.port"),
                             "--http-port", "0", "--db", db, "--insecure"])
    procs.wait_port("insecure")
    log = procs.log("insecure")
    check("--insecure" in log and "0.0.0.0" in log
          and "without authentication" in log,
          "with --insecure it starts and warns: "
          + [x for x in log.splitlines() if "insecure" in x][0])
    check(procs.stop("insecure") == 0, "and stops with exit 0")
    # The HTTP API on 0.0.0.0 needs HTTPS and tokens as well.
    secret = os.path.join(work, "token-secret")
    with open(os.open(secret, os.O_WRONLY | os.O_CREAT, 0o600), "w") as f:
        f.write("s3cret-for-the-open-host-case-0123456789abcdef\n")
    r = rondo_run(rondo, "controller", "--host", "0.0.0.0", "--port", "0",
                  "--http-port", "0", "--db", db, *tls_flags(d, "ctrl"))
    check(r.returncode == 2 and "--auth-secret-file" in r.stderr,
          "mutual TLS without --auth-secret-file exits 2 (the API): "
          + r.stderr.strip())
    procs.spawn("tls", ["controller", "--host", "0.0.0.0", "--port", "0",
                        "--port-file", os.path.join(work, "tls.port"),
                        "--http-port", "0", "--http-port-file",
                        os.path.join(work, "tls-api.port"),
                        "--auth-secret-file", secret,
                        "--db", db] + tls_flags(d, "ctrl"))
    port = procs.wait_port("tls")
    api_port = procs.wait_port("tls-api", proc="tls")
    log = procs.log("tls")
    check("mutual TLS" in log and "insecure" not in log,
          "with --cert/--key/--ca and --auth-secret-file it starts on "
          "0.0.0.0 without a warning")
    token = rondo_run(rondo, "token", "create", "--secret-file", secret,
                      "--role", "admin", "--ttl", "1h").stdout.strip()
    op = ["--controller", "127.0.0.1:%d" % api_port, "--ca",
          os.path.join(d, "ca.crt")]
    r = rondo_run(rondo, "session", "list", *op)
    check(r.returncode == 1 and "refused the token" in r.stderr,
          "an operator without a token is refused: " + r.stderr.strip())
    # CAF loads the files again per connection and aborts when it cannot:
    # the controller must not depend on them staying in place.
    os.rename(os.path.join(d, "ctrl.key"), os.path.join(d, "moved.key"))
    r = rondo_run(rondo, "session", "list", *op, "--token", token)
    check(r.returncode == 0 and procs.procs["tls"].poll() is None,
          "with its key file moved away, the controller still serves an "
          "operator over HTTPS (%s)" % r.stderr.strip())
    start_combiner(procs, work, "comb", port, tls_flags(d, "comb"))
    procs.wait_log("comb", "joined the controller")
    check(procs.procs["tls"].poll() is None,
          "and a combiner joins its middleman port over mutual TLS")
    check(procs.stop("comb") == 0 and procs.stop("tls") == 0,
          "both stop with exit 0")


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rondo", default=os.environ.get("RONDO_BIN"))
    p.add_argument("--case", required=True,
                   choices=["certs", "stranger_cannot_reach_basp",
                            "wrong_ca_cannot_join", "refuses_open_host"])
    p.add_argument("--plaintext", action="store_true",
                   help="stranger case without TLS (expected to fail)")
    p.add_argument("--keep", action="store_true", help="keep the work folder")
    args = p.parse_args()
    rondo = os.path.abspath(args.rondo)
    work = tempfile.mkdtemp(prefix="rondo-tls-")
    procs = Procs(rondo, work)
    ok = False
    try:
        if args.case == "certs":
            case_certs(rondo, work, procs)
        elif args.case == "stranger_cannot_reach_basp":
            case_stranger(rondo, work, procs, args.plaintext)
        elif args.case == "wrong_ca_cannot_join":
            case_wrong_ca(rondo, work, procs)
        else:
            case_refuses_open_host(rondo, work, procs)
        ok = True
    except Exception as e:  # any failure: report it with the logs
        print("FAILED: %s: %s" % (type(e).__name__, e), flush=True)
    finally:
        procs.stop_all()
    if not ok:
        procs.tails()
    if ok and not args.keep:
        subprocess.run(["rm", "-rf", work])
    else:
        print("work folder:", work)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
