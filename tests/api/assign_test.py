#!/usr/bin/env python3
"""Client assignment and compute packages on the controller's HTTP API,
against real `rondo controller` and `rondo combiner` processes (standard
library plus Debian's python3-requests).

Cases (--case):
- balance: six clients join through POST /api/v1/clients/add one after
  another over two combiners -> three on each; GET /combiners/ shows both
  alive with three clients assigned; a preferred combiner is honoured and
  an unknown one is refused; after SIGKILL of combiner B (GET /combiners/
  shows it dead within the controller's --connection-timeout) every new
  client goes to A; GET /clients/, /clients/{id}, /clients/count.
- packages: a client asking for a remote package before one is uploaded
  gets FEDn's 203 "retry"; uploads with a '../' entry, an absolute path, a
  symlink out of the folder and no fedn.yaml are each refused (400 naming
  the entry); a good one is accepted and active; checksum and download
  match it (FEDn's answer shape and Content-Disposition).
- auth: with --auth-secret-file: clients/add and package download refuse
  no token (401); package upload refuses a client token (403); a token
  naming client c1 cannot add c2 (403) but adds c1.
- direct: two clients that connect to combiner A directly (`rondo client
  --host --port`, no --api-url, so no assignment) are listed by GET
  /api/v1/clients/ with combiner A and status online, once each, next to
  an assigned client, and GET /api/v1/combiners/A counts them online.
- api_client_trains: `rondo client --api-url` without --package downloads
  the uploaded package, verifies its checksum, joins the combiner the
  controller assigned and trains in a session.
- api_client_tls: the same with every node on TLS (HTTPS API, TLS edge and
  middleman; the client has only --ca): the answer's "tls" makes the
  client dial the combiner over TLS.
- drain: with combiners A and B and a FEDn-protocol client streaming at A
  directly: POST /api/v1/combiners/A/drain answers A draining; the
  client's TaskStream ends UNAVAILABLE "combiner A is draining: ..."; the
  listings and `rondo combiners list` show A draining; clients/add never
  returns A (also when A is preferred); a new TaskStream to A is refused
  the same way; an unknown id is 404 (and `rondo combiners drain` fails
  naming it); `rondo combiners undrain A` -> clients/add returns A again
  and A keeps a new TaskStream open.

Usage: assign_test.py --rondo PATH --case NAME. Exit 0 on success, 1 on a
failed check (with the logs' tails), 77 when python3-requests is missing.
Every wait is bounded.
"""

import argparse
import email.utils
import hashlib
import io
import json
import os
import signal
import subprocess
import sys
import tarfile
import tempfile
import time

try:
    import requests
except ImportError:
    print("skipped: python3-requests is not installed")
    sys.exit(77)

HERE = os.path.dirname(os.path.abspath(__file__))
CLUSTER_PACKAGE = os.path.join(HERE, "..", "cluster", "package")
sys.path.insert(0, os.path.join(HERE, "..", "cluster"))
import cluster_test  # noqa: E402  (its process handling: spawn, stop, tails)

GOOD_YAML = (b"entry_points:\n  train:\n    command: python3 npz_task.py train\n"
             b"  validate:\n    command: python3 npz_task.py validate\n")


check = cluster_test.check


class Cluster(cluster_test.Cluster):
    def __init__(self, rondo, work):
        super().__init__(rondo, work)
        self.secret = None
        # With TLS: the certificate folder; every node gets its own
        # certificate (SAN 127.0.0.1) from one CA.
        self.certs = None

    def make_certs(self, *nodes):
        self.certs = os.path.join(self.work, "certs")
        for args in [["init", self.certs, "--days", "30"]] + [
                ["issue", self.certs, n, "--host", "127.0.0.1", "--days",
                 "30"] for n in nodes]:
            r = subprocess.run([self.rondo, "certs"] + args,
                               capture_output=True, text=True, timeout=60)
            assert r.returncode == 0, r.stderr

    def tls_flags(self, name):
        """--cert/--key/--ca of node `name`; none without TLS."""
        if not self.certs:
            return []
        return ["--cert", os.path.join(self.certs, name + ".crt"),
                "--key", os.path.join(self.certs, name + ".key"),
                "--ca", os.path.join(self.certs, "ca.crt")]

    def operator(self, *args, timeout=60):
        """A `rondo` operator command against the controller's API (with
        the cluster CA when it serves HTTPS, and an admin token when it
        wants tokens)."""
        flags = ["--controller", self.url]
        if self.certs:
            flags += ["--ca", os.path.join(self.certs, "ca.crt")]
        if getattr(self, "secret", None):
            flags += ["--token", self.token("admin")]
        return subprocess.run([self.rondo] + list(args) + flags,
                              capture_output=True, text=True,
                              timeout=timeout)

    def start_controller(self, auth=False):
        args = ["controller", "--port", "0", "--port-file",
                os.path.join(self.work, "controller.port"), "--db",
                os.path.join(self.work, "ctrl-db"), "--http-port", "0",
                "--http-port-file", os.path.join(self.work, "http.port"),
                "--heartbeat-interval", "0.2", "--connection-timeout", "2",
                "--client-wait", "30"]
        if auth:
            self.secret = os.path.join(self.work, "secret")
            with open(self.secret, "w") as f:
                f.write("s" * 40)
            args += ["--auth-secret-file", self.secret]
        self.spawn("controller", args + self.tls_flags("controller"))
        self.controller = "127.0.0.1:%d" % self.wait_port("controller")
        # wait_port(name) waits for <work>/<name>.port while procs[name]
        # lives.
        self.procs["http"] = self.procs["controller"]
        self.url = "%s://127.0.0.1:%d" % ("https" if self.certs else "http",
                                          self.wait_port("http"))
        del self.procs["http"]

    def start_combiner(self, name, extra=()):
        self.spawn(name, ["combiner", "--port", "0", "--port-file",
                          os.path.join(self.work, name + ".port"), "--db",
                          os.path.join(self.work, name + "-db"), "--name",
                          name, "--controller", self.controller,
                          "--heartbeat-interval", "0.2",
                          "--connection-timeout", "2"] + list(extra)
                   + self.tls_flags(name))
        return self.wait_port(name)

    def token(self, role, client=None):
        args = [self.rondo, "token", "create", "--secret-file", self.secret,
                "--role", role]
        if client:
            args += ["--client", client]
        r = subprocess.run(args, capture_output=True, text=True, timeout=30)
        assert r.returncode == 0, r.stderr
        return r.stdout.strip()

    def api(self, method, path, token=None, **kw):
        headers = kw.pop("headers", {})
        if token:
            headers["Authorization"] = "Bearer " + token
        if self.certs:
            kw["verify"] = os.path.join(self.certs, "ca.crt")
        return requests.request(method, self.url + path, headers=headers,
                                timeout=30, **kw)

    def wait_alive(self, names, timeout=30, token=None):
        """Until GET /combiners/ lists exactly `names` alive."""
        deadline = time.monotonic() + timeout
        while True:
            r = self.api("GET", "/api/v1/combiners/", token=token)
            alive = sorted(c["name"] for c in r.json()["result"]
                           if c["alive"])
            if alive == sorted(names):
                return r.json()
            if time.monotonic() > deadline:
                raise AssertionError("combiners alive %s, wanted %s"
                                     % (alive, names))
            time.sleep(0.1)


def tgz(entries):
    """A .tgz of (name, bytes | ('symlink', target) | None for a folder)."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for name, data in entries:
            info = tarfile.TarInfo(name)
            if data is None:
                info.type = tarfile.DIRTYPE
                info.mode = 0o755
                tar.addfile(info)
            elif isinstance(data, tuple):
                info.type = tarfile.SYMTYPE
                info.linkname = data[1]
                tar.addfile(info)
            else:
                info.size = len(data)
                info.mode = 0o644
                tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def cluster_package():
    """tests/cluster/package as FEDn packs one: a top folder with
    fedn.yaml."""
    entries = [("package", None)]
    for f in sorted(os.listdir(CLUSTER_PACKAGE)):
        path = os.path.join(CLUSTER_PACKAGE, f)
        if os.path.isfile(path):
            entries.append(("package/" + f, open(path, "rb").read()))
    return tgz(entries)


def upload(c, data, token=None, name="package.tgz", helper="numpyhelper"):
    return c.api("POST", "/api/v1/packages/", token=token,
                 files={"file": (name, data)},
                 data={"name": "test", "helper": helper,
                       "description": "test package"})


def add(c, client_id, token=None, **extra):
    body = {"client_id": client_id, "name": client_id, "package": "local"}
    body.update(extra)
    return c.api("POST", "/api/v1/clients/add", token=token, json=body)


def case_balance(c):
    c.start_controller()
    ports = {"A": c.start_combiner("A"),
             "B": c.start_combiner("B", ["--advertise-host", "localhost"])}
    c.wait_alive(["A", "B"])
    by_port = {p: n for n, p in ports.items()}
    got = []
    for i in range(6):
        r = add(c, "c%d" % i)
        check(r.status_code == 200 and r.json()["status"] == "assigned",
              "c%d assigned: %s" % (i, r.text))
        a = r.json()
        host = "localhost" if a["port"] == ports["B"] else "127.0.0.1"
        check(a["client_id"] == "c%d" % i and a["host"] == host
              and a["helper_type"] == "numpyhelper"
              and a["package"] == "local",
              "FEDn's answer fields for c%d: %s" % (i, a))
        got.append(by_port[a["port"]])
    check(sorted(got) == ["A"] * 3 + ["B"] * 3,
          "six clients joined one after another: three on each (%s)" % got)
    combiners = {x["name"]: x for x in c.wait_alive(["A", "B"])["result"]}
    check(combiners["A"]["clients_assigned"] == 3
          and combiners["B"]["clients_assigned"] == 3
          and combiners["A"]["port"] == ports["A"]
          and combiners["A"]["address"] == "127.0.0.1",
          "GET /combiners/ shows 3 clients assigned on each")
    r = add(c, "pref", combiner_preferred="B")
    check(r.status_code == 200 and r.json()["port"] == ports["B"],
          "combiner_preferred B is honoured")
    r = add(c, "pref2", preferred_combiner="A")
    check(r.status_code == 200 and r.json()["port"] == ports["A"],
          "FEDn's client's preferred_combiner A is honoured")
    r = add(c, "nowhere", combiner_preferred="Z")
    check(r.status_code == 400 and "Z" in r.json()["message"],
          "an unknown preferred combiner is refused: %s" % r.text)
    r = c.api("GET", "/api/v1/clients/count")
    check(r.status_code == 200 and r.json() == 8, "clients/count is 8")
    r = c.api("GET", "/api/v1/clients/", headers={"X-Limit": "3"})
    check(r.json()["count"] == 8 and len(r.json()["result"]) == 3,
          "clients/ pages with X-Limit (count 8, 3 shown)")
    r = c.api("GET", "/api/v1/clients/c0")
    check(r.status_code == 200 and r.json()["combiner"] in ("A", "B")
          and r.json()["status"] == "offline"
          and r.json()["package"] == "local",
          "clients/c0: its combiner, offline (never connected)")
    r = c.api("GET", "/api/v1/clients/nobody")
    check(r.status_code == 404 and "nobody" in r.json()["message"],
          "clients/nobody is 404 naming it: %s" % r.text)
    r = c.api("GET", "/api/v1/clients/", params={"combiner": "A"},
              headers={"X-Sort-Key": "client_id", "X-Sort-Order": "asc"})
    ids = [x["client_id"] for x in r.json()["result"]]
    check(r.json()["count"] == 4 and ids == sorted(ids)
          and "pref2" in ids and "pref" not in ids,
          "clients/?combiner=A: A's four, sorted by client_id: %s" % ids)
    r = c.api("GET", "/api/v1/clients/", headers={"X-Limit": "many"})
    check(r.status_code == 400 and "X-Limit" in r.json()["message"],
          "a bad X-Limit is 400 naming it: %s" % r.text)
    r = c.api("GET", "/api/v1/combiners/", params={"colour": "red"})
    check(r.status_code == 400 and "colour" in r.json()["message"],
          "an unknown filter is 400 naming it: %s" % r.text)
    r = c.api("GET", "/api/v1/combiners/count")
    check(r.json() == 2, "combiners/count is 2")

    c.procs["B"].send_signal(signal.SIGKILL)
    c.procs["B"].wait(timeout=10)
    t0 = time.monotonic()
    c.wait_alive(["A"], timeout=20)
    print("ok: B shown dead after %.1f s" % (time.monotonic() - t0))
    r = c.api("GET", "/api/v1/combiners/B")
    check(r.status_code == 200 and r.json()["alive"] is False
          and r.json()["status"] == "offline", "combiners/B: not alive")
    after = [by_port[add(c, "late%d" % i).json()["port"]] for i in range(4)]
    check(after == ["A"] * 4, "after B died, new clients all go to A (%s)"
          % after)
    r = add(c, "prefdead", combiner_preferred="B")
    check(r.status_code == 400, "a dead preferred combiner is refused")


def case_packages(c):
    c.start_controller()
    c.start_combiner("A")
    c.wait_alive(["A"])
    r = add(c, "early", package="remote")
    check(r.status_code == 203 and r.json()["status"] == "retry",
          "remote package before upload: 203 retry (%s)" % r.text)
    r = c.api("GET", "/api/v1/packages/checksum")
    check(r.status_code == 404 and r.json()["checksum"] is None,
          "no checksum before upload")
    r = c.api("PUT", "/api/v1/helpers/active", json={"helper": "numpyhelper"})
    check(r.status_code == 200, "PUT helpers/active: %s" % r.text)
    bad = {
        "dotdot": (tgz([("fedn.yaml", GOOD_YAML), ("../evil", b"x")]),
                   "'../evil' has a '..' component"),
        "absolute": (tgz([("fedn.yaml", GOOD_YAML), ("/tmp/evil", b"x")]),
                     "'/tmp/evil' is an absolute path"),
        "symlink": (tgz([("fedn.yaml", GOOD_YAML),
                         ("etc", ("symlink", "../../etc"))]),
                    "symbolic link 'etc' points to '../../etc', out of"),
        "no yaml": (tgz([("train.py", b"print(1)")]), "no fedn.yaml"),
        "not gzip": (b"plain text", "not a gzip-compressed tar archive"),
    }
    for what, (data, reason) in bad.items():
        r = upload(c, data)
        check(r.status_code == 400 and reason in r.json()["message"],
              "upload with %s refused: %s" % (what, r.text))
    r = upload(c, GOOD_YAML, name="fedn.yaml")
    check(r.status_code == 400 and "file" in r.json()["message"],
          "a file that is not .tgz is refused naming the field")
    r = upload(c, cluster_package(), helper="nohelper")
    check(r.status_code == 400 and "helper" in r.json()["message"],
          "an unknown helper is refused naming the field")
    check(c.api("GET", "/api/v1/packages/count").json() == 0,
          "nothing refused was stored")
    data = cluster_package()
    r = upload(c, data)
    check(r.status_code == 200 and r.json()["message"] == "Package uploaded",
          "a good package is accepted: %s" % r.text)
    sha = hashlib.sha256(data).hexdigest()
    r = c.api("GET", "/api/v1/packages/active")
    check(r.status_code == 200 and r.json()["checksum"] == sha
          and r.json()["helper"] == "numpyhelper" and r.json()["active"],
          "packages/active is it")
    r = c.api("GET", "/api/v1/packages/checksum")
    check(r.status_code == 200 and r.json()["checksum"] == sha,
          "packages/checksum is its sha256")
    # FEDn's client asks for "<url>/" + "/api/v1/..." (package_runtime.py).
    r = requests.get(c.url + "//api/v1/packages/checksum?x=1", timeout=30)
    check(r.status_code == 200 and r.json()["checksum"] == sha
          and r.history and r.history[0].status_code == 308,
          "a doubled slash is redirected (308), as FEDn's server does")
    r = c.api("GET", "/api/v1/packages/download")
    check(r.status_code == 200 and r.content == data
          and "attachment; filename=" in r.headers["Content-Disposition"],
          "packages/download gives its bytes with Content-Disposition")
    pid = c.api("GET", "/api/v1/packages/").json()["result"][0]["package_id"]
    check(c.api("GET", "/api/v1/packages/" + pid).json()["checksum"] == sha,
          "packages/{id}")
    r = add(c, "late", package="remote")
    check(r.status_code == 200 and r.json()["package"] == "remote"
          and r.json()["helper_type"] == "numpyhelper",
          "remote package after upload: assigned")
    # A newer package is active: its helper wins over the one PUT set.
    r = upload(c, cluster_package(), helper="binaryhelper")
    check(r.status_code == 200, "a binaryhelper package: %s" % r.text)
    r = add(c, "late2", package="remote")
    check(r.status_code == 200 and r.json()["helper_type"] == "binaryhelper",
          "clients/add answers the active package's helper: %s" % r.text)
    r = c.api("GET", "/api/v1/helpers/active")
    check(r.status_code == 200 and r.json() == "binaryhelper",
          "helpers/active is the active package's helper: %s" % r.text)


def case_auth(c):
    c.start_controller(auth=True)
    c.start_combiner("A")
    admin = c.token("admin")
    c.wait_alive(["A"], token=admin)
    r = add(c, "c1")
    check(r.status_code == 401, "clients/add without a token: 401")
    r = c.api("GET", "/api/v1/packages/download")
    check(r.status_code == 401, "package download without a token: 401")
    client = c.token("client", "c1")
    r = upload(c, cluster_package(), token=client)
    check(r.status_code == 403, "package upload with a client token: 403")
    r = upload(c, cluster_package(), token=admin)
    check(r.status_code == 200, "package upload with an admin token")
    r = add(c, "c2", token=client)
    check(r.status_code == 403 and "c1" in r.json()["message"],
          "a token for c1 cannot add c2: %s" % r.text)
    r = add(c, "c1", token=client)
    check(r.status_code == 200, "a token for c1 adds c1")
    r = c.api("GET", "/api/v1/packages/download", token=client)
    check(r.status_code == 200, "a client token downloads the package")
    r = c.api("POST", "/api/v1/combiners/A/drain")
    check(r.status_code == 401, "drain without a token: 401")
    r = c.api("POST", "/api/v1/combiners/A/drain", token=client)
    check(r.status_code == 403, "drain with a client token: 403")
    r = c.api("POST", "/api/v1/combiners/A/undrain", token=admin)
    check(r.status_code == 200 and r.json()["draining"] is False,
          "undrain with an admin token: %s" % r.text)


def case_direct(c):
    c.start_controller()
    port = c.start_combiner("A")
    c.wait_alive(["A"])
    check(add(c, "assigned1").status_code == 200, "assigned1 assigned")
    for name in ("d1", "d2"):
        env = dict(os.environ, RONDO_TEST_NAME=name, RONDO_TEST_DELTA="1",
                   RONDO_TEST_EXAMPLES="10", RONDO_TEST_MARKS=c.marks)
        c.spawn(name, ["client", "--host", "127.0.0.1", "--port", str(port),
                       "--name", name, "--package", CLUSTER_PACKAGE],
                env=env)
    deadline = time.monotonic() + 30
    while True:
        r = c.api("GET", "/api/v1/clients/", params={"status": "online"})
        found = r.json()["result"] if r.status_code == 200 else []
        if len(found) >= 2:
            break
        if (time.monotonic() > deadline or c.procs["d1"].poll() is not None
                or c.procs["d2"].poll() is not None):
            raise AssertionError("d1 and d2 not listed online within 30 s: "
                                 "%s" % r.text)
        time.sleep(0.1)
    check(sorted(x["name"] for x in found) == ["d1", "d2"]
          and all(x["combiner"] == "A" and x["client_id"]
                  and x["last_seen"] is not None for x in found),
          "clients/?status=online: d1 and d2 on combiner A (%s)" % found)
    r = c.api("GET", "/api/v1/clients/")
    names = sorted(x["name"] for x in r.json()["result"])
    check(r.json()["count"] == 3 and names == ["assigned1", "d1", "d2"],
          "clients/ lists the assigned client and the direct ones once "
          "each: %s" % names)
    d1 = [x for x in found if x["name"] == "d1"][0]
    r = c.api("GET", "/api/v1/clients/" + d1["client_id"])
    check(r.status_code == 200 and r.json()["combiner"] == "A"
          and r.json()["status"] == "online",
          "clients/{id} of d1: %s" % r.text)
    # An online client's last_seen is current, not the time it connected.
    time.sleep(2.5)
    r = c.api("GET", "/api/v1/clients/" + d1["client_id"])
    seen = email.utils.parsedate_to_datetime(r.json()["last_seen"])
    age = time.time() - seen.timestamp()
    check(age < 2.0, "d1's last_seen is current (%.1f s old): %s"
          % (age, r.text))
    r = c.api("GET", "/api/v1/clients/", params={"name": "assigned1"})
    check(r.json()["count"] == 1
          and r.json()["result"][0]["status"] == "offline",
          "assigned1 (never connected) stays offline: %s" % r.text)
    r = c.api("GET", "/api/v1/combiners/A")
    check(r.status_code == 200 and r.json()["clients_online"] == 2,
          "combiners/A counts d1 and d2 online: %s" % r.text)


def fedn_client(port, name):
    """A FEDn-protocol test client (tests/conformance/fedn_client.py) of
    combiner 127.0.0.1:port; skips (77) without Python gRPC stubs."""
    sys.path.insert(0, os.path.join(HERE, "..", "conformance"))
    import harness
    harness.load_stubs()
    import fedn_client as fc
    return fc.FednClient("127.0.0.1:%d" % port, name)


def stream_end(client, timeout, what):
    """How `client`'s TaskStream ended (code, details), within `timeout`
    seconds."""
    check(client.stream_ended.wait(timeout),
          "%s within %d s" % (what, timeout))
    e = client.stream_error
    check(e is not None, "%s with an error status" % what)
    return e.code().name, e.details()


def case_drain(c):
    c.start_controller()
    ports = {"A": c.start_combiner("A"), "B": c.start_combiner("B")}
    c.wait_alive(["A", "B"])
    by_port = {p: n for n, p in ports.items()}
    direct = fedn_client(ports["A"], "direct1")
    streams = [direct]
    try:
        direct.start()
        deadline = time.monotonic() + 30
        while c.api("GET", "/api/v1/combiners/A").json()[
                "clients_online"] != 1:
            check(time.monotonic() < deadline,
                  "direct1 online at A within 30 s")
            time.sleep(0.1)
        r = c.api("POST", "/api/v1/combiners/A/drain")
        check(r.status_code == 200 and r.json()["combiner_id"] == "A"
              and r.json()["draining"] is True and r.json()["alive"] is True,
              "POST combiners/A/drain: A draining: %s" % r.text)
        code, details = stream_end(direct, 15,
                                   "direct1's TaskStream at idle A ends")
        check(code == "UNAVAILABLE"
              and details == "combiner A is draining: ask the controller "
                             "for another combiner (clients/add)",
              "... with UNAVAILABLE 'combiner A is draining': %s %s"
              % (code, details))
        listed = {x["name"]: x for x in
                  c.api("GET", "/api/v1/combiners/").json()["result"]}
        check(listed["A"]["draining"] is True
              and listed["B"]["draining"] is False,
              "combiners/ shows A draining, B not")
        check(c.api("GET", "/api/v1/combiners/A").json()["draining"] is True,
              "combiners/A shows it draining")
        got = [by_port[add(c, "c%d" % i).json()["port"]] for i in range(4)]
        r = add(c, "prefers_a", combiner_preferred="A")
        check(r.status_code == 200, "a client preferring A is assigned")
        got.append(by_port[r.json()["port"]])
        check(got == ["B"] * 5, "while A drains clients/add gives B only, "
              "also to a client preferring A: %s" % got)
        late = fedn_client(ports["A"], "late1")
        streams.append(late)
        late.start()
        code, details = stream_end(late, 15, "a new TaskStream to A ends")
        check(code == "UNAVAILABLE" and "is draining" in details,
              "... refused with UNAVAILABLE 'is draining': %s %s"
              % (code, details))
        log = open(os.path.join(c.work, "A.log")).read()
        check("combiner A is draining" in log,
              "A's log tells why it ended the streams")
        r = c.api("POST", "/api/v1/combiners/Z/drain")
        check(r.status_code == 404 and "Z" in r.json()["message"],
              "draining an unknown combiner is 404 naming it: %s" % r.text)
        r = c.operator("combiners", "list")
        rows = {x.split()[0]: x.split() for x in r.stdout.splitlines()[1:]}
        check(r.returncode == 0
              and rows["A"] == ["A", "127.0.0.1:%d" % ports["A"], "yes",
                                "yes", "0"]
              and rows["B"] == ["B", "127.0.0.1:%d" % ports["B"], "yes",
                                "no", "5"],
              "`rondo combiners list`: A draining, B with 5 clients:\n"
              + r.stdout + r.stderr)
        r = c.operator("combiners", "drain", "Z")
        check(r.returncode == 1 and "Z" in r.stderr,
              "`rondo combiners drain Z` fails naming Z: " + r.stderr)
        r = c.operator("combiners", "undrain", "A")
        check(r.returncode == 0 and "A is not draining" in r.stdout,
              "`rondo combiners undrain A`: " + r.stdout + r.stderr)
        r = add(c, "after")
        check(r.status_code == 200 and r.json()["port"] == ports["A"],
              "undrained, A is the least loaded and assigned again")
        back = fedn_client(ports["A"], "back1")
        streams.append(back)
        back.start()
        check(not back.stream_ended.wait(2.0),
              "undrained, A keeps a new TaskStream open")
        r = c.operator("combiners", "drain", "A")
        check(r.returncode == 0 and "A is draining" in r.stdout,
              "`rondo combiners drain A`: " + r.stdout + r.stderr)
        code, details = stream_end(back, 15, "back1's TaskStream ends")
        check(code == "UNAVAILABLE" and "is draining" in details,
              "drained by the command: %s %s" % (code, details))
    finally:
        for x in streams:
            x.close()


def train_through_api(c):
    """`rondo client --api-url` (with --ca under TLS) downloads the package,
    verifies it, joins the assigned combiner and trains in a session."""
    c.start_controller()
    c.start_combiner("A")
    c.wait_alive(["A"])
    env = dict(os.environ, RONDO_TEST_NAME="api1", RONDO_TEST_DELTA="2",
               RONDO_TEST_EXAMPLES="10", RONDO_TEST_MARKS=c.marks)
    work = os.path.join(c.work, "client-work")
    os.makedirs(work)
    ca = ["--ca", os.path.join(c.certs, "ca.crt")] if c.certs else []
    # Started before any package is uploaded: it is told to retry (203).
    c.spawn("client", ["client", "--api-url", c.url, "--name", "api1",
                       "--work-dir", work] + ca, env=env)
    log_path = os.path.join(c.work, "client.log")
    deadline = time.monotonic() + 30
    while "asking again" not in open(log_path).read():
        if time.monotonic() > deadline or c.procs["client"].poll() is not None:
            raise AssertionError("the client did not retry within 30 s")
        time.sleep(0.05)
    check("No compute package found" in open(log_path).read(),
          "the client retries while the controller has no package")
    data = cluster_package()
    check(upload(c, data).status_code == 200, "package uploaded")
    npz_task = cluster_test.npz_task
    from array import array
    seed = os.path.join(c.work, "seed.npz")
    npz_task.write_npz(seed, [("0.npy", "<f4", (3,), array("f", [0, 0, 0]))])
    r = c.operator("seed", seed)
    check(r.returncode == 0, "seed model stored (%s)" % r.stderr.strip())
    r = c.operator("session", "start", "--session-id", "api", "--rounds",
                   "1", "--round-timeout", "60", "--validate", "false",
                   "--follow", timeout=240)
    check(r.returncode == 0, "session finished:\n" + r.stdout + r.stderr)
    r = c.api("GET", "/api/v1/clients/", params={"name": "api1"})
    found = r.json()["result"]
    check(r.status_code == 200 and len(found) == 1
          and found[0]["combiner"] == "A" and found[0]["status"] == "online"
          and found[0]["package"] == "remote",
          "clients/?name=api1: on A, online, remote package (%s)" % r.text)
    rnd = json.loads(c.operator("session", "status", "api", "--json")
                     .stdout)["rounds"][0]
    check(rnd["status"] == "success" and rnd["updates_accepted"] == 1,
          "the round succeeded with the API client's update")
    out = os.path.join(c.work, "out.npz")
    r = c.operator("models", "export", rnd["model_id"], out)
    check(r.returncode == 0, "model exported")
    vals = [v for _, _, _, vs in npz_task.read_npz(out) for v in vs]
    check(all(abs(v - 2.0) < 1e-6 for v in vals),
          "the new global model is the client's training result %s" % vals)
    log = open(os.path.join(c.work, "client.log")).read()
    sha = hashlib.sha256(data).hexdigest()
    check("sha256 " + sha in log, "the client verified the package checksum")
    return log


def case_api_client_trains(c):
    log = train_through_api(c)
    check("(plaintext)" in log, "plaintext, as the combiner serves")


def case_api_client_tls(c):
    c.make_certs("controller", "A", "operator")
    log = train_through_api(c)
    check("(TLS)" in log, "over TLS, as the controller's answer says: "
          + [x for x in log.splitlines() if "assigned combiner" in x][0])


CASES = {"balance": case_balance, "packages": case_packages,
         "auth": case_auth, "direct": case_direct, "api_client_trains": case_api_client_trains,
         "api_client_tls": case_api_client_tls, "drain": case_drain}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rondo", required=True)
    ap.add_argument("--case", required=True, choices=sorted(CASES))
    ap.add_argument("--keep", action="store_true")
    args = ap.parse_args()
    work = tempfile.mkdtemp(prefix="rondo-assign-")
    c = Cluster(args.rondo, work)
    code = 0
    try:
        CASES[args.case](c)
    except Exception as e:  # noqa: BLE001 - report any failure with logs
        print("FAILED:", e)
        code = 1
    finally:
        c.stop()
        if code:
            c.tails()
        if not args.keep:
            subprocess.run(["rm", "-rf", work], timeout=60)
    return code


if __name__ == "__main__":
    sys.exit(main())
