#!/usr/bin/env python3
"""A FEDn user's flow over HTTP, as a FEDn user's script does it with
`requests` (the calls and bodies of FEDn 0.33's APIClient), against a
controller secured as FEDn is (bearer tokens of `rondo token create`) with
one combiner joined to it, and two clients that join through the API:

1. PUT /helpers/active and POST /models/ seed the federation with an npz
   model; GET /models/ lists it.
2. POST /packages/ uploads a .tgz of tests/cluster/package (FEDn's
   set_active_package fields); GET /packages/checksum is its sha256.
3. Two clients join with POST /clients/add and a client token:
   - `rondo client --api-url` without --package (downloads, verifies,
     unpacks and runs the package: delta 1, 10 examples);
   - a FEDn-protocol client (tests/conformance/fedn_client.py) that first
     does over HTTP what FEDn's client does (clients/add with package
     "remote", packages/checksum, packages/download and its sha256), then
     serves the assigned combiner: training adds 3 to every value with 30
     examples, validation reports metrics of its own that differ per round.
4. POST /sessions/ with FEDn's session_config (2 rounds, clients_required
   2, validate true) and POST /sessions/start; GET /sessions/{id} polled
   every 0.5 s (at most 180 s) until Finished.
5. What the user checks: /rounds/?session_id has 2 finished rounds with
   both clients accepted, chained seed -> round 1 -> round 2; /models/?
   session_id has the 2 new models; each downloaded model is FedAvg of the
   two clients' updates of its base model (computed without numpy);
   /validations/?session_id has, per round, the FEDn-protocol client's
   metrics exactly as it sent them and c1's metrics equal to its package's
   validate() of that round's model; /clients/ lists both on the
   combiner.

Usage: fedn_user_flow_test.py --case session  (RONDO_BIN names the rondo
binary, RONDO_PY_STUBS the generated gRPC stubs; ctest sets both). Exit 0
on success, 1 on a failed check (with the logs' tails), 77 when
python3-requests or the gRPC stubs are missing. Every wait is bounded.
"""

import argparse
import hashlib
import io
import json
import os
import subprocess
import sys
import tarfile
import tempfile
import threading
import time
import uuid
from array import array

try:
    import requests
except ImportError:
    print("skipped: python3-requests is not installed")
    sys.exit(77)

HERE = os.path.dirname(os.path.abspath(__file__))
PACKAGE = os.path.join(HERE, "..", "cluster", "package")
sys.path.insert(0, os.path.join(HERE, "..", "conformance"))
import harness  # noqa: E402  (load_stubs: skips without gRPC stubs)
import federation  # noqa: E402  (the controller and combiner processes)
import npz_task  # noqa: E402  (put on sys.path by cluster_test)

check = federation.check
# The name of the Federation's combiner.
COMBINER = "combiner-a"

# Every single HTTP request, process start and task wait is bounded by this
# many seconds; the session by SESSION_BOUND.
BOUND = 60
SESSION_BOUND = 180
POLL = 0.5

# The two clients: the package's RONDO_TEST_DELTA / RONDO_TEST_EXAMPLES for
# `rondo client` c1, the same for the FEDn-protocol client's training.
C1_DELTA, C1_EXAMPLES = 1.0, 10
PY_NAME, PY_DELTA, PY_EXAMPLES = "py1", 3.0, 30
ROUNDS = 2


def py_metrics(round_no):
    """The FEDn-protocol client's validation metrics in round `round_no`
    (1-based): its own numbers, different in each round."""
    return {"test_accuracy": 0.25 * round_no, "test_loss": 1.5 / round_no}


def values(npz):
    """Every value of an npz model (bytes), in archive order."""
    return [v for _, _, _, vs in npz_task.read_npz(io.BytesIO(npz))
            for v in vs]


def seed_npz():
    """The seed model: two float32 tensors (5 values) in FEDn's npz."""
    buf = io.BytesIO()
    npz_task.write_npz(buf, [
        ("0.npy", "<f4", (3,), array("f", [0.5, -1.0, 2.0])),
        ("1.npy", "<f4", (2,), array("f", [4.0, 0.25]))])
    return buf.getvalue()


def package_tgz():
    """tests/cluster/package as a FEDn user packs one (`tar czf
    package.tgz package/`): a top folder holding fedn.yaml."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for name in sorted(os.listdir(PACKAGE)):
            path = os.path.join(PACKAGE, name)
            if os.path.isfile(path):
                tar.add(path, arcname="package/" + name)
    return buf.getvalue()


class Flow(federation.Federation):
    """The controller (HTTP API with bearer tokens) and its one combiner as
    processes (the Federation's start, spawn, stop and tails) and the
    FEDn user's HTTP calls with an admin token."""

    def start(self):
        """Starts the controller and the combiner; writes a client token
        (`rondo token create --role client`) to client.token."""
        super().start(clients={}, via_api=True)
        self.client_token_file = os.path.join(self.work, "client.token")
        with open(self.client_token_file) as f:
            self.client_token = f.read().strip()
        # The user's script: APIClient(host, token=...) sends this header
        # on every call.
        self.headers = {"Authorization": "Bearer " + self.admin}

    def get(self, path, **kw):
        return requests.get(self.api + path, headers=self.headers,
                            timeout=BOUND, **kw)

    def post(self, path, **kw):
        return requests.post(self.api + path, headers=self.headers,
                             timeout=BOUND, **kw)

    def put(self, path, **kw):
        return requests.put(self.api + path, headers=self.headers,
                            timeout=BOUND, **kw)


def ok(r, what, status=200):
    """`r` when its status is `status`; else fails naming `what`."""
    if r.status_code != status:
        raise AssertionError("%s: HTTP %d, expected %d (%s)"
                             % (what, r.status_code, status, r.text[:300]))
    return r


class PyClient:
    """The FEDn-protocol client: joins over HTTP as FEDn's client does,
    then serves training and validation tasks on a thread."""

    def __init__(self, flow):
        self.flow = flow
        self.client_id = str(uuid.uuid4())  # FEDn's client: a uuid4
        self.token = flow.client_token
        self.grpc = None
        self.sent = {}      # model id validated -> metrics sent
        self.trained = []   # (base model id, update values)
        self.errors = []
        self._stop = threading.Event()
        self._thread = None

    def join(self):
        """FEDn's connect_to_api, set_checksum, download_compute_package
        and validate, over HTTP with the client token. @returns the
        combiner's "host:port"."""
        headers = {"Authorization": "Bearer " + self.token}
        url = self.flow.api + "/"
        r = requests.post(url + "api/v1/clients/add", headers=headers,
                          json={"client_id": self.client_id,
                                "name": PY_NAME, "package": "remote",
                                "preferred_combiner": ""},
                          allow_redirects=True, timeout=BOUND)
        a = ok(r, "clients/add of " + PY_NAME).json()
        check(a["client_id"] == self.client_id and a["package"] == "remote"
              and a["helper_type"] == "numpyhelper" and not a.get("fqdn")
              and a["combiner"] == COMBINER,
              "clients/add assigns %s to combiner %s at %s:%s"
              % (PY_NAME, COMBINER, a["host"], a["port"]))
        # FEDn's package runtime asks for "<url>/api/v1/..." with a url that
        # ends in "/": the doubled slash is as FEDn's client sends it.
        r = requests.get(url + "/api/v1/packages/checksum", headers=headers,
                         timeout=BOUND)
        checksum = ok(r, PY_NAME + "'s packages/checksum").json()["checksum"]
        r = requests.get(url + "/api/v1/packages/download", headers=headers,
                         timeout=BOUND)
        ok(r, PY_NAME + "'s packages/download")
        check("filename=" in r.headers.get("Content-Disposition", ""),
              "the download names its file (Content-Disposition)")
        check(hashlib.sha256(r.content).hexdigest() == checksum,
              PY_NAME + " verified the package's sha256 %s" % checksum)
        with tarfile.open(fileobj=io.BytesIO(r.content), mode="r:gz") as t:
            check("package/fedn.yaml" in t.getnames(),
                  "the downloaded package holds fedn.yaml")
        return "%s:%d" % (a["host"], a["port"])

    def start(self, address):
        from fedn_client import FednClient
        self.grpc = FednClient(address, PY_NAME, client_id=self.client_id)
        self.grpc.start()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _train(self, model):
        out = []
        for name, descr, shape, vs in npz_task.read_npz(io.BytesIO(model)):
            out.append((name, descr, shape,
                        array(vs.typecode, (v + PY_DELTA for v in vs))))
        buf = io.BytesIO()
        npz_task.write_npz(buf, out)
        return buf.getvalue()

    def _serve(self):
        import fedn_pb2 as fedn
        while not self._stop.is_set():
            task = self.grpc.next_task(0.5)
            if task is None:
                continue
            try:
                if task.type == fedn.MODEL_UPDATE:
                    answer = self.grpc.train(task, self._train, PY_EXAMPLES)
                    self.trained.append(task.model_id)
                elif task.type == fedn.MODEL_VALIDATION:
                    metrics = py_metrics(len(self.sent) + 1)
                    answer = self.grpc.validate(task, metrics)
                    self.sent[task.model_id] = metrics
                else:
                    answer = "accepted"
                    self.errors.append("unexpected task type %d" % task.type)
                if answer != "accepted":
                    self.errors.append("task %s answered %r"
                                       % (task.correlation_id, answer))
            except Exception as e:  # noqa: BLE001 - reported by the test
                self.errors.append("task %s: %r" % (task.correlation_id, e))

    def close(self):
        self._stop.set()
        if self._thread:
            self._thread.join(timeout=BOUND)
        if self.grpc:
            self.grpc.close()


def wait_for(what, fn, bound=BOUND, every=POLL):
    """fn()'s first true answer, polled every `every` s for at most
    `bound` s."""
    end = time.monotonic() + bound
    while True:
        got = fn()
        if got:
            return got
        if time.monotonic() > end:
            raise AssertionError("%s: not within %d s" % (what, bound))
        time.sleep(every)


def case_session(f):
    t0 = time.monotonic()
    f.start()

    # 1. The seed model (FEDn's APIClient.set_active_model).
    ok(f.put("/api/v1/helpers/active", json={"helper": "numpyhelper"}),
       "PUT helpers/active")
    seed_bytes = seed_npz()
    r = ok(f.post("/api/v1/models/", files={"file": ("seed.npz", seed_bytes)},
                  data={"helper": "numpyhelper"}), "POST models/")
    seed = r.json()["model_id"]
    listed = ok(f.get("/api/v1/models/"), "GET models/").json()
    check(listed["count"] == 1 and listed["result"][0]["model_id"] == seed,
          "GET models/ lists the seed model %s" % seed)
    check(ok(f.get("/api/v1/models/%s/download" % seed), "seed download")
          .content == seed_bytes, "the seed downloads as uploaded")

    # 2. The compute package (FEDn's APIClient.set_active_package).
    tgz = package_tgz()
    path = os.path.join(f.work, "package.tgz")
    with open(path, "wb") as out:
        out.write(tgz)
    with open(path, "rb") as file:
        r = ok(f.post("/api/v1/packages/", files={"file": file},
                      data={"helper": "numpyhelper", "name": "npz-task",
                            "description": "adds a delta; mean as accuracy"}),
               "POST packages/")
    sha = hashlib.sha256(tgz).hexdigest()
    r = ok(f.get("/api/v1/packages/checksum"), "GET packages/checksum")
    check(r.json()["checksum"] == sha,
          "packages/checksum is the uploaded file's sha256")

    # 3. The clients join through clients/add.
    c1_work = os.path.join(f.work, "c1-work")
    os.makedirs(c1_work)
    env = dict(os.environ, RONDO_TEST_NAME="c1",
               RONDO_TEST_DELTA=str(C1_DELTA),
               RONDO_TEST_EXAMPLES=str(C1_EXAMPLES),
               RONDO_TEST_MARKS=f.marks)
    f.spawn("c1", ["client", "--api-url", f.api,
                   "--token-file", f.client_token_file,
                   "--name", "c1", "--work-dir", c1_work], env=env)
    py = PyClient(f)
    try:
        py.start(py.join())

        def both_online():
            r = f.get("/api/v1/clients/")
            if r.status_code != 200:
                return None
            on = {x["name"] for x in r.json()["result"]
                  if x["status"] == "online"}
            return r.json() if on == {"c1", PY_NAME} else None
        wait_for("both clients online", both_online)
        joined = time.monotonic()
        print("ok: both clients online %.1f s after the start"
              % (joined - t0), flush=True)

        # 4. The session (FEDn's APIClient.start_session).
        r = ok(f.post("/api/v1/sessions/", json={
            "name": "fedn-user-flow",
            "seed_model_id": seed,
            "session_config": {
                "aggregator": "fedavg", "aggregator_kwargs": None,
                "round_timeout": 60, "buffer_size": -1, "model_id": seed,
                "delete_models_storage": True, "clients_required": 2,
                "requested_clients": 8, "validate": True,
                "helper_type": "numpyhelper", "server_functions": None}}),
            "POST sessions/", status=201)
        sid = r.json()["session_id"]
        ok(f.post("/api/v1/sessions/start", json={
            "session_id": sid, "rounds": ROUNDS, "round_timeout": 60}),
           "POST sessions/start")

        def ended():
            s = f.get("/api/v1/sessions/" + sid).json()
            return s if s["status"] not in ("Created", "Started") else None
        s = wait_for("session %s ended" % sid, ended, bound=SESSION_BOUND)
        took = time.monotonic() - joined
        check(s["status"] == "Finished", "session %s Finished (%s)"
              % (sid, s))
        print("ok: the session took %.1f s" % took, flush=True)
        check(not py.errors, "%s served its tasks: %s" % (PY_NAME, py.errors))

        # 5. What the user checks.
        rounds = ok(f.get("/api/v1/rounds/", params={"session_id": sid}),
                    "GET rounds/").json()
        check(rounds["count"] == ROUNDS, "%d rounds in the session (%d)"
              % (ROUNDS, rounds["count"]))
        # Chain them from the seed: round 1's base is the seed, round 2's
        # base is round 1's model.
        by_base = {x["base_model_id"]: x for x in rounds["result"]}
        chain, base = [], seed
        for _ in range(ROUNDS):
            check(base in by_base, "a round trains on model %s" % base)
            chain.append(by_base[base])
            base = by_base[base]["model_id"]
        ids = {"c1", py.client_id}
        for i, rd in enumerate(chain, 1):
            check(rd["status"] == "Finished" and rd["reason"] == "",
                  "round %d (%s) finished" % (i, rd["round_id"]))
            check(set(rd["clients_accepted"]) == ids
                  and len(rd["clients_accepted"]) == 2,
                  "round %d accepted both clients' updates %s"
                  % (i, rd["clients_accepted"]))
            check(rd["num_examples"] == C1_EXAMPLES + PY_EXAMPLES,
                  "round %d: %d examples" % (i, rd["num_examples"]))
        models = ok(f.get("/api/v1/models/", params={"session_id": sid}),
                    "GET models/?session_id").json()
        check(models["count"] == ROUNDS and
              {m["model_id"] for m in models["result"]}
              == {rd["model_id"] for rd in chain},
              "models/?session_id lists the %d new models" % ROUNDS)
        check(py.trained == [seed, chain[0]["model_id"]],
              "%s trained on the seed, then on round 1's model" % PY_NAME)

        prev = values(seed_bytes)
        got_models = []
        for i, rd in enumerate(chain, 1):
            got = values(ok(f.get("/api/v1/models/%s/download"
                                  % rd["model_id"]),
                            "download of round %d's model" % i).content)
            # FedAvg of the updates prev + delta, weighted by num_examples.
            want = [(C1_EXAMPLES * (p + C1_DELTA) + PY_EXAMPLES * (p + PY_DELTA))
                    / (C1_EXAMPLES + PY_EXAMPLES) for p in prev]
            check(len(got) == len(want) and
                  all(abs(g - w) < 1e-5 for g, w in zip(got, want)),
                  "round %d's model %s is FedAvg of the updates %s"
                  % (i, got, want))
            got_models.append(got)
            prev = got

        vals = ok(f.get("/api/v1/validations/", params={"session_id": sid}),
                  "GET validations/").json()
        check(vals["count"] == 2 * ROUNDS,
              "%d validations in the session (%d)"
              % (2 * ROUNDS, vals["count"]))
        # Keyed by the sender's client id; the sender's name is the one
        # the message gave (FEDn stores the sender as sent).
        by = {(v["sender"]["client_id"], v["model_id"]): v
              for v in vals["result"]}
        for i, (rd, model) in enumerate(zip(chain, got_models), 1):
            mine = by.get((py.client_id, rd["model_id"]))
            check(mine is not None and mine["round_id"] == rd["round_id"],
                  "round %d: %s's validation of %s"
                  % (i, PY_NAME, rd["model_id"]))
            check(mine["data"] == json.dumps(py_metrics(i))
                  and json.loads(mine["data"]) == py_metrics(i)
                  and py.sent[rd["model_id"]] == py_metrics(i),
                  "round %d: %s's metrics as sent %s" % (i, PY_NAME,
                                                         mine["data"]))
            check(mine["sender"]["role"] == "CLIENT"
                  and mine["sender"]["name"] == PY_NAME
                  and mine["session_id"] == sid,
                  "round %d: sender %s" % (i, mine["sender"]))
            c1 = by.get(("c1", rd["model_id"]))
            check(c1 is not None and c1["round_id"] == rd["round_id"]
                  and c1["sender"]["name"] == "c1",
                  "round %d: c1's validation of %s" % (i, rd["model_id"]))
            m = json.loads(c1["data"])
            accuracy = sum(model) / len(model)
            check(set(m) == {"test_accuracy", "test_loss"}
                  and abs(m["test_accuracy"] - accuracy) < 1e-9
                  and m["test_loss"] == 0.0,
                  "round %d: c1's metrics %s are its package's validate() "
                  "(accuracy %.6f)" % (i, c1["data"], accuracy))

        named = ok(f.get("/api/v1/validations/",
                         params={"sender.name": PY_NAME}),
                   "GET validations/?sender.name=%s" % PY_NAME).json()
        check(named["count"] == ROUNDS
              and {v["validation_id"] for v in named["result"]}
              == {v["validation_id"] for v in vals["result"]
                  if v["sender"]["client_id"] == py.client_id},
              "validations/?sender.name=%s lists exactly its %d validations"
              " (%d)" % (PY_NAME, ROUNDS, named["count"]))
        clients = ok(f.get("/api/v1/clients/"), "GET clients/").json()
        found = {x["name"]: x for x in clients["result"]}
        check(clients["count"] == 2 and set(found) == {"c1", PY_NAME},
              "clients/ lists c1 and %s" % PY_NAME)
        for name, x in found.items():
            check(x["combiner"] == COMBINER and x["package"] == "remote",
                  "%s is on combiner %s with the remote package"
                  % (name, COMBINER))
        c1_log = open(os.path.join(f.work, "c1.log")).read()
        check("sha256 " + sha in c1_log,
              "c1 verified the package's sha256 (its log)")
        print("ok: the whole flow took %.1f s" % (time.monotonic() - t0),
              flush=True)
    finally:
        py.close()


CASES = {"session": case_session}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--case", required=True, choices=sorted(CASES))
    ap.add_argument("--keep", action="store_true")
    args = ap.parse_args()
    harness.load_stubs()
    rondo = harness.rondo_binary()  # RONDO_BIN
    work = tempfile.mkdtemp(prefix="rondo-fedn-flow-")
    f = Flow(rondo, work)
    code = 0
    try:
        CASES[args.case](f)
    except Exception as e:  # noqa: BLE001 - reported with the logs' tails
        print("FAILED:", e, flush=True)
        code = 1
    finally:
        f.stop()
        if code:
            f.tails()
            print("work directory kept:", work)
        elif not args.keep:
            subprocess.run(["rm", "-rf", work], timeout=BOUND)
    return code


if __name__ == "__main__":
    sys.exit(main())
