"""Process harness of the script-driven tests: finds the generated stubs
(or exits with ctest's skip code when Python's gRPC is missing), runs a real
`rondo combiner` on an ephemeral port, starts rounds on it through FEDn's
Control service, and runs `rondo client` processes.

Every wait is bounded: the port file (the combiner writes it once it
listens), process exits, and every gRPC call (deadlines).
"""

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time

# ctest's SKIP_RETURN_CODE for these tests (tests/CMakeLists.txt).
SKIP = 77


def skip(reason):
    """Ends the test as skipped (ctest reports it as such, not as passed)."""
    print(f"SKIP: {reason}", flush=True)
    sys.exit(SKIP)


def load_stubs():
    """Puts the build's generated stubs on sys.path. Skips when Python's
    gRPC or protobuf modules are missing or the build found no
    grpc_python_plugin; fails when the plugin exists but the stubs were not
    built."""
    try:
        import grpc  # noqa: F401
        import google.protobuf  # noqa: F401
    except ImportError as e:
        skip(f"{sys.executable} lacks a gRPC module ({e}); install Debian's "
             f"python3-grpcio and python3-protobuf")
    stubs = os.environ.get("RONDO_PY_STUBS", "")
    if not stubs:
        skip("the build found no grpc_python_plugin (Debian package "
             "protobuf-compiler-grpc), so there are no Python stubs")
    if not os.path.exists(os.path.join(stubs, "fedn_pb2_grpc.py")):
        print(f"error: no stubs in {stubs}: build the conformance_stubs "
              f"target (deploy/build.sh builds all targets)", flush=True)
        sys.exit(1)
    sys.path.insert(0, stubs)
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))


def rondo_binary():
    """The `rondo` executable under test (RONDO_BIN, set by ctest)."""
    path = os.environ.get("RONDO_BIN", "")
    if not path or not os.access(path, os.X_OK):
        print(f"error: RONDO_BIN={path!r} is not an executable; run through "
              f"ctest or set it", flush=True)
        sys.exit(1)
    return path


class TempDir:
    """A fresh directory, removed on exit unless RONDO_KEEP_TEST_DIRS is
    set (then its path is printed, for post-mortems)."""

    def __init__(self, prefix):
        self.path = tempfile.mkdtemp(prefix=prefix)

    def __enter__(self):
        return self.path

    def __exit__(self, *exc):
        if os.environ.get("RONDO_KEEP_TEST_DIRS"):
            print(f"kept {self.path}", flush=True)
        else:
            shutil.rmtree(self.path, ignore_errors=True)


def _tail(path, lines=40):
    try:
        with open(path, errors="replace") as f:
            return "".join(f.readlines()[-lines:])
    except OSError:
        return ""


class Combiner:
    """A `rondo combiner` process on 127.0.0.1, port 0, in `workdir`."""

    def __init__(self, workdir, name="combiner-conf", args=(),
                 log_level="info"):
        self.rondo = rondo_binary()
        self.workdir = workdir
        self.name = name
        self.db = os.path.join(workdir, "combiner-db")
        self.port_file = os.path.join(workdir, "combiner.port")
        self.log_path = os.path.join(workdir, "combiner.log")
        self.args = list(args)
        self.log_level = log_level
        self.proc = None
        self.port = None

    def start(self, timeout=30):
        """Starts the process and waits (bounded) for its port file."""
        log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(
            [self.rondo, "combiner", "--host", "127.0.0.1", "--port", "0",
             "--db", self.db, "--name", self.name, "--port-file",
             self.port_file, "--log-level", self.log_level] + self.args,
            stdout=log, stderr=subprocess.STDOUT)
        log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"combiner exited with "
                                     f"{self.proc.returncode}:\n"
                                     f"{self.log()}")
            try:
                with open(self.port_file) as f:
                    self.port = int(f.read().strip())
                return self
            except (OSError, ValueError):
                time.sleep(0.02)
        self.stop()
        raise AssertionError(f"combiner wrote no port file within {timeout} "
                             f"s:\n{self.log()}")

    @property
    def address(self):
        """"host:port" of the running combiner."""
        return f"127.0.0.1:{self.port}"

    def log(self, lines=60):
        """The last lines of the combiner's output."""
        return _tail(self.log_path, lines)

    def stop(self, timeout=30):
        """SIGTERM, then waits (bounded; SIGKILL after). Returns the exit
        code."""
        if self.proc is None or self.proc.poll() is not None:
            return None if self.proc is None else self.proc.returncode
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=10)
            raise AssertionError(f"combiner did not stop within {timeout} "
                                 f"s of SIGTERM:\n{self.log()}")

    def __enter__(self):
        return self.start()

    def __exit__(self, exc_type, *rest):
        """Stops the combiner; prints its log when the test failed, and
        fails the test when it did not exit cleanly."""
        code = self.stop()
        if exc_type is not None:
            print(f"--- combiner log ({self.log_path}) ---\n{self.log()}",
                  flush=True)
        elif code not in (0, None):
            raise AssertionError(f"combiner exited with {code}:\n"
                                 f"{self.log()}")


class RondoClient:
    """A `rondo client` process (the C++ client) serving a compute package."""

    def __init__(self, workdir, address, name, package, args=(), env=None):
        host, port = address.rsplit(":", 1)
        self.name = name
        self.log_path = os.path.join(workdir, f"client-{name}.log")
        work = os.path.join(workdir, f"work-{name}")
        os.makedirs(work, exist_ok=True)
        log = open(self.log_path, "ab")
        full_env = dict(os.environ)
        full_env.update(env or {})
        self.proc = subprocess.Popen(
            [rondo_binary(), "client", "--host", host, "--port", port,
             "--name", name, "--client-id", name, "--package", package,
             "--work-dir", work] + list(args),
            stdout=log, stderr=subprocess.STDOUT, env=full_env)
        log.close()

    def log(self, lines=60):
        """The last lines of the client's output."""
        return _tail(self.log_path, lines)

    def running(self):
        """Whether the process is still running."""
        return self.proc.poll() is None

    def stop(self, timeout=30):
        """SIGTERM, then waits (bounded). Returns the exit code."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        return self.proc.returncode


def control_stub(address, credentials=None):
    """A Control stub on a fresh channel to `address` (TLS with
    `credentials`)."""
    import grpc
    import fedn_pb2_grpc as rpc
    if credentials is not None:
        channel = grpc.secure_channel(address, credentials)
    else:
        channel = grpc.insecure_channel(address)
    grpc.channel_ready_future(channel).result(timeout=30)
    return rpc.ControlStub(channel)


def auth_metadata(token, scheme="Bearer"):
    """gRPC metadata carrying `token` (none when it is None)."""
    return [] if token is None else [("authorization", f"{scheme} {token}")]


def run_round(address, config, timeout=120, credentials=None, token=None):
    """Control.Start with `wait=true`: runs one round on the combiner and
    returns its record as a dict of parameters (JSON lists decoded).
    `credentials` (TLS) and `token` (an admin token) for a secured
    combiner."""
    import fedn_pb2 as fedn
    params = [fedn.Parameter(key=k, value=str(v)) for k, v in config.items()]
    params.append(fedn.Parameter(key="wait", value="true"))
    reply = control_stub(address, credentials).Start(
        fedn.ControlRequest(command=fedn.START, parameter=params),
        timeout=timeout, metadata=auth_metadata(token))
    rec = {p.key: p.value for p in reply.parameter}
    for key in ("clients_selected", "clients_accepted", "clients_silent",
                "clients_rejected", "validations"):
        if key in rec:
            rec[key] = json.loads(rec[key])
    return rec


class RoundThread:
    """`run_round` on its own thread; `result(timeout)` returns the record
    or raises what the call raised."""

    def __init__(self, address, config, timeout=120, **kwargs):
        self._out = {}
        self._thread = threading.Thread(target=self._run, daemon=True,
                                        args=(address, config, timeout,
                                              kwargs))
        self._thread.start()

    def _run(self, address, config, timeout, kwargs):
        try:
            self._out["record"] = run_round(address, config, timeout,
                                            **kwargs)
        except Exception as e:  # re-raised by result()
            self._out["error"] = e

    def result(self, timeout):
        """The round's record; fails after `timeout` seconds."""
        self._thread.join(timeout)
        if self._thread.is_alive():
            raise AssertionError(f"the round did not end within {timeout} s")
        if "error" in self._out:
            raise self._out["error"]
        return self._out["record"]


class Security:
    """Test fixtures of a secured combiner, in `workdir`: a CA, a server
    certificate for 127.0.0.1 and a client certificate, made with the
    `openssl` CLI (fixtures only: the product never shells out), an HS256
    secret file, and tokens minted with `rondo token create`."""

    def __init__(self, workdir):
        self.dir = os.path.join(workdir, "sec")
        os.makedirs(self.dir, exist_ok=True)
        self.secret_file = self.path("secret")
        with open(self.secret_file, "w") as f:
            f.write("s3cr3t-for-tests-" + "x" * 40 + "\n")
        self.ca, self.ca_key = self.path("ca.crt"), self.path("ca.key")
        self._openssl("req", "-x509", "-newkey", "ec", "-pkeyopt",
                      "ec_paramgen_curve:P-256", "-nodes", "-days", "2",
                      "-subj", "/CN=rondo test CA", "-keyout", self.ca_key,
                      "-out", self.ca, "-addext",
                      "basicConstraints=critical,CA:TRUE", "-addext",
                      "keyUsage=critical,keyCertSign,cRLSign")
        self.cert, self.key = self._issue("combiner", "IP:127.0.0.1",
                                          "serverAuth")
        self.client_cert, self.client_key = self._issue("client-c0",
                                                        "DNS:c0",
                                                        "clientAuth")

    def path(self, name):
        return os.path.join(self.dir, name)

    def _openssl(self, *args):
        r = subprocess.run(["openssl"] + list(args), capture_output=True,
                           text=True)
        if r.returncode != 0:
            raise AssertionError(f"openssl {' '.join(args)}: {r.stderr}")

    def _issue(self, name, san, usage):
        key, csr, crt = (self.path(name + ext)
                         for ext in (".key", ".csr", ".crt"))
        self._openssl("req", "-newkey", "ec", "-pkeyopt",
                      "ec_paramgen_curve:P-256", "-nodes", "-subj",
                      f"/CN={name}", "-keyout", key, "-out", csr)
        ext = self.path(name + ".ext")
        with open(ext, "w") as f:
            f.write(f"subjectAltName={san}\nextendedKeyUsage={usage}\n")
        self._openssl("x509", "-req", "-in", csr, "-CA", self.ca, "-CAkey",
                      self.ca_key, "-CAcreateserial", "-days", "2", "-out",
                      crt, "-extfile", ext)
        return crt, key

    def read(self, path):
        with open(path, "rb") as f:
            return f.read()

    def credentials(self, client_cert=False):
        """grpc channel credentials trusting the test CA (with the client
        certificate when `client_cert`)."""
        import grpc
        if client_cert:
            return grpc.ssl_channel_credentials(
                self.read(self.ca), self.read(self.client_key),
                self.read(self.client_cert))
        return grpc.ssl_channel_credentials(self.read(self.ca))

    def token(self, role="client", client=None, ttl="1h", secret_file=None):
        """A token from `rondo token create`."""
        args = [rondo_binary(), "token", "create", "--secret-file",
                secret_file or self.secret_file, "--role", role, "--ttl", ttl]
        if client:
            args += ["--client", client]
        r = subprocess.run(args, capture_output=True, text=True, timeout=30)
        if r.returncode != 0:
            raise AssertionError(f"rondo token create: {r.stderr}")
        return r.stdout.strip()

    def combiner_args(self, tls=True, mutual=False, auth=True):
        """The `rondo combiner` flags of this fixture."""
        args = []
        if tls:
            args += ["--cert", self.cert, "--key", self.key]
        if mutual:
            args += ["--ca", self.ca, "--require-client-cert"]
        if auth:
            args += ["--auth-secret-file", self.secret_file]
        return args


def check(cond, what):
    """Fails the test with `what` unless `cond`."""
    if not cond:
        raise AssertionError(what)


def wait_until(pred, timeout, what, step=0.05):
    """Polls `pred` (a cheap check of state another thread changes) until it
    holds; fails with `what` after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return
        time.sleep(step)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


def run_cases(cases, argv):
    """Runs the case named by `--case NAME` (or every case), printing each
    one's time. Returns the exit code: 0, 1 on a failure."""
    import argparse
    p = argparse.ArgumentParser()
    p.add_argument("--case", choices=sorted(cases), action="append")
    args = p.parse_args(argv)
    failed = 0
    for name in args.case or sorted(cases):
        t0 = time.monotonic()
        try:
            cases[name]()
            print(f"PASS {name} ({time.monotonic() - t0:.1f} s)", flush=True)
        except Exception:
            import traceback
            traceback.print_exc()
            print(f"FAIL {name} ({time.monotonic() - t0:.1f} s)", flush=True)
            failed += 1
    return 1 if failed else 0
