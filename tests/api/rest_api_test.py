#!/usr/bin/env python3
"""FEDn REST v1 routes of `rondo controller --http-port`: models (seeding
by upload, download, ancestors), helpers, sessions (create, start, end
failed without combiners), rounds, validations, statuses, predictions,
/health and /get_controller_status; paging headers; 404s and 400s that
name what is wrong; admin tokens on every write route.

Each case starts its own controller (middleman and HTTP on port 0) with a
fresh database. Standard library plus python3-requests.

Usage: rest_api_test.py --case NAME  (RONDO_BIN names the rondo binary)
"""

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "conformance"))

import npz_lite  # noqa: E402

try:
    import requests
except ImportError:
    print("python3-requests is missing: skipped")
    sys.exit(77)

RONDO = os.environ.get("RONDO_BIN", "rondo")
# Every wait of this test is bounded by this many seconds.
BOUND = 60


def check(cond, what):
    if not cond:
        raise AssertionError(what)


def wait_for_file(path, proc, bound=BOUND):
    end = time.time() + bound
    while time.time() < end:
        if os.path.exists(path) and open(path).read().strip():
            return open(path).read().strip()
        if proc.poll() is not None:
            raise AssertionError("rondo controller exited with %s: %s"
                                 % (proc.returncode, proc.stderr.read()))
        time.sleep(0.05)
    raise AssertionError("no %s within %d s" % (path, bound))


class Controller:
    """A `rondo controller` on port 0 with its HTTP API on port 0."""

    def __init__(self, extra=(), secret=False):
        self.dir = tempfile.mkdtemp(prefix="rondo-rest-")
        self.secret_file = None
        args = [RONDO, "controller", "--port", "0", "--http-port", "0",
                "--db", self.path("db"),
                "--port-file", self.path("port"),
                "--http-port-file", self.path("http-port")]
        if secret:
            self.secret_file = self.path("secret")
            with open(self.secret_file, "w") as f:
                f.write(os.urandom(32).hex())
            args += ["--auth-secret-file", self.secret_file]
        self.proc = subprocess.Popen(args + list(extra),
                                     stdout=subprocess.DEVNULL,
                                     stderr=subprocess.PIPE, text=True)
        port = wait_for_file(self.path("http-port"), self.proc)
        self.url = "http://127.0.0.1:%s" % port
        self.headers = {}

    def path(self, name):
        return os.path.join(self.dir, name)

    def token(self, role):
        out = subprocess.run([RONDO, "token", "create", "--secret-file",
                              self.secret_file, "--role", role,
                              "--ttl", "1h"],
                             capture_output=True, text=True, timeout=BOUND)
        check(out.returncode == 0, "rondo token create: " + out.stderr)
        return out.stdout.strip()

    def get(self, path, headers=None, **kw):
        h = dict(self.headers)
        h.update(headers or {})
        return requests.get(self.url + path, headers=h, timeout=BOUND, **kw)

    def post(self, path, headers=None, **kw):
        h = dict(self.headers)
        h.update(headers or {})
        return requests.post(self.url + path, headers=h, timeout=BOUND, **kw)

    def put(self, path, headers=None, **kw):
        h = dict(self.headers)
        h.update(headers or {})
        return requests.put(self.url + path, headers=h, timeout=BOUND, **kw)

    def close(self):
        self.proc.terminate()
        try:
            self.proc.wait(timeout=BOUND)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=BOUND)
        shutil.rmtree(self.dir, ignore_errors=True)


def seed_bytes(scale=1.0):
    return npz_lite.npz_bytes({"0": [scale * x for x in (1, 2, 3, 4)],
                               "1": [scale * 0.5, -scale]})


def upload(c, data, name="seed.npz"):
    return c.post("/api/v1/models/", files={"file": (name, data)},
                  data={"helper": "numpyhelper"})


def expect_error(r, status, *words):
    check(r.status_code == status,
          "expected %d, got %d: %s" % (status, r.status_code, r.text))
    message = r.json().get("message", "")
    for w in words:
        check(w in message, "%r not in %r" % (w, message))


# -- cases --------------------------------------------------------------------


def case_seed_and_download(c):
    data = seed_bytes()
    r = upload(c, data)
    check(r.status_code == 200, "upload: %d %s" % (r.status_code, r.text))
    model_id = r.json()["model_id"]
    r = c.get("/api/v1/models/")
    check(r.status_code == 200, r.text)
    body = r.json()
    check(body["count"] == 1, body)
    m = body["result"][0]
    check(m["model_id"] == model_id and m["model"] == model_id, m)
    check(m["parent_model"] is None, m)
    check(c.get("/api/v1/models/count").json() == 1, "count")
    got = c.get("/api/v1/models/%s/download" % model_id)
    check(got.status_code == 200 and got.content == data,
          "download differs from the upload")
    check(npz_lite.read_npz(got.content)["1"] == [0.5, -1.0], "values")
    one = c.get("/api/v1/models/" + model_id).json()
    check(one["model_id"] == model_id, one)
    anc = c.get("/api/v1/models/%s/ancestors?include_self=true" % model_id)
    check(anc.status_code == 200 and [x["model_id"] for x in anc.json()]
          == [model_id], anc.text)
    # A seed stored under the id the operator names (rondo seed --model-id).
    r = c.post("/api/v1/models/", files={"file": ("m.npz", seed_bytes(3.0))},
               data={"helper": "numpyhelper", "model_id": "my-seed"})
    check(r.status_code == 200 and r.json()["model_id"] == "my-seed", r.text)
    check(c.get("/api/v1/models/my-seed/download").content
          == seed_bytes(3.0), "stored under model_id my-seed")
    r = c.post("/api/v1/models/", files={"file": ("m.npz", seed_bytes(4.0))},
               data={"helper": "numpyhelper", "model_id": "my-seed"})
    expect_error(r, 409, "my-seed", "already exists")
    check(c.get("/api/v1/models/my-seed/download").content
          == seed_bytes(3.0), "my-seed untouched by the refused upload")
    for bad in ("a/b", "bell\x07", ""):
        r = c.post("/api/v1/models/",
                   files={"file": ("m.npz", seed_bytes(5.0))},
                   data={"helper": "numpyhelper", "model_id": bad})
        expect_error(r, 400, "model_id")
    check(c.get("/api/v1/models/count").json() == 2,
          "refused model ids stored nothing")
    # APIClient.get_active_model: the newest model.
    second = upload(c, seed_bytes(2.0)).json()["model_id"]
    newest = c.get("/api/v1/models/", headers={
        "X-Limit": "1", "X-Sort-Key": "committed_at",
        "X-Sort-Order": "desc"}).json()
    check(newest["count"] == 3 and newest["result"][0]["model_id"] == second,
          newest)


def case_corrupt_upload(c):
    good = upload(c, seed_bytes()).json()["model_id"]
    before = c.get("/api/v1/models/").json()
    for bad, says in ((b"not a zip at all", "not a valid npz model"),
                      (npz_lite.npz_bytes({"0": [1.0, float("nan")]}),
                       "NaN")):
        r = upload(c, bad)
        expect_error(r, 400, says)
    r = c.post("/api/v1/models/", data={"helper": "numpyhelper"})
    expect_error(r, 400, "'file'")
    r = c.post("/api/v1/models/", files={"file": ("m.npz", seed_bytes())},
               data={"helper": "kerashelper"})
    expect_error(r, 400, "numpyhelper", "kerashelper")
    after = c.get("/api/v1/models/").json()
    check(after == before and after["result"][0]["model_id"] == good,
          "the trail changed: %s" % after)


def case_paging(c):
    ids = [upload(c, seed_bytes(i + 1)).json()["model_id"] for i in range(4)]
    page = c.get("/api/v1/models/", headers={
        "X-Limit": "2", "X-Skip": "1", "X-Sort-Order": "asc"}).json()
    check(page["count"] == 4, page)
    check([m["model_id"] for m in page["result"]] == ids[1:3], page)
    desc = c.get("/api/v1/models/", headers={"X-Limit": "1"}).json()
    check(desc["result"][0]["model_id"] == ids[-1], desc)
    by_id = c.get("/api/v1/models/", headers={
        "X-Sort-Key": "model_id", "X-Sort-Order": "asc"}).json()
    check([m["model_id"] for m in by_id["result"]] == sorted(ids), by_id)
    filtered = c.get("/api/v1/models/", params={"model_id": ids[2]}).json()
    check(filtered["count"] == 1, filtered)
    for header, value in (("X-Limit", "many"), ("X-Skip", "-2"),
                          ("X-Sort-Order", "sideways"),
                          ("X-Sort-Key", "colour")):
        expect_error(c.get("/api/v1/models/", headers={header: value}), 400,
                     header)
    expect_error(c.get("/api/v1/models/", params={"colour": "red"}), 400,
                 "colour")


def post_session(c, model_id, **overrides):
    cfg = {"aggregator": "fedavg", "aggregator_kwargs": None,
           "round_timeout": 5, "buffer_size": -1, "model_id": model_id,
           "delete_models_storage": True, "clients_required": 1,
           "requested_clients": 8, "validate": True,
           "helper_type": "numpyhelper", "server_functions": None}
    cfg.update(overrides)
    return c.post("/api/v1/sessions/", json={
        "name": "test", "seed_model_id": model_id, "session_config": cfg})


def session_end(c, sid):
    """The session once it is neither Created nor Started (bounded)."""
    end = time.time() + BOUND
    while True:
        s = c.get("/api/v1/sessions/" + sid).json()
        if s["status"] not in ("Created", "Started") or time.time() > end:
            return s
        time.sleep(0.2)


def case_session_without_combiner(c):
    seed = upload(c, seed_bytes()).json()["model_id"]
    r = post_session(c, seed)
    check(r.status_code == 201, "%d %s" % (r.status_code, r.text))
    s = r.json()
    sid = s["session_id"]
    check(s["status"] == "Created" and s["name"] == "test", s)
    check(s["session_config"]["round_timeout"] == 5, s)
    check(c.get("/api/v1/sessions/count").json() == 1, "count")
    r = c.post("/api/v1/sessions/start",
               json={"session_id": sid, "rounds": 2, "round_timeout": 5})
    check(r.status_code == 200, "%d %s" % (r.status_code, r.text))
    s = session_end(c, sid)
    check(s["status"] == "Failed", "session did not end failed: %s" % s)
    check("no round succeeded" in s["reason"], s)
    rounds = c.get("/api/v1/rounds/", params={"session_id": sid}).json()
    check(rounds["count"] == 2, rounds)
    for rd in rounds["result"]:
        check(rd["status"] == "Failed", rd)
        check("no combiner connected" in rd["reason"], rd)
        check(rd["session_id"] == sid and rd["ended_at"] >= rd["started_at"],
              rd)
    one = rounds["result"][0]["round_id"]
    check(c.get("/api/v1/rounds/" + one).json()["round_id"] == one, "round")
    check(c.get("/get_controller_status").json() == {"state": "idle"},
          "controller not idle")
    # Starting it again continues it (FEDn's continue_session).
    r = c.post("/api/v1/sessions/start",
               json={"session_id": sid, "rounds": 1, "round_timeout": 5})
    check(r.status_code == 200, r.text)
    s = session_end(c, sid)
    check(s["status"] == "Failed" and len(s["round_ids"]) == 3, s)


def case_terminate(c):
    """A running session (waiting for a combiner) stops at once."""
    seed = upload(c, seed_bytes()).json()["model_id"]
    sid = post_session(c, seed).json()["session_id"]
    r = c.post("/api/v1/sessions/start", json={"session_id": sid})
    check(r.status_code == 200, r.text)
    check(c.get("/get_controller_status").json()["state"] == "instructing",
          "controller state while picking combiners")
    again = c.post("/api/v1/sessions/start", json={"session_id": sid})
    expect_error(again, 400, "already running")
    r = c.post("/api/v1/sessions/%s/terminate" % sid)
    check(r.status_code == 200 and r.json()["status"] == "Terminated",
          r.text)
    check(c.get("/api/v1/sessions/" + sid).json()["status"] == "Terminated",
          "stored status")
    rounds = c.get("/api/v1/rounds/").json()
    check(rounds["count"] == 1, rounds)
    check(rounds["result"][0]["status"] == "Terminated", rounds)
    check(c.get("/get_controller_status").json()["state"] == "idle",
          "controller state after")


def case_not_found(c):
    for path, ident in (("/api/v1/models/nope-1", "nope-1"),
                        ("/api/v1/models/nope-2/download", "nope-2"),
                        ("/api/v1/models/nope-3/ancestors", "nope-3"),
                        ("/api/v1/sessions/nope-4", "nope-4"),
                        ("/api/v1/rounds/nope-5", "nope-5"),
                        ("/api/v1/validations/nope-6", "nope-6"),
                        ("/api/v1/statuses/nope-7", "nope-7"),
                        ("/api/v1/predictions/nope-8", "nope-8")):
        expect_error(c.get(path), 404, ident)
    expect_error(c.post("/api/v1/sessions/nope-9/terminate"), 404, "nope-9")
    expect_error(c.post("/api/v1/sessions/start",
                        json={"session_id": "nope-10"}), 400, "nope-10")
    for kind in ("validations", "statuses", "predictions", "rounds",
                 "sessions"):
        r = c.get("/api/v1/%s/" % kind)
        check(r.status_code == 200 and r.json() == {"count": 0,
                                                    "result": []}, r.text)


def case_bad_input(c):
    seed = upload(c, seed_bytes()).json()["model_id"]
    r = c.post("/api/v1/sessions/", data="{not json",
               headers={"Content-Type": "application/json"})
    expect_error(r, 400, "JSON")
    expect_error(post_session(c, seed, round_timeout="soon"), 400,
                 "round_timeout")
    expect_error(post_session(c, seed, validate="perhaps"), 400, "validate")
    expect_error(post_session(c, seed, helper_type="kerashelper"), 400,
                 "helper_type")
    expect_error(post_session(c, seed, aggregator="median"), 400,
                 "median")
    expect_error(post_session(c, "missing-model"), 400, "missing-model")
    expect_error(post_session(c, seed, colour="red"), 400, "colour")
    r = c.post("/api/v1/sessions/", json={"session_config": {}, "x": 1})
    expect_error(r, 400, "'x'")
    check(c.get("/api/v1/sessions/count").json() == 0, "a session stored")
    sid = post_session(c, seed).json()["session_id"]
    expect_error(c.post("/api/v1/sessions/start", json={"rounds": 1}), 400,
                 "Session ID")
    expect_error(c.post("/api/v1/sessions/start",
                        json={"session_id": sid, "round_timeout": -1}), 400,
                 "round_timeout")
    expect_error(c.post("/api/v1/sessions/start",
                        json={"session_id": sid, "rounds": "abc"}), 400,
                 "rounds must be an integer")
    expect_error(c.put("/api/v1/helpers/active", json={"helper": "x"}), 400,
                 "numpyhelper")
    # The seed uploaded above made its helper the active one (no PUT yet).
    r = c.get("/api/v1/helpers/active")
    check(r.status_code == 200 and r.json() == "numpyhelper",
          "a seed makes its helper active: " + r.text)
    r = c.put("/api/v1/helpers/active", json={"helper": "numpyhelper"})
    check(r.status_code == 200, r.text)
    check(c.get("/api/v1/helpers/active").json() == "numpyhelper", "helper")
    expect_error(c.post("/api/v1/predictions/start", json={}), 400,
                 "prediction_id")
    expect_error(c.post("/api/v1/predictions/start",
                        json={"prediction_id": "p1", "model_id": "gone"}),
                 404, "gone")
    expect_error(c.post("/api/v1/predictions/start",
                        json={"prediction_id": "p1", "model_id": seed}),
                 400, "no combiner")


def case_health_and_status(c):
    r = requests.get(c.url + "/health", timeout=BOUND)
    check(r.status_code == 200 and r.text == "OK", r.text)
    check(c.get("/get_controller_status").json() == {"state": "idle"},
          "state")


def case_auth(c):
    seed = seed_bytes()
    client = {"Authorization": "Bearer " + c.token("client")}
    admin = {"Authorization": "Bearer " + c.token("admin")}
    check(requests.get(c.url + "/health", timeout=BOUND).status_code == 200,
          "/health needs no token")
    writes = [
        ("post", "/api/v1/models/", {"files": {"file": ("m.npz", seed)}}),
        ("put", "/api/v1/helpers/active", {"json": {"helper": "numpyhelper"}}),
        ("post", "/api/v1/sessions/", {"json": {"session_config": {}}}),
        ("post", "/api/v1/sessions/start", {"json": {"session_id": "x"}}),
        ("post", "/api/v1/sessions/x/terminate", {}),
        ("post", "/api/v1/predictions/start", {"json": {}}),
    ]
    reads = ["/api/v1/models/", "/api/v1/sessions/", "/api/v1/rounds/",
             "/api/v1/validations/", "/api/v1/statuses/",
             "/api/v1/predictions/", "/get_controller_status",
             "/api/v1/helpers/active"]
    calls = [(m, p, kw) for m, p, kw in writes] + \
            [("get", p, {}) for p in reads]
    for method, path, kw in calls:
        fn = getattr(requests, method)
        r = fn(c.url + path, timeout=BOUND, **kw)
        check(r.status_code == 401, "%s %s without a token: %d"
              % (method, path, r.status_code))
        r = fn(c.url + path, headers=client, timeout=BOUND, **kw)
        check(r.status_code == 403, "%s %s with a client token: %d"
              % (method, path, r.status_code))
    c.headers = admin
    r = upload(c, seed)
    check(r.status_code == 200, "admin upload: %s" % r.text)
    check(c.get("/api/v1/models/count").json() == 1, "admin read")


def case_statuses_from_clients(c):
    """A client's SendStatus at a combiner reaches the controller's
    /api/v1/statuses with the values the client sent."""
    import harness
    harness.load_stubs()
    import grpc
    import fedn_pb2 as fedn
    import fedn_pb2_grpc as fedn_grpc
    ctrl_port = wait_for_file(c.path("port"), c.proc)
    comb = harness.Combiner(c.dir, name="combiner-a",
                            args=["--controller", "127.0.0.1:" + ctrl_port])
    comb.start()
    try:
        channel = grpc.insecure_channel(comb.address)
        connector = fedn_grpc.ConnectorStub(channel)
        sent = []
        end = time.time() + BOUND
        # The combiner joins the controller shortly after it starts; events
        # before that are dropped, so send until one arrives.
        while time.time() < end:
            st = fedn.Status(
                sender=fedn.Client(name="client-x", role=fedn.CLIENT,
                                   client_id="client-x"),
                status="Model update completed.", log_level=fedn.AUDIT,
                data='{"num_examples": 7}', correlation_id="corr-%d"
                % len(sent), type=fedn.MODEL_UPDATE, session_id="sess-1")
            st.timestamp.FromSeconds(1736244000)
            reply = connector.SendStatus(st, timeout=10)
            check(reply.response, "no response")
            sent.append(st.correlation_id)
            got = c.get("/api/v1/statuses/").json()
            if got["count"] > 0:
                break
            time.sleep(0.2)
        check(got["count"] >= 1, "no status reached the controller")
        x = got["result"][0]
        check(x["status"] == "Model update completed.", x)
        check(x["log_level"] == "AUDIT" and x["type"] == "MODEL_UPDATE", x)
        check(x["data"] == '{"num_examples": 7}', x)
        check(x["correlation_id"] in sent and x["session_id"] == "sess-1", x)
        check(x["sender"]["name"] == "client-x"
              and x["sender"]["role"] == "CLIENT", x)
        check(x["timestamp"] == "Tue, 07 Jan 2025 10:00:00 GMT", x)
        check(x["combiner_id"] == "combiner-a", x)
        one = c.get("/api/v1/statuses/" + x["status_id"]).json()
        check(one == x, "status by id differs: %s" % one)
        flt = c.get("/api/v1/statuses/", params={"sender.name": "nobody"})
        check(flt.json()["count"] == 0, flt.text)
        flt = c.get("/api/v1/statuses/", params={"type": "MODEL_UPDATE",
                                                 "sender.role": "CLIENT"})
        check(flt.json()["count"] == got["count"], flt.text)
        channel.close()
    finally:
        comb.stop()


def case_training_session(c):
    """A session over HTTP with a real combiner and two FEDn-like clients:
    the round, the new model, the validations exactly as the clients sent
    them, and the clients' status events."""
    import harness
    harness.load_stubs()
    from fedn_client import FednClient
    import fedn_pb2 as fedn
    ctrl_port = wait_for_file(c.path("port"), c.proc)
    comb = harness.Combiner(c.dir, name="combiner-a",
                            args=["--controller", "127.0.0.1:" + ctrl_port])
    comb.start()
    clients = []
    try:
        seed_model = npz_lite.npz_bytes({"0": [0.0] * 4, "1": [2.0] * 2})
        seed = upload(c, seed_model).json()["model_id"]
        clients = [FednClient(comb.address, n) for n in ("client-a",
                                                         "client-b")]
        for cl in clients:
            cl.start()
        r = post_session(c, seed, clients_required=2, round_timeout=60,
                         rounds=1)
        check(r.status_code == 201, r.text)
        sid = r.json()["session_id"]
        r = c.post("/api/v1/sessions/start", json={"session_id": sid})
        check(r.status_code == 200, r.text)
        updates = {"client-a": ([1.0] * 4, [1.0] * 2, 100),
                   "client-b": ([5.0] * 4, [3.0] * 2, 300)}
        metrics = {"client-a": {"test_accuracy": 0.75, "test_loss": 0.5},
                   "client-b": {"test_accuracy": 0.25, "test_loss": 1.5}}
        for cl in clients:
            task = cl.next_task(BOUND)
            check(task is not None, cl.name + " got no training task")
            t0, t1, n = updates[cl.name]
            answer = cl.train(task, lambda _: npz_lite.npz_bytes(
                {"0": t0, "1": t1}), n)
            check(answer == "accepted", "update of %s: %s" % (cl.name,
                                                              answer))
        for cl in clients:
            task = cl.next_task(BOUND)
            check(task is not None, cl.name + " got no validation task")
            check(cl.validate(task, metrics[cl.name]) == "accepted",
                  "validation of " + cl.name)
        s = session_end(c, sid)
        check(s["status"] == "Finished", s)
        rnd = c.get("/api/v1/rounds/", params={"session_id": sid}).json()
        check(rnd["count"] == 1, rnd)
        rnd = rnd["result"][0]
        check(rnd["status"] == "Finished" and rnd["reason"] == "", rnd)
        check(sorted(rnd["clients_accepted"]) == ["client-a", "client-b"],
              rnd)
        check(rnd["num_examples"] == 400 and rnd["base_model_id"] == seed,
              rnd)
        check(rnd["combiners"][0]["name"] == "combiner-a", rnd)
        new = rnd["model_id"]
        avg = npz_lite.read_npz(c.get("/api/v1/models/%s/download"
                                      % new).content)
        # FedAvg by num_examples: (100 * 1 + 300 * 5) / 400 = 4.
        check(avg["0"] == [4.0] * 4 and avg["1"] == [2.5] * 2, avg)
        trail = c.get("/api/v1/models/%s/ancestors?include_self=true"
                      % new).json()
        check([m["model_id"] for m in trail] == [new, seed], trail)
        check(c.get("/api/v1/models/", params={"session_id": sid})
              .json()["count"] == 1, "models of the session")
        vals = c.get("/api/v1/validations/", params={"sessionId": sid}).json()
        check(vals["count"] == 2, vals)
        for v in vals["result"]:
            name = v["sender"]["name"]
            check(json.loads(v["data"]) == metrics[name], v)
            check(v["data"] == json.dumps(metrics[name]), v)
            check(v["model_id"] == new and v["round_id"] == rnd["round_id"],
                  v)
        one = c.get("/api/v1/validations/", params={
            "sender.name": "client-b", "modelId": new}).json()
        check(one["count"] == 1, one)
        sts = c.get("/api/v1/statuses/", params={
            "session_id": sid, "sender.name": "client-a"}).json()
        texts = [x["status"] for x in sts["result"]]
        check("Model update completed." in texts
              and "Model validation completed." in texts, texts)
        # A prediction run of the new model: each client's output is
        # stored as it sent it.
        r = c.post("/api/v1/predictions/start",
                   json={"prediction_id": "p1", "model_id": new})
        check(r.status_code == 200, r.text)
        outputs = {"client-a": {"y": [0.5, 0.25]}, "client-b": {"y": [1]}}
        for cl in clients:
            task = cl.next_task(BOUND)
            check(task is not None, cl.name + " got no prediction task")
            check(task.type == fedn.MODEL_PREDICTION and task.model_id == new,
                  "prediction task %s" % task)
            msg = fedn.ModelPrediction(
                sender=cl.sender(), receiver=task.sender,
                model_id=task.model_id, data=json.dumps(outputs[cl.name]),
                correlation_id=task.correlation_id,
                prediction_id=task.session_id)
            answer = cl.combiner.SendModelPrediction(
                msg, metadata=cl.metadata, timeout=BOUND).response
            check(answer == "accepted", "prediction of %s: %s"
                  % (cl.name, answer))
        end = time.time() + BOUND
        while time.time() < end:
            preds = c.get("/api/v1/predictions/",
                          params={"prediction_id": "p1"}).json()
            if preds["count"] == 2:
                break
            time.sleep(0.2)
        check(preds["count"] == 2, preds)
        for p in preds["result"]:
            check(p["data"] == json.dumps(outputs[p["sender"]["name"]]), p)
            check(p["model_id"] == new, p)
    finally:
        for cl in clients:
            cl.close()
        comb.stop()


CASES = {
    "seed_and_download": (case_seed_and_download, {}),
    "corrupt_upload": (case_corrupt_upload, {}),
    "paging": (case_paging, {}),
    "session_without_combiner": (case_session_without_combiner,
                                 {"extra": ["--client-wait", "1"]}),
    "terminate": (case_terminate, {}),
    "not_found": (case_not_found, {}),
    "bad_input": (case_bad_input, {}),
    "health_and_status": (case_health_and_status, {}),
    "auth": (case_auth, {"secret": True}),
    "statuses_from_clients": (case_statuses_from_clients, {}),
    "training_session": (case_training_session, {}),
}


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--case", required=True, choices=sorted(CASES))
    args = p.parse_args()
    fn, opts = CASES[args.case]
    c = Controller(**opts)
    try:
        fn(c)
    finally:
        c.close()
    print("ok:", args.case)


if __name__ == "__main__":
    main()
