"""A small FEDn-protocol test client: what FEDn's Python client (package
`fedn`, 0.9 and later) does on the wire, written here so the conformance
tests can drive a Rondo combiner with it (see FEDN_WIRE.md).

Like FEDn's client it
- sends gRPC metadata `client: <client_id>` on every call, and pings every
  5 s (keepalive, also without calls);
- sends a heartbeat every 2 s (`SendHeartbeat`);
- opens `TaskStream` with a ClientAvailableMessage and keeps it open;
- calls `SendStatus` before and after each task;
- moves models in chunks of at most 1 MiB: upload as IN_PROGRESS chunks
  then one OK terminator without data; download reading IN_PROGRESS chunks
  until OK, stopping at FAILED, and waiting (bounded) while UNKNOWN;
- reports training with `SendModelUpdate` and FEDn's meta JSON, and
  validation with `SendModelValidation` and a JSON object of metrics.

It needs the generated stubs `fedn_pb2` / `fedn_pb2_grpc` on sys.path and
Debian's python3-grpcio; numpy is not used.
"""

import datetime
import json
import queue
import threading
import time

import grpc

import fedn_pb2 as fedn
import fedn_pb2_grpc as rpc

CHUNK_SIZE = 1 << 20  # FEDn's transfer chunk size

# FEDn's client channel options: keepalive pings every 5 s, also between
# calls, and messages up to the chunk size plus overhead.
CHANNEL_OPTIONS = [
    ("grpc.keepalive_time_ms", 5000),
    ("grpc.keepalive_timeout_ms", 10000),
    ("grpc.keepalive_permit_without_calls", 1),
    ("grpc.http2.max_pings_without_data", 0),
    ("grpc.max_receive_message_length", 8 << 20),
    ("grpc.max_send_message_length", 8 << 20),
]


def fedn_timestamp():
    """A time stamp as FEDn writes string time stamps: str(datetime.now())."""
    return str(datetime.datetime.now())


def training_meta(num_examples, task_data, fetch=0.01, train=0.1,
                  upload=0.01):
    """The `meta` JSON of a ModelUpdate as FEDn's client builds it."""
    return json.dumps({
        "training_metadata": {"num_examples": num_examples, "epochs": 1,
                              "batch_size": 32},
        "config": task_data,
        "fetch_model": fetch,
        "exec_training": train,
        "upload_model": upload,
        "processing_time": fetch + train + upload,
    })


class FednClient:
    """One FEDn-protocol client of a combiner at `address` ("host:port").

    `start()` begins heartbeats and the task stream; tasks are read on a
    thread and queued for `next_task`. `close()` ends everything (the
    client goes away: its stream is cancelled, its channel closed).
    """

    def __init__(self, address, name, client_id=None, data="",
                 heartbeat_interval=2.0, credentials=None, token=None,
                 scheme="Bearer"):
        """`credentials`: grpc channel credentials for TLS (FEDn: port 443
        with FEDN_GRPC_ROOT_CERT_PATH); `token`: sent as metadata
        `authorization: <scheme> <token>` on every call."""
        self.name = name
        self.client_id = client_id or name
        self.data = data
        self.heartbeat_interval = heartbeat_interval
        if credentials is not None:
            self.channel = grpc.secure_channel(address, credentials,
                                               options=CHANNEL_OPTIONS)
        else:
            self.channel = grpc.insecure_channel(address,
                                                 options=CHANNEL_OPTIONS)
        self.metadata = [("client", self.client_id)]
        if token is not None:
            self.metadata.append(("authorization", f"{scheme} {token}"))
        self.connector = rpc.ConnectorStub(self.channel)
        self.combiner = rpc.CombinerStub(self.channel)
        self.models = rpc.ModelServiceStub(self.channel)
        self.tasks = queue.Queue()
        self.heartbeats = []        # response texts
        self.heartbeat_errors = []  # RpcErrors of heartbeats
        self.statuses = []          # (text, log level, response text)
        self.stream_error = None    # how the task stream ended, if not OK
        self.stream_ended = threading.Event()
        self._stop = threading.Event()
        self._stream = None
        self._threads = []

    # -- identity ------------------------------------------------------------

    def sender(self):
        """This client as a FEDn `Client` (role CLIENT)."""
        return fedn.Client(name=self.name, role=fedn.CLIENT,
                           client_id=self.client_id)

    # -- liveness and tasks --------------------------------------------------

    def start(self, stream=True):
        """Starts the heartbeat thread and (unless `stream` is false) the
        task stream."""
        self._spawn(self._heartbeat_loop)
        if stream:
            self.open_stream()

    def open_stream(self):
        """Opens the TaskStream; tasks land in `self.tasks`."""
        hello = fedn.ClientAvailableMessage(sender=self.sender(),
                                            data=self.data,
                                            timestamp=fedn_timestamp())
        self._stream = self.combiner.TaskStream(hello,
                                                metadata=self.metadata)
        self._spawn(self._read_tasks)

    def next_task(self, timeout):
        """The next task, or None when none came within `timeout` seconds."""
        try:
            return self.tasks.get(timeout=timeout)
        except queue.Empty:
            return None

    def heartbeat(self):
        """One SendHeartbeat; returns the response text."""
        hb = fedn.Heartbeat(sender=self.sender(), memory_utilisation=0.1,
                            cpu_utilisation=0.2)
        return self.connector.SendHeartbeat(hb, metadata=self.metadata,
                                            timeout=10).response

    def send_status(self, text, task, log_level=fedn.INFO, type_=None):
        """SendStatus about `task`, as FEDn's client calls it before and
        after each task. Raises on an error status (FEDn's task loop dies
        then)."""
        st = fedn.Status(sender=self.sender(), status=text,
                         log_level=log_level, data=task.data,
                         correlation_id=task.correlation_id,
                         type=task.type if type_ is None else type_,
                         session_id=task.session_id)
        st.timestamp.GetCurrentTime()
        reply = self.connector.SendStatus(st, metadata=self.metadata,
                                          timeout=10)
        self.statuses.append((text, log_level, reply.response))
        return reply.response

    def close(self):
        """Goes away: stops heartbeats, cancels the task stream, closes the
        channel."""
        self._stop.set()
        if self._stream is not None:
            self._stream.cancel()
        for t in self._threads:
            t.join(timeout=15)
        self.channel.close()

    # -- models --------------------------------------------------------------

    def upload_chunks(self, model_id, chunks, timeout=300):
        """Uploads the byte strings `chunks` (each at most 1 MiB) as
        `model_id`, then the OK terminator. Returns the ModelResponse;
        raises grpc.RpcError when the combiner refuses the upload."""
        def requests():
            for data in chunks:
                yield fedn.ModelRequest(id=model_id, data=data,
                                        status=fedn.IN_PROGRESS)
            yield fedn.ModelRequest(id=model_id, status=fedn.OK)
        return self.models.Upload(requests(), metadata=self.metadata,
                                  timeout=timeout)

    def upload(self, model_id, data, timeout=300):
        """Uploads the bytes `data` as `model_id` in 1 MiB chunks."""
        return self.upload_chunks(
            model_id, (data[i:i + CHUNK_SIZE]
                       for i in range(0, len(data), CHUNK_SIZE)), timeout)

    def download_messages(self, model_id, timeout=300):
        """Every ModelResponse of a Download of `model_id`, until the stream
        ends (a stream that ends with an error status raises)."""
        return list(self.models.Download(fedn.ModelRequest(id=model_id),
                                         metadata=self.metadata,
                                         timeout=timeout))

    def download(self, model_id, timeout=300, unknown_wait=20):
        """Downloads `model_id` as FEDn's client does. Returns its bytes, or
        None when the combiner answered FAILED (or UNKNOWN for longer than
        `unknown_wait` seconds)."""
        start = time.monotonic()
        parts = []
        for r in self.models.Download(fedn.ModelRequest(id=model_id),
                                      metadata=self.metadata,
                                      timeout=timeout):
            if r.status == fedn.IN_PROGRESS:
                if len(r.data) > CHUNK_SIZE:
                    raise AssertionError(f"download chunk of {len(r.data)} "
                                         f"bytes exceeds 1 MiB")
                parts.append(r.data)
            elif r.status == fedn.OK:
                return b"".join(parts)
            elif r.status == fedn.FAILED:
                return None
            elif r.status == fedn.UNKNOWN:
                if time.monotonic() - start >= unknown_wait:
                    return None
        raise AssertionError(f"download of {model_id}: the stream ended "
                             f"without OK or FAILED")

    # -- answers -------------------------------------------------------------

    def send_model_update(self, task, update_id, meta):
        """SendModelUpdate for training `task` (FEDn's fields); returns the
        response text."""
        u = fedn.ModelUpdate(sender=self.sender(), receiver=task.sender,
                             model_id=task.model_id,
                             model_update_id=update_id,
                             correlation_id=task.correlation_id,
                             timestamp=fedn_timestamp(), meta=meta,
                             config=task.data)
        return self.combiner.SendModelUpdate(u, metadata=self.metadata,
                                             timeout=60).response

    def send_model_validation(self, task, metrics):
        """SendModelValidation of `metrics` (a dict) for validation `task`;
        returns the response text."""
        v = fedn.ModelValidation(sender=self.sender(), receiver=task.sender,
                                 model_id=task.model_id,
                                 data=json.dumps(metrics),
                                 correlation_id=task.correlation_id,
                                 session_id=task.session_id)
        v.timestamp.GetCurrentTime()
        return self.combiner.SendModelValidation(v, metadata=self.metadata,
                                                 timeout=60).response

    # -- FEDn's task loop ----------------------------------------------------

    def train(self, task, update_fn, num_examples):
        """Serves training `task` as FEDn's client does: status, download
        the global model, `update_fn(bytes) -> bytes`, upload the result
        under a new id, SendModelUpdate with FEDn's meta, status. Returns
        the update's response text."""
        self.send_status("\t Starting processing of training request for "
                         f"model_id {task.model_id}", task)
        t0 = time.monotonic()
        model = self.download(task.model_id)
        if model is None:
            raise AssertionError(f"global model {task.model_id} could not be "
                                 f"downloaded")
        t1 = time.monotonic()
        updated = update_fn(model)
        t2 = time.monotonic()
        update_id = f"{self.client_id}-{task.correlation_id}"
        reply = self.upload(update_id, updated)
        if reply.status != fedn.OK:
            raise AssertionError(f"upload of {update_id}: {reply}")
        t3 = time.monotonic()
        meta = training_meta(num_examples, task.data, t1 - t0, t2 - t1,
                             t3 - t2)
        answer = self.send_model_update(task, update_id, meta)
        self.send_status("Model update completed.", task,
                         log_level=fedn.AUDIT)
        return answer

    def validate(self, task, metrics):
        """Serves validation `task`: status, download, SendModelValidation
        of `metrics`, status. Returns the validation's response text."""
        self.send_status("Processing validate request for model_id "
                         f"{task.model_id}", task)
        if self.download(task.model_id) is None:
            raise AssertionError(f"model {task.model_id} could not be "
                                 f"downloaded")
        answer = self.send_model_validation(task, metrics)
        self.send_status("Model validation completed.", task,
                         log_level=fedn.AUDIT)
        return answer

    # -- threads -------------------------------------------------------------

    def _spawn(self, fn):
        t = threading.Thread(target=fn, daemon=True)
        t.start()
        self._threads.append(t)

    def _heartbeat_loop(self):
        while not self._stop.is_set():
            try:
                self.heartbeats.append(self.heartbeat())
            except grpc.RpcError as e:
                self.heartbeat_errors.append(e)
            self._stop.wait(self.heartbeat_interval)

    def _read_tasks(self):
        try:
            for task in self._stream:
                self.tasks.put(task)
        except grpc.RpcError as e:
            if e.code() != grpc.StatusCode.CANCELLED or not self._stop.is_set():
                self.stream_error = e
        finally:
            self.stream_ended.set()
