#!/usr/bin/python3
"""FEDn protocol conformance of a real `rondo combiner` process, driven by
the FEDn-like test client in fedn_client.py (see FEDN_WIRE.md).

Each case starts its own combiner on an ephemeral port in a temporary
directory. Run one case with `--case NAME`; ctest registers one entry per
case (tests/CMakeLists.txt) and reports "skipped" when Python's gRPC is
missing. Models are built without numpy (npz_lite.py).
"""

import hashlib
import json
import os
import random
import struct
import subprocess
import sys
import time

import harness
from harness import Combiner, RoundThread, TempDir, check, wait_until

harness.load_stubs()

import grpc  # noqa: E402
from google.protobuf.message import DecodeError  # noqa: E402

import fedn_pb2 as fedn  # noqa: E402
from fedn_client import CHUNK_SIZE, FednClient, training_meta  # noqa: E402
from npz_lite import npz_bytes, read_npz  # noqa: E402

SESSION = "conformance"


def near(xs, y):
    """Whether every value of `xs` is `y` up to float32 rounding."""
    return all(abs(x - y) <= 1e-5 * (1 + abs(y)) for x in xs)


def model(a, b, compressed=False):
    """A two-tensor model: "0" = 1000 × a, "1" = 10 × b (float32)."""
    return npz_bytes({"0": [a] * 1000, "1": [b] * 10}, compressed)


def check_task(task, client_id, model_id, type_, round_id):
    """The form FEDn's client relies on (FEDN_WIRE.md, TaskStream)."""
    check(task is not None, f"{client_id} got no task")
    check(task.type == type_, f"task type {task.type}, expected {type_}")
    check(task.model_id == model_id, f"task model {task.model_id}")
    check(task.session_id == SESSION, f"task session {task.session_id}")
    check(task.correlation_id != "", "task without correlation_id")
    check(task.sender.role == fedn.COMBINER, "task sender is not a combiner")
    check(task.sender.name == "combiner-conf", f"sender {task.sender.name}")
    check(task.receiver.client_id == client_id,
          f"receiver {task.receiver.client_id}, expected {client_id}")
    check(task.receiver.role == fedn.CLIENT, "receiver role is not CLIENT")
    check(task.timestamp != "", "task without timestamp")
    data = json.loads(task.data)
    check(data["round_id"] == round_id, f"data round_id {data['round_id']}")
    return data


def started_clients(address, *names):
    """FEDn-like clients named `names`, started, each with a heartbeat
    answered."""
    clients = [FednClient(address, n) for n in names]
    for c in clients:
        c.start()
    # Heartbeats are answered from the start (one per 2 s per client).
    for c in clients:
        wait_until(lambda: c.heartbeats, 10, f"a heartbeat reply to {c.name}")
        check(c.heartbeats[0] == "heartbeat received",
              f"heartbeat reply {c.heartbeats[0]!r}")
    return clients


def case_training_and_validation():
    """Two clients train one FedAvg round and validate the result."""
    with TempDir("rondo-conf-") as d, Combiner(d) as comb:
        admin = FednClient(comb.address, "admin")
        up = admin.upload("seed", model(0.0, 2.0))
        check(up.status == fedn.OK and up.id == "seed", f"seed upload {up}")
        a, b = started_clients(comb.address, "client-a", "client-b")
        try:
            rnd = RoundThread(comb.address, {
                "round_id": "1", "session_id": SESSION, "model_id": "seed",
                "round_timeout": 60, "clients_required": 2,
                "buffer_size": -1, "validate": "false",
                "client_settings": json.dumps({"learning_rate": 0.1})})
            ta, tb = a.next_task(60), b.next_task(60)
            da = check_task(ta, "client-a", "seed", fedn.MODEL_UPDATE, "1")
            check_task(tb, "client-b", "seed", fedn.MODEL_UPDATE, "1")
            check(ta.correlation_id != tb.correlation_id,
                  "two tasks share a correlation_id")
            if "client_settings" in da:
                check(da["client_settings"] == {"learning_rate": 0.1},
                      f"client_settings {da['client_settings']}")

            def trained(value_0, value_1, compressed):
                def update(global_model):
                    check(read_npz(global_model) == read_npz(
                        model(0.0, 2.0)), "the global model is not the seed")
                    return model(value_0, value_1, compressed)
                return update
            ra = a.train(ta, trained(1.0, 1.0, False), 100)
            rb = b.train(tb, trained(5.0, 3.0, True), 300)
            check(ra == "accepted", f"update of a: {ra}")
            check(rb == "accepted", f"update of b: {rb}")
            rec = rnd.result(90)
            check(rec["status"] == "success", f"round: {rec}")
            check(rec["nr_aggregated_models"] == "2", f"round: {rec}")
            check(sorted(rec["clients_accepted"]) == ["client-a", "client-b"],
                  f"accepted {rec['clients_accepted']}")
            new = rec["model_id"]
            check(new not in ("", "seed"), f"new model id {new!r}")
            # FedAvg weighted by num_examples: (100·1 + 300·5)/400 = 4 and
            # (100·1 + 300·3)/400 = 2.5.
            avg = read_npz(admin.download(new))
            check(near(avg["0"], 4.0) and len(avg["0"]) == 1000,
                  f"averaged tensor 0: {avg['0'][:3]}")
            check(near(avg["1"], 2.5) and len(avg["1"]) == 10,
                  f"averaged tensor 1: {avg['1'][:3]}")

            rnd = RoundThread(comb.address, {
                "round_id": "1-validation", "session_id": SESSION,
                "model_id": new, "task": "validation", "round_timeout": 60,
                "clients_required": 2})
            va, vb = a.next_task(60), b.next_task(60)
            check_task(va, "client-a", new, fedn.MODEL_VALIDATION,
                       "1-validation")
            check_task(vb, "client-b", new, fedn.MODEL_VALIDATION,
                       "1-validation")
            metrics = {"client-a": {"test_accuracy": 0.75, "test_loss": 0.5},
                       "client-b": {"test_accuracy": 0.25, "test_loss": 1.5}}
            check(a.validate(va, metrics["client-a"]) == "accepted",
                  "validation of a")
            check(b.validate(vb, metrics["client-b"]) == "accepted",
                  "validation of b")
            rec = rnd.result(90)
            check(rec["status"] == "success", f"validation round: {rec}")
            got = {v["client_id"]: v["metrics"] for v in rec["validations"]}
            check(got == metrics, f"validations {got}")
            # SendStatus before and after each task, all acknowledged.
            for c in (a, b):
                check(len(c.statuses) == 4, f"{c.name} statuses {c.statuses}")
                check(all(s[2] == "status received" for s in c.statuses),
                      f"{c.name} statuses {c.statuses}")
                check(not c.heartbeat_errors,
                      f"{c.name} heartbeat errors {c.heartbeat_errors}")
                check(c.stream_error is None and not c.stream_ended.is_set(),
                      f"{c.name} task stream ended: {c.stream_error}")
        finally:
            a.close()
            b.close()
            admin.close()


def case_large_model():
    """A 300 MB model goes up and comes back byte for byte in 1 MiB chunks."""
    size = 300 * CHUNK_SIZE
    rng = random.Random(5)
    # Eight random blocks in turn, each chunk stamped with its index, so a
    # lost, repeated or reordered chunk changes the checksum.
    blocks = [rng.randbytes(CHUNK_SIZE) for _ in range(8)]
    sent = hashlib.sha256()

    def chunks():
        for i in range(size // CHUNK_SIZE):
            block = struct.pack("<Q", i) + blocks[i % 8][8:]
            sent.update(block)
            yield block

    with TempDir("rondo-conf-") as d, Combiner(d) as comb:
        c = FednClient(comb.address, "big")
        try:
            t0 = time.monotonic()
            reply = c.upload_chunks("big-model", chunks(), timeout=300)
            t1 = time.monotonic()
            check(reply.status == fedn.OK, f"upload reply {reply}")
            check(reply.message == f"stored {size} bytes",
                  f"upload reply message {reply.message!r}")
            got = hashlib.sha256()
            n = count = 0
            last = None
            for r in c.models.Download(fedn.ModelRequest(id="big-model"),
                                       metadata=c.metadata, timeout=300):
                check(last is None, "a message after the OK terminator")
                if r.status == fedn.IN_PROGRESS:
                    check(0 < len(r.data) <= CHUNK_SIZE,
                          f"chunk of {len(r.data)} bytes")
                    got.update(r.data)
                    n += len(r.data)
                    count += 1
                else:
                    last = r
            t2 = time.monotonic()
            check(last is not None and last.status == fedn.OK
                  and not last.data, f"download terminator {last}")
            check(n == size, f"downloaded {n} bytes, uploaded {size}")
            check(got.digest() == sent.digest(), "downloaded bytes differ")
            check(count >= size // CHUNK_SIZE, f"{count} chunks")
            print(f"300 MB: upload {size / (t1 - t0) / 1e6:.0f} MB/s, "
                  f"download {size / (t2 - t1) / 1e6:.0f} MB/s (Python "
                  f"client)", flush=True)
        finally:
            c.close()


def case_unknown_model():
    """A download of an unknown model: exactly one FAILED, then the end."""
    with TempDir("rondo-conf-") as d, Combiner(d) as comb:
        c = FednClient(comb.address, "asker")
        try:
            msgs = c.download_messages("no-such-model", timeout=30)
            check(len(msgs) == 1, f"{len(msgs)} messages: {msgs}")
            check(msgs[0].status == fedn.FAILED, f"status {msgs[0].status}")
            check(msgs[0].message != "", "FAILED without a message")
            check(not msgs[0].data, "FAILED with data")
            check(c.download("no-such-model", timeout=30) is None,
                  "FEDn's download loop did not end with None")
        finally:
            c.close()


def case_oversize_upload():
    """An upload over --max-model-bytes is refused; nothing is stored."""
    limit = CHUNK_SIZE
    with TempDir("rondo-conf-") as d:
        with Combiner(d, args=["--max-model-bytes", str(limit)]) as comb:
            c = FednClient(comb.address, "uploader")
            try:
                try:
                    c.upload("too-big", b"x" * (3 * CHUNK_SIZE), timeout=60)
                    raise AssertionError("an oversize upload was accepted")
                except grpc.RpcError as e:
                    check(e.code() == grpc.StatusCode.RESOURCE_EXHAUSTED,
                          f"code {e.code()}: {e.details()}")
                    check("max_model_bytes" in e.details(),
                          f"unclear reason {e.details()!r}")
                msgs = c.download_messages("too-big", timeout=30)
                check(len(msgs) == 1 and msgs[0].status == fedn.FAILED,
                      f"the refused model is downloadable: {msgs[:1]}")
                # The limit is the cause: a model within it is stored.
                small = b"y" * (limit // 2)
                check(c.upload("fits", small).status == fedn.OK,
                      "a model within the limit was refused")
                check(c.download("fits") == small, "the small model differs")
            finally:
                c.close()
        # The combiner is gone: its store lists the small model only.
        out = subprocess.run(
            [harness.rondo_binary(), "store", "--db",
             os.path.join(d, "combiner-db"), "list"],
            capture_output=True, text=True, timeout=60)
        check(out.returncode == 0, f"rondo store list: {out.stderr}")
        ids = [line.split("\t")[0] for line in out.stdout.splitlines()]
        check(ids == ["fits"], f"stored models {ids}")


# -- ModelRequests in wire format, for forms protobuf's serializer never
# writes (the combiner reads Upload's messages from their bytes).

def wire_varint(n):
    out = bytearray()
    while n >= 0x80:
        out.append((n & 0x7f) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def wire_tag(field, wire_type):
    """Wire types: 0 varint, 1 fixed64, 2 length-delimited, 3/4 start/end
    group, 5 fixed32."""
    return wire_varint(field << 3 | wire_type)


def wire_bytes(field, data):
    if isinstance(data, str):
        data = data.encode()
    return wire_tag(field, 2) + wire_varint(len(data)) + data


def wire_number(field, value):
    return wire_tag(field, 0) + wire_varint(value)


def raw_upload(client, messages, timeout=60):
    """Uploads `messages`, ModelRequests already in wire format (bytes), as
    they are. Returns the ModelResponse; raises grpc.RpcError when the
    combiner refuses the upload."""
    upload = client.channel.stream_unary(
        "/fedn.ModelService/Upload", request_serializer=None,
        response_deserializer=fedn.ModelResponse.FromString)
    return upload(iter(messages), metadata=client.metadata, timeout=timeout)


def stored_models(workdir):
    """The ids in a stopped combiner's store (`rondo store list`)."""
    out = subprocess.run(
        [harness.rondo_binary(), "store", "--db",
         os.path.join(workdir, "combiner-db"), "list"],
        capture_output=True, text=True, timeout=60)
    check(out.returncode == 0, f"rondo store list: {out.stderr}")
    return [line.split("\t")[0] for line in out.stdout.splitlines()]


def case_upload_wire_forms():
    """ModelRequests that protobuf parses but its serializer never writes
    (fields in reverse order, repeated fields, unknown fields of every wire
    type, a known field number with another wire type, chunks of odd
    sizes) store exactly the bytes protobuf reads from them."""
    rng = random.Random(11)
    chunks = [rng.randbytes(n) for n in (CHUNK_SIZE - 3, CHUNK_SIZE, 1,
                                         12345, CHUNK_SIZE // 2 + 1)]
    mid = "wire-forms"
    sender = fedn.Client(name="odd", client_id="odd",
                         role=fedn.CLIENT).SerializeToString()
    group = (wire_tag(12, 3) + wire_number(1, 5) + wire_bytes(2, b"q")
             + wire_tag(13, 3) + wire_tag(13, 4) + wire_tag(12, 4))
    messages = [
        # Reverse order: status and id before the data.
        wire_number(5, fedn.IN_PROGRESS) + wire_bytes(4, mid)
        + wire_bytes(1, sender) + wire_bytes(3, chunks[0]),
        # A decoy data field, id and status that later ones override, and
        # unknown fields around and between them.
        wire_bytes(3, b"decoy" * 1000) + wire_number(9, 12345)
        + wire_bytes(4, "another-id") + wire_number(5, fedn.FAILED)
        + wire_tag(10, 1) + b"\xff" * 8 + wire_bytes(3, chunks[1]) + group
        + wire_tag(14, 5) + b"\x80" * 4 + wire_bytes(4, mid)
        + wire_number(5, fedn.IN_PROGRESS)
        # data as a varint and id as fixed32: unknown fields to protobuf.
        + wire_number(3, 7) + wire_tag(4, 5) + b"xxxx"
        + wire_bytes(15, b"\x00" * 100),
        # What protobuf's serializer writes, with sender and receiver.
        fedn.ModelRequest(sender=fedn.Client(name="odd"),
                          receiver=fedn.Client(name="combiner"), id=mid,
                          data=chunks[2],
                          status=fedn.IN_PROGRESS).SerializeToString(),
        wire_bytes(4, mid) + wire_bytes(3, chunks[3])
        + wire_number(5, fedn.IN_PROGRESS),
        wire_bytes(3, chunks[4]) + wire_number(5, fedn.IN_PROGRESS)
        + wire_bytes(4, mid) + wire_number(9, 1),
        # The terminator, with an explicitly empty data field after a
        # non-empty one (the last wins) and an unknown field.
        wire_bytes(3, b"gone") + wire_number(5, fedn.OK) + wire_bytes(4, mid)
        + wire_bytes(3, b"") + wire_bytes(16, b"end"),
    ]
    # What protobuf (Python's) reads from each: the chunks, then the
    # terminator.
    parsed = [fedn.ModelRequest.FromString(m) for m in messages]
    check([p.data for p in parsed] == chunks + [b""],
          "protobuf reads other data from the crafted messages")
    check(all(p.id == mid for p in parsed), "crafted ids")
    check([p.status for p in parsed] == [fedn.IN_PROGRESS] * 5 + [fedn.OK],
          "crafted statuses")
    model_bytes = b"".join(chunks)
    with TempDir("rondo-conf-") as d, Combiner(d) as comb:
        c = FednClient(comb.address, "odd")
        try:
            reply = raw_upload(c, messages)
            check(reply.status == fedn.OK and reply.id == mid,
                  f"upload reply {reply}")
            check(reply.message == f"stored {len(model_bytes)} bytes",
                  f"upload reply message {reply.message!r}")
            got = c.download(mid)
            check(got is not None and len(got) == len(model_bytes),
                  f"downloaded {None if got is None else len(got)} bytes, "
                  f"uploaded {len(model_bytes)}")
            check(got == model_bytes, "the stored model's bytes differ")
        finally:
            c.close()


def case_malformed_upload():
    """A message that is not a ModelRequest (truncated, a bad wire type),
    also one after the terminator, is refused with INVALID_ARGUMENT naming
    the model and the fault; nothing of it is stored."""
    chunk = random.Random(3).randbytes(CHUNK_SIZE)

    def good(mid, data=chunk, status=fedn.IN_PROGRESS):
        return fedn.ModelRequest(id=mid, data=data,
                                 status=status).SerializeToString()

    cases = [
        # A good chunk, then one whose data field claims more bytes than
        # the message holds.
        ("truncated", [good("truncated"),
                       wire_bytes(4, "truncated") + wire_tag(3, 2)
                       + wire_varint(100000) + b"only a few bytes"],
         "malformed ModelRequest: field 3 (data) is truncated"),
        # The first message: an id, then a tag of wire type 7.
        ("bad-wire-type", [wire_bytes(4, "bad-wire-type")
                           + wire_tag(9, 7) + b"\x00" * 10],
         "malformed ModelRequest: field 9 has the invalid wire type 7"),
        # A complete model, then a truncated message after the terminator.
        ("after-end", [good("after-end"), good("after-end", b"", fedn.OK),
                       good("after-end")[:100]],
         "a message after the terminator"),
    ]
    with TempDir("rondo-conf-") as d:
        with Combiner(d) as comb:
            c = FednClient(comb.address, "uploader")
            try:
                for mid, messages, reason in cases:
                    bad = messages[-1]
                    try:
                        fedn.ModelRequest.FromString(bad)
                        raise AssertionError(f"{mid}: protobuf parses the "
                                             f"malformed message")
                    except DecodeError:
                        pass
                    try:
                        raw_upload(c, messages)
                        raise AssertionError(f"{mid}: a malformed upload "
                                             f"was accepted")
                    except grpc.RpcError as e:
                        check(e.code() == grpc.StatusCode.INVALID_ARGUMENT,
                              f"{mid}: code {e.code()}: {e.details()}")
                        check(f"upload of model {mid}: " in e.details()
                              and reason in e.details(),
                              f"{mid}: unclear reason {e.details()!r}")
                    msgs = c.download_messages(mid, timeout=30)
                    check(len(msgs) == 1 and msgs[0].status == fedn.FAILED,
                          f"{mid}: the refused model is downloadable")
                # The combiner still takes a good upload, also under a
                # refused id.
                check(c.upload("truncated", chunk).status == fedn.OK,
                      "a good upload after the malformed ones failed")
                check(c.download("truncated") == chunk,
                      "the good model differs")
            finally:
                c.close()
        check(stored_models(d) == ["truncated"],
              f"stored models {stored_models(d)}")


def case_malformed_meta():
    """ModelUpdates with malformed meta get an error Response and never reach
    the aggregator; sent by a client that does not own the task they name,
    they leave the task open, and its owner's good update is aggregated."""
    with TempDir("rondo-conf-") as d, Combiner(d) as comb:
        admin = FednClient(comb.address, "admin")
        admin.upload("seed", model(0.0, 0.0))
        (a,) = started_clients(comb.address, "client-a")
        stranger = FednClient(comb.address, "client-x")
        try:
            rnd = RoundThread(comb.address, {
                "round_id": "1", "session_id": SESSION, "model_id": "seed",
                "round_timeout": 60, "clients_required": 1,
                "validate": "false"})
            task = a.next_task(60)
            check_task(task, "client-a", "seed", fedn.MODEL_UPDATE, "1")
            check(a.upload("upd", model(7.0, 7.0)).status == fedn.OK,
                  "update upload")
            bad = {
                "not json": "not JSON",
                "[1, 2]": "not a JSON object",
                json.dumps({"config": task.data}):
                    "training_metadata is missing",
                json.dumps({"training_metadata": {"epochs": 1}}):
                    "num_examples is missing",
                json.dumps({"training_metadata": {"num_examples": "10"}}):
                    "is not a number",
                json.dumps({"training_metadata": {"num_examples": 0}}):
                    "finite number > 0",
            }
            for meta, reason in bad.items():
                r = stranger.send_model_update(task, "upd", meta)
                check(r.startswith("error: malformed meta") and reason in r,
                      f"meta {meta!r} answered {r!r}")
            r = a.send_model_update(task, "upd", training_meta(10, task.data))
            check(r == "accepted", f"the good update answered {r!r}")
            rec = rnd.result(90)
            check(rec["status"] == "success", f"round {rec}")
            check(rec["nr_aggregated_models"] == "1", f"round {rec}")
            check(rec["clients_rejected"] == [], f"round {rec}")
            avg = read_npz(admin.download(rec["model_id"]))
            check(near(avg["0"], 7.0), f"aggregate {avg['0'][:3]}")
        finally:
            a.close()
            stranger.close()
            admin.close()


def case_refused_update():
    """An update the combiner's edge refuses (num_examples 0) resolves its
    task at once: the client is listed as rejected with the reason, and the
    round ends as soon as the other client answered, long before its
    round_timeout."""
    with TempDir("rondo-conf-") as d, Combiner(d) as comb:
        admin = FednClient(comb.address, "admin")
        admin.upload("seed", model(0.0, 0.0))
        a, b = started_clients(comb.address, "client-a", "client-b")
        try:
            t0 = time.monotonic()
            rnd = RoundThread(comb.address, {
                "round_id": "1", "session_id": SESSION, "model_id": "seed",
                "round_timeout": 300, "clients_required": 1,
                "validate": "false"})
            task_a = a.next_task(60)
            task_b = b.next_task(60)
            check_task(task_a, "client-a", "seed", fedn.MODEL_UPDATE, "1")
            check_task(task_b, "client-b", "seed", fedn.MODEL_UPDATE, "1")
            check(a.upload("upd-a", model(9.0, 9.0)).status == fedn.OK,
                  "a's upload")
            zero = json.dumps({"training_metadata": {"num_examples": 0},
                               "config": task_a.data})
            r = a.send_model_update(task_a, "upd-a", zero)
            check(r.startswith("error: malformed meta") and "> 0" in r,
                  f"num_examples 0 answered {r!r}")
            check(b.upload("upd-b", model(2.0, 2.0)).status == fedn.OK,
                  "b's upload")
            r = b.send_model_update(task_b, "upd-b",
                                    training_meta(10, task_b.data))
            check(r == "accepted", f"b's update answered {r!r}")
            rec = rnd.result(60)
            took = time.monotonic() - t0
            check(took < 60, f"the round took {took:.1f} s: it waited for "
                             f"the refused task")
            check(rec["status"] == "success", f"round {rec}")
            check(rec["nr_aggregated_models"] == "1", f"round {rec}")
            check(rec["clients_silent"] == [], f"round {rec}")
            rejected = rec["clients_rejected"]
            check(len(rejected) == 1 and rejected[0]["client_id"]
                  == "client-a", f"rejected {rejected}")
            check("num_examples" in rejected[0]["reason"]
                  and "refused at the edge" in rejected[0]["reason"],
                  f"reason {rejected[0]['reason']!r}")
            avg = read_npz(admin.download(rec["model_id"]))
            check(near(avg["0"], 2.0), f"aggregate {avg['0'][:3]}")
        finally:
            a.close()
            b.close()
            admin.close()


def case_fedn024_validation():
    """Validations shaped like FEDn 0.24's client sends them (sender.name
    only; the client id in the gRPC `client` metadata) are accepted and
    recorded under the client's id."""
    with TempDir("rondo-conf-") as d, Combiner(d) as comb:
        admin = FednClient(comb.address, "admin")
        admin.upload("seed", model(0.0, 0.0))
        uid = "5b0e7d2c-9a41-4c56-8f0e-1d2a3b4c5d6e"
        v = FednClient(comb.address, "cli24-1", client_id=uid)
        v.start()
        try:
            wait_until(lambda: v.heartbeats, 10, "a heartbeat reply")
            rnd = RoundThread(comb.address, {
                "round_id": "v1", "session_id": SESSION, "model_id": "seed",
                "task": "validation", "round_timeout": 120,
                "clients_required": 1})
            task = v.next_task(60)
            check(task is not None and task.type == fedn.MODEL_VALIDATION,
                  f"validation task {task}")
            msg = fedn.ModelValidation(
                sender=fedn.Client(name="cli24-1", role=fedn.CLIENT),
                receiver=task.sender, model_id=task.model_id,
                data=json.dumps({"test_accuracy": 0.75}),
                correlation_id=task.correlation_id,
                session_id=task.session_id)
            msg.timestamp.GetCurrentTime()
            r = v.combiner.SendModelValidation(
                msg, metadata=[("client", uid)], timeout=60).response
            check(r == "accepted", f"the validation answered {r!r}")
            rec = rnd.result(60)
            check(rec["status"] == "success", f"round {rec}")
            check(rec["clients_accepted"] == [uid], f"round {rec}")
            vals = rec["validations"]
            check(len(vals) == 1 and vals[0]["client_id"] == uid
                  and vals[0]["metrics"] == {"test_accuracy": 0.75},
                  f"validations {vals}")
        finally:
            v.close()
            admin.close()


def case_restart_mid_round():
    """A combiner killed (SIGKILL) while its round runs records that round,
    when it starts again, as failed ("interrupted: ...") with the clients
    that had its tasks, and its next round succeeds."""
    with TempDir("rondo-conf-") as d, Combiner(d) as comb:
        admin = FednClient(comb.address, "admin")
        admin.upload("seed", model(0.0, 0.0))
        admin.close()
        a, b = started_clients(comb.address, "client-a", "client-b")
        rnd = RoundThread(comb.address, {
            "round_id": "1", "session_id": SESSION, "model_id": "seed",
            "round_timeout": 300, "clients_required": 2,
            "validate": "false"}, timeout=30)
        check(a.next_task(60) is not None, "a got no task")
        check(b.next_task(60) is not None, "b got no task")
        comb.proc.kill()
        comb.proc.wait(timeout=10)
        a.close()
        b.close()
        try:
            rnd.result(30)
        except Exception:
            pass  # the call broke with the process
        os.remove(comb.port_file)  # the killed process left its port file
        comb.start()
        wait_until(lambda: "interrupted: combiner combiner-conf restarted"
                   in comb.log(200), 10, "the interrupted round in the log")
        line = [x for x in comb.log(200).splitlines()
                if "interrupted: combiner" in x][-1]
        check("round 1 " in line and "2 client(s) had its tasks" in line,
              f"log line {line!r}")
        admin = FednClient(comb.address, "admin")
        (c,) = started_clients(comb.address, "client-c")
        try:
            rnd = RoundThread(comb.address, {
                "round_id": "2", "session_id": SESSION, "model_id": "seed",
                "round_timeout": 60, "clients_required": 1,
                "validate": "false"})
            task = c.next_task(60)
            check_task(task, "client-c", "seed", fedn.MODEL_UPDATE, "2")
            check(c.upload("upd-c", model(3.0, 3.0)).status == fedn.OK,
                  "c's upload")
            r = c.send_model_update(task, "upd-c",
                                    training_meta(5, task.data))
            check(r == "accepted", f"c's update answered {r!r}")
            rec = rnd.result(60)
            check(rec["status"] == "success", f"round {rec}")
        finally:
            c.close()
            admin.close()


def exact_fedavg(updates, descr):
    """FedAvg as Rondo computes it (model/weighted_sum.hpp): per element a
    float64 sum acc += w * x in the given order, divided once by the total
    weight and rounded once to the model's dtype. Python floats are IEEE
    float64 and struct's "f" rounds to nearest, so this is bit for bit."""
    fmt = {"<f4": "f", "<f8": "d"}[descr]
    total = sum(w for w, _ in updates)
    n = len(updates[0][1])
    acc = [0.0] * n
    for w, xs in updates:
        for i, x in enumerate(xs):
            acc[i] = acc[i] + w * x
    out = [a / total for a in acc]
    return struct.unpack(f"<{n}{fmt}", struct.pack(f"<{n}{fmt}", *out))


def case_streamed_updates():
    """Model updates are decoded as they are uploaded (DEFLATE as FEDn's
    numpyhelper writes them, and STORED), float32 and float64: the round's
    aggregate is bit for bit the FedAvg of the accepted ones, in arrival
    order; an update holding NaN and a truncated DEFLATE archive are
    rejected with their reasons and do not count; numpy's np.load (what
    FEDn's numpyhelper uses) reads the result back bit for bit."""
    rng = random.Random(14)
    for descr in ("<f4", "<f8"):
        fmt = {"<f4": "f", "<f8": "d"}[descr]
        size = 70000  # > 256 KiB of float32: several 1 MiB-or-less chunks

        def vals():
            xs = [rng.uniform(-3, 3) for _ in range(size)]
            # Exactly representable in the model's dtype.
            return list(struct.unpack(f"<{size}{fmt}",
                                      struct.pack(f"<{size}{fmt}", *xs)))

        def npz(xs, compressed):
            return npz_bytes({"0": xs}, compressed, descr)

        with TempDir("rondo-conf-") as d, Combiner(d) as comb:
            admin = FednClient(comb.address, "admin")
            admin.upload("seed", npz([0.0] * size, False))
            names = ["c-deflate", "c-stored", "c-nan", "c-truncated"]
            clients = started_clients(comb.address, *names)
            try:
                rnd = RoundThread(comb.address, {
                    "round_id": "1", "session_id": SESSION,
                    "model_id": "seed", "round_timeout": 60,
                    "clients_required": 2, "validate": "false"})
                tasks = {c.name: c.next_task(60) for c in clients}
                for c in clients:
                    check_task(tasks[c.name], c.name, "seed",
                               fedn.MODEL_UPDATE, "1")
                xa, xb = vals(), vals()
                nan = vals()
                nan[size // 2] = float("nan")
                truncated = npz(vals(), True)
                truncated = truncated[: len(truncated) // 2]
                plan = [  # client, bytes, num_examples, expected answer
                    (clients[0], npz(xa, True), 10, "accepted"),
                    (clients[2], npz(nan, True), 5, "NaN"),
                    (clients[3], truncated, 5, "not a valid model"),
                    (clients[1], npz(xb, False), 30, "accepted"),
                ]
                for c, data, n, expected in plan:
                    uid = f"{c.name}-update"
                    up = c.upload(uid, data)
                    check(up.status == fedn.OK, f"{uid} upload {up}")
                    r = c.send_model_update(tasks[c.name], uid,
                                            training_meta(n, tasks[c.name]
                                                          .data))
                    check(expected in r, f"{uid} answered {r!r}, "
                                         f"expected {expected!r}")
                rec = rnd.result(90)
                check(rec["status"] == "success", f"round {rec}")
                check(rec["nr_aggregated_models"] == "2", f"round {rec}")
                rejected = {r["client_id"]: r["reason"]
                            for r in rec["clients_rejected"]}
                check(set(rejected) == {"c-nan", "c-truncated"},
                      f"rejected {rejected}")
                check(float(rec["time_model_aggregation"])
                      < float(rec["time_combination"]),
                      f"aggregation time {rec['time_model_aggregation']} "
                      f"is not within the round's "
                      f"{rec['time_combination']}")
                data = admin.download(rec["model_id"])
                got = read_npz(data)["0"]
                want = exact_fedavg([(10, xa), (30, xb)], descr)
                bad = [i for i in range(size) if got[i] != want[i]]
                check(not bad, f"{descr}: {len(bad)} values differ from "
                               f"the exact FedAvg, e.g. index {bad[:1]}")
                # FEDn's numpyhelper loads models with np.load.
                try:
                    import io
                    import numpy as np
                except ImportError:
                    raise AssertionError("numpy is missing: install Debian's "
                                         "python3-numpy (deploy/"
                                         "install-deps.sh does)")
                with np.load(io.BytesIO(data)) as z:
                    check(z["0"].dtype == np.dtype(descr)
                          and z["0"].shape == (size,)
                          and z["0"].tobytes() == struct.pack(
                              f"<{size}{fmt}", *want),
                          "numpy reads a different aggregate")
            finally:
                for c in clients:
                    c.close()
                admin.close()


def case_disconnect_mid_round():
    """A client that goes away mid-round: the round still ends, at once,
    with a recorded terminal state that names the silent client."""
    with TempDir("rondo-conf-") as d, Combiner(d) as comb:
        admin = FednClient(comb.address, "admin")
        admin.upload("seed", model(0.0, 0.0))
        a, b = started_clients(comb.address, "client-a", "client-b")
        try:
            timeout = 60
            t0 = time.monotonic()
            rnd = RoundThread(comb.address, {
                "round_id": "1", "session_id": SESSION, "model_id": "seed",
                "round_timeout": timeout, "clients_required": 1,
                "buffer_size": -1, "validate": "false"})
            ta, tb = a.next_task(60), b.next_task(60)
            check_task(ta, "client-a", "seed", fedn.MODEL_UPDATE, "1")
            check_task(tb, "client-b", "seed", fedn.MODEL_UPDATE, "1")
            b.send_status("\t Starting processing of training request", tb)
            b.close()  # gone without an answer
            r = a.train(ta, lambda m: model(3.0, 3.0), 10)
            check(r == "accepted", f"update of a: {r}")
            rec = rnd.result(90)
            elapsed = time.monotonic() - t0
            check(rec["status"] == "success", f"round {rec}")
            check(rec["nr_aggregated_models"] == "1", f"round {rec}")
            check(rec["clients_silent"] == ["client-b"],
                  f"silent {rec['clients_silent']}")
            check(float(rec["ended_at"]) > 0, f"round {rec}")
            check(elapsed < timeout / 2,
                  f"the round waited {elapsed:.1f} s: the disconnect was "
                  f"not noticed")
        finally:
            a.close()
            admin.close()


CASES = {
    "training_and_validation": case_training_and_validation,
    "large_model": case_large_model,
    "unknown_model": case_unknown_model,
    "oversize_upload": case_oversize_upload,
    "upload_wire_forms": case_upload_wire_forms,
    "malformed_upload": case_malformed_upload,
    "malformed_meta": case_malformed_meta,
    "refused_update": case_refused_update,
    "fedn024_validation": case_fedn024_validation,
    "restart_mid_round": case_restart_mid_round,
    "disconnect_mid_round": case_disconnect_mid_round,
    "streamed_updates": case_streamed_updates,
}

if __name__ == "__main__":
    sys.exit(harness.run_cases(CASES, sys.argv[1:]))
