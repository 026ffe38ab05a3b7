#!/usr/bin/env python3
"""A Rondo federation across Linux network namespaces (standard library only;
needs root, `ip` and `tc` from iproute2).

Every host — the controller, each combiner, each client host — is its own
network namespace with one address on a private /24 and its loopback up.
The hosts hang off a bridge that lives in a namespace of its own (the
"switch"), so the root namespace's firewall (e.g. a FORWARD policy of DROP
with br_netfilter loaded) never sees their traffic; one more veth gives the
root namespace the subnet's .1, from where operators (`rondo seed`,
`session`, `models`) and a browser reach the controller's API through the
bridge. Every process runs in its host's namespace (`ip netns exec`) bound
to that host's address, with TLS and tokens on: a throwaway cluster CA, one
certificate per controller and combiner naming its address, the tokens'
secret, an admin token and one token per client.

Names: a per-run prefix ("rn" and 5 hex digits, e.g. rn3fa2c) starts every
namespace (PREFIX-ctl, PREFIX-cb1, PREFIX-cl1, PREFIX-sw) and link (links
stay within 15 characters), and the subnet 10.A.B.0/24 is picked at random
among those no route of the root namespace covers, so parallel runs and
leftovers never collide. A state file /run/rondo-netns/PREFIX.json names
the run's owner process, namespaces and root-side link.

Everything is removed on exit — a normal end, an exception, SIGINT,
SIGTERM or SIGHUP (signal handlers, atexit and try/finally): the processes
started here (their process groups, then anything left in the namespaces),
the namespaces, the veths and the bridge. `down PREFIX` removes a run from
outside; `down --stale` removes every run whose owner process is gone.

Module use (the ctest tests in tests/netns/, bench/wan_netns.py):

    with Net() as net:                          # raises NetnsUnavailable
        fed = Federation(net, rondo, work, combiners=3, client_hosts=3)
        fed.start_controller(); fed.start_combiners()
        fed.start_client("c1", "cl1", package=..., env=..., preferred=...)
        fed.operator("session", "start", ...)

CLI: netns_cluster.py up [options] (a federation for a person, until
SIGINT/SIGTERM; deploy/cluster-netns.sh runs it), netns_cluster.py down
PREFIX|--stale, netns_cluster.py list.
"""

import argparse
import atexit
import ipaddress
import json
import os
import random
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tarfile
import time
import urllib.error
import urllib.request

STATE_DIR = "/run/rondo-netns"
PREFIX_CHARS = "rn"
# Seconds any single `ip`/`tc` command may take.
CMD_TIMEOUT = 30


class NetnsUnavailable(Exception):
    """Namespaces, veths or the bridge cannot be created here (not root, no
    iproute2, no CAP_NET_ADMIN/CAP_SYS_ADMIN): a test reports skipped."""


class NetnsError(Exception):
    """A network command failed after the network was made."""


def run_cmd(argv, check=True, timeout=CMD_TIMEOUT):
    """Runs argv (bounded by `timeout` seconds); returns the
    CompletedProcess. With check, a non-zero exit raises NetnsError naming
    the command and its stderr."""
    r = subprocess.run(argv, capture_output=True, text=True, timeout=timeout)
    if check and r.returncode != 0:
        raise NetnsError("%s failed (exit %d): %s"
                         % (" ".join(argv), r.returncode, r.stderr.strip()))
    return r


def used_networks():
    """The IPv4 networks the root namespace routes or holds addresses in."""
    nets = []
    for argv in (["ip", "-4", "route", "show", "table", "all"],
                 ["ip", "-4", "-o", "addr", "show"]):
        r = run_cmd(argv, check=False)
        for word in r.stdout.split():
            try:
                if "/" in word or word.count(".") == 3:
                    nets.append(ipaddress.ip_network(word, strict=False))
            except ValueError:
                pass
    for path in state_files():
        try:
            nets.append(ipaddress.ip_network(json.load(open(path))["subnet"]))
        except (OSError, ValueError, KeyError):
            pass
    return nets


def state_files():
    if not os.path.isdir(STATE_DIR):
        return []
    return [os.path.join(STATE_DIR, f) for f in sorted(os.listdir(STATE_DIR))
            if f.endswith(".json")]


def pick_subnet(rng):
    """A random 10.A.B.0/24 (A in 128..254) that overlaps no network of the
    root namespace and no other run's."""
    used = used_networks()
    for _ in range(200):
        net = ipaddress.ip_network("10.%d.%d.0/24" % (rng.randint(128, 254),
                                                      rng.randint(0, 255)))
        if not any(net.overlaps(u) for u in used
                   if u.prefixlen > 0):  # the default route overlaps all
            return net
    raise NetnsError("no free 10.x.y.0/24 subnet after 200 tries")


class Host:
    """One host: namespace `ns` with address `ip` on its `eth0`, joined to
    the bridge by the switch-side veth `port`."""

    def __init__(self, name, ns, ip, port):
        self.name, self.ns, self.ip, self.port = name, ns, ip, port
        self.procs = []  # the Popen objects started in it

    def __repr__(self):
        return "Host(%s, %s)" % (self.name, self.ip)


class Net:
    """The namespaces, the bridge and the processes of one run. A context
    manager; close() is idempotent and also runs at exit and on SIGINT,
    SIGTERM and SIGHUP (the handlers raise SystemExit so that `finally`
    blocks run first).

    prefix: the run's name prefix (default "rn" + 5 random hex digits).
    Raises NetnsUnavailable from up() (called by __enter__) when the first
    namespace, veth or bridge cannot be made."""

    def __init__(self, prefix=None, seed=None):
        rng = random.Random(seed)
        self.prefix = prefix or PREFIX_CHARS + "%05x" % rng.randrange(16 ** 5)
        if len(self.prefix) > 9:
            raise ValueError("prefix %r: at most 9 characters (link names "
                             "are prefix + host, at most 15)" % self.prefix)
        self.rng = rng
        self.subnet = None
        self.hosts = {}
        self.switch = self.prefix + "-sw"
        self.root_link = self.prefix + "r"
        self.root_ip = None
        self._made = False
        self._closed = False
        self._old_handlers = {}
        self._next_ip = 2

    # -- setup -------------------------------------------------------------

    def __enter__(self):
        self.up()
        return self

    def __exit__(self, *exc):
        self.close()
        return False

    def up(self):
        """Creates the switch namespace with the bridge and the root
        namespace's link (the subnet's .1). Raises NetnsUnavailable when
        that is not possible here."""
        if os.geteuid() != 0:
            raise NetnsUnavailable("network namespaces need root (euid %d)"
                                   % os.geteuid())
        for tool in ("ip", "tc"):
            if not shutil.which(tool):
                raise NetnsUnavailable("%s (iproute2) is not installed" % tool)
        self._install_handlers()
        self.subnet = pick_subnet(self.rng)
        self.root_ip = str(self.subnet.network_address + 1)
        self._made = True
        self._write_state()
        try:
            run_cmd(["ip", "netns", "add", self.switch])
            self._probe_exec(self.switch)
            self._ip(self.switch, "link", "add", "br0", "type", "bridge")
            self._ip(self.switch, "link", "set", "br0", "up")
            run_cmd(["ip", "link", "add", self.root_link, "type", "veth",
                     "peer", "name", self.prefix + "rs", "netns",
                     self.switch])
        except (NetnsError, subprocess.TimeoutExpired) as e:
            self.close()
            raise NetnsUnavailable("cannot create a network namespace, "
                                   "bridge or veth here: %s" % e)
        self._ip(self.switch, "link", "set", self.prefix + "rs", "master",
                 "br0", "up")
        run_cmd(["ip", "addr", "add", "%s/%d" % (self.root_ip,
                                                 self.subnet.prefixlen),
                 "dev", self.root_link])
        run_cmd(["ip", "link", "set", self.root_link, "up"])

    def _probe_exec(self, ns):
        r = run_cmd(["ip", "netns", "exec", ns, "true"], check=False)
        if r.returncode != 0:
            raise NetnsError("ip netns exec: %s" % r.stderr.strip())

    def _ip(self, ns, *args):
        return run_cmd(["ip", "-n", ns] + list(args))

    def add_host(self, name):
        """A new host `name` (at most 15 - len(prefix) characters): its
        namespace PREFIX-name, loopback up, eth0 with the next free address
        of the subnet, its veth joined to the bridge. Returns the Host."""
        if name in self.hosts or len(self.prefix + name) > 15:
            raise ValueError("host name %r: taken or too long" % name)
        ip = str(self.subnet.network_address + self._next_ip)
        self._next_ip += 1
        ns = "%s-%s" % (self.prefix, name)
        port = self.prefix + name
        host = Host(name, ns, ip, port)
        self.hosts[name] = host
        self._write_state()
        run_cmd(["ip", "netns", "add", ns])
        self._ip(ns, "link", "set", "lo", "up")
        run_cmd(["ip", "link", "add", port, "type", "veth", "peer", "name",
                 "eth0", "netns", ns])
        run_cmd(["ip", "link", "set", port, "netns", self.switch])
        self._ip(self.switch, "link", "set", port, "master", "br0", "up")
        self._ip(ns, "addr", "add", "%s/%d" % (ip, self.subnet.prefixlen),
                 "dev", "eth0")
        self._ip(ns, "link", "set", "eth0", "up")
        return host

    # -- processes ---------------------------------------------------------

    def spawn(self, host, argv, log_path, env=None):
        """Starts argv in host's namespace in a new process group, stdout
        and stderr to log_path; returns the Popen."""
        log = open(log_path, "ab")
        p = subprocess.Popen(["ip", "netns", "exec", host.ns] + list(argv),
                             stdout=log, stderr=subprocess.STDOUT, env=env,
                             stdin=subprocess.DEVNULL, start_new_session=True)
        log.close()
        host.procs.append(p)
        return p

    def run(self, host, argv, timeout=60):
        """Runs argv in host's namespace to its end (bounded); returns the
        CompletedProcess (text)."""
        return subprocess.run(["ip", "netns", "exec", host.ns] + list(argv),
                              capture_output=True, text=True,
                              timeout=timeout)

    @staticmethod
    def stop(p, sig=signal.SIGTERM, timeout=15):
        """Sends sig to p's process group and waits (timeout s), then
        SIGKILL. Returns its exit code."""
        if p.poll() is None:
            signal_group(p, sig)
            wait_or_kill(p, timeout)
        return p.returncode

    # -- faults and links --------------------------------------------------

    def link(self, host, up):
        """Sets host's link (both ends of its veth) up or down."""
        state = "up" if up else "down"
        self._ip(self.switch, "link", "set", host.port, state)
        self._ip(host.ns, "link", "set", "eth0", state)

    def kill_host(self, host):
        """The host dies: SIGKILL every process started in it (their
        process groups), then its link goes down."""
        for p in host.procs:
            if p.poll() is None:
                signal_group(p, signal.SIGKILL)
        for p in host.procs:
            p.wait(timeout=10)
        self.link(host, False)

    def limit(self, host, rate="100mbit", burst="256kb", latency="50ms"):
        """Limits host's link with a token bucket (tc tbf) in both
        directions: its eth0 (what it sends) and the bridge-side end (what
        it receives). rate in tc's units (100mbit = 100 Mbit/s)."""
        for ns, dev in ((host.ns, "eth0"), (self.switch, host.port)):
            run_cmd(["ip", "netns", "exec", ns, "tc", "qdisc", "replace",
                     "dev", dev, "root", "tbf", "rate", rate, "burst", burst,
                     "latency", latency])

    def qdisc(self, host):
        """tc's statistics of host's link qdiscs: {"egress": text of its
        eth0's, "ingress": text of the bridge-side end's}."""
        return {way: run_cmd(["ip", "netns", "exec", ns, "tc", "-s", "qdisc",
                              "show", "dev", dev]).stdout
                for way, ns, dev in (("egress", host.ns, "eth0"),
                                     ("ingress", self.switch, host.port))}

    # -- teardown ----------------------------------------------------------

    def _install_handlers(self):
        atexit.register(self.close)
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            try:
                self._old_handlers[sig] = signal.signal(sig, self._on_signal)
            except ValueError:  # not the main thread
                pass

    def _on_signal(self, signum, frame):
        raise SystemExit(128 + signum)

    def _write_state(self):
        os.makedirs(STATE_DIR, exist_ok=True)
        state = {"prefix": self.prefix, "owner_pid": os.getpid(),
                 "subnet": str(self.subnet), "root_link": self.root_link,
                 "namespaces": [self.switch] +
                 [h.ns for h in self.hosts.values()],
                 "hosts": {h.name: h.ip for h in self.hosts.values()}}
        tmp = os.path.join(STATE_DIR, self.prefix + ".json.tmp")
        with open(tmp, "w") as f:
            json.dump(state, f)
        os.replace(tmp, os.path.join(STATE_DIR, self.prefix + ".json"))

    def close(self):
        """Stops every process started here (SIGTERM to its group, SIGKILL
        after 10 s), kills whatever is left in the namespaces, deletes the
        namespaces (with their veths and the bridge) and the root link.
        Idempotent; signals are ignored while it runs."""
        if self._closed or not self._made:
            self._closed = True
            self._restore_handlers()
            return
        self._closed = True
        for sig in self._old_handlers:
            signal.signal(sig, signal.SIG_IGN)
        procs = [p for h in self.hosts.values() for p in h.procs]
        for p in procs:
            if p.poll() is None:
                signal_group(p, signal.SIGTERM)
        deadline = time.monotonic() + 10
        for p in procs:
            wait_or_kill(p, max(0.1, deadline - time.monotonic()))
        teardown(self.prefix, [self.switch] +
                 [h.ns for h in self.hosts.values()], self.root_link)
        self._restore_handlers()

    def _restore_handlers(self):
        for sig, old in self._old_handlers.items():
            try:
                signal.signal(sig, old)
            except (ValueError, TypeError):
                pass
        self._old_handlers = {}


def signal_group(p, sig):
    """Sends sig to the process group of Popen p (gone: nothing)."""
    try:
        os.killpg(p.pid, sig)
    except ProcessLookupError:
        pass


def wait_or_kill(p, timeout):
    """Waits timeout seconds for Popen p, then SIGKILLs its group and waits
    10 s more."""
    try:
        p.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        signal_group(p, signal.SIGKILL)
        p.wait(timeout=10)


def remove_stale():
    """Removes every run whose owner process is gone (e.g. killed by a
    test runner's timeout before it could clean up); returns their
    prefixes."""
    gone = [prefix for prefix, state in runs().items()
            if not pid_alive(state.get("owner_pid"))]
    for prefix in gone:
        down(prefix)
    return gone


def up_or_skip(deadline=None):
    """A Net that is up, or None after printing "skipped: <why>" where
    namespaces cannot be made (the caller exits 77, ctest's skip). Stale
    runs are removed first. deadline: seconds after which SIGALRM ends the
    run with SystemExit (so it cleans up before a test runner's harder
    timeout); None: no deadline."""
    if os.geteuid() == 0 and shutil.which("ip"):
        for prefix in remove_stale():
            print("removed the stale run %s" % prefix, flush=True)
    if deadline:
        def expired(signum, frame):
            raise SystemExit("FAILED: not done within %d s" % deadline)
        signal.signal(signal.SIGALRM, expired)
        signal.alarm(int(deadline))
    net = Net()
    try:
        net.up()
    except NetnsUnavailable as e:
        print("skipped: %s" % e, flush=True)
        return None
    return net


def finish(net, work, ok, keep=False):
    """The end of a test or bench run on net (already closed): checks that
    none of its namespaces or its root link is left (else not ok), removes
    the work folder when ok and not keep (else prints it). Returns the exit
    code: 0 when ok, else 1."""
    left = [ns for ns in list_namespaces() if ns.startswith(net.prefix + "-")]
    if left or link_exists(net.root_link):
        print("FAILED: left behind: namespaces %s, link %s"
              % (left, net.root_link if link_exists(net.root_link) else "-"))
        ok = False
    if ok and not keep:
        shutil.rmtree(work, ignore_errors=True)
    else:
        print("work folder:", work)
    return 0 if ok else 1


def teardown(prefix, namespaces, root_link):
    """Removes a run: SIGKILL to every process still in its namespaces,
    then the namespaces (their links and the bridge go with them), the root
    link and the state file. Waits (10 s at most) until the root link is
    gone. Errors are printed, not raised: the rest is still removed."""
    for ns in namespaces:
        r = run_cmd(["ip", "netns", "pids", ns], check=False)
        for pid in r.stdout.split():
            try:
                os.kill(int(pid), signal.SIGKILL)
            except (ProcessLookupError, ValueError):
                pass
    existing = set(list_namespaces())
    for ns in namespaces:
        if ns in existing:
            r = run_cmd(["ip", "netns", "del", ns], check=False)
            if r.returncode != 0:
                print("netns_cluster: ip netns del %s: %s"
                      % (ns, r.stderr.strip()), file=sys.stderr)
    deadline = time.monotonic() + 10
    while link_exists(root_link) and time.monotonic() < deadline:
        run_cmd(["ip", "link", "del", root_link], check=False)
        time.sleep(0.1)
    if link_exists(root_link):
        print("netns_cluster: link %s is still there" % root_link,
              file=sys.stderr)
    try:
        os.remove(os.path.join(STATE_DIR, prefix + ".json"))
    except FileNotFoundError:
        pass


def link_exists(name):
    return run_cmd(["ip", "link", "show", "dev", name],
                   check=False).returncode == 0


def list_namespaces():
    r = run_cmd(["ip", "netns", "list"], check=False)
    return [line.split()[0] for line in r.stdout.splitlines() if line.strip()]


def runs():
    """{prefix: state} of every run with a state file, plus namespaces named
    like a run's (rn + 5 hex digits + '-') that lost theirs."""
    out = {}
    for path in state_files():
        try:
            state = json.load(open(path))
            out[state["prefix"]] = state
        except (OSError, ValueError, KeyError):
            pass
    for ns in list_namespaces():
        head = ns.split("-")[0]
        if (ns.startswith(PREFIX_CHARS) and "-" in ns and len(head) == 7
                and all(ch in "0123456789abcdef" for ch in head[2:])):
            state = out.setdefault(head, {"prefix": head, "owner_pid": None,
                                          "namespaces": [],
                                          "root_link": head + "r"})
            if ns not in state["namespaces"]:
                state["namespaces"].append(ns)
    return out


def pid_alive(pid):
    if not pid:
        return False
    try:
        os.kill(pid, 0)
        return True
    except ProcessLookupError:
        return False
    except PermissionError:
        return True


def down(prefix, timeout=30):
    """Removes run `prefix`: SIGTERM to its owner (which cleans up itself,
    waited for `timeout` s), then teardown of whatever is left. Returns
    False when no such run exists."""
    state = runs().get(prefix)
    if state is None:
        return False
    owner = state.get("owner_pid")
    if owner and owner != os.getpid() and pid_alive(owner):
        os.kill(owner, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while pid_alive(owner) and time.monotonic() < deadline:
            time.sleep(0.1)
    teardown(prefix, state["namespaces"], state["root_link"])
    return True


# -- the federation on top -------------------------------------------------


class Federation:
    """A secured Rondo federation on a Net: host "ctl" (the controller),
    "cb1".."cbK" (combiner-1..combiner-K) and "cl1".."clM" (client hosts).

    rondo: the rondo binary; work: a folder for certificates, databases,
    logs and port files. Every process is bound to its host's address;
    operators run in the root namespace and reach the controller's HTTPS
    API through the bridge.

    controller_args / combiner_args: extra flags for every controller /
    combiner (defaults: the controller's and combiner's own, except a
    quicker middleman heartbeat: 0.5 s, lost after 3 s)."""

    def __init__(self, net, rondo, work, combiners=3, client_hosts=3,
                 controller_args=(), combiner_args=()):
        self.net, self.rondo, self.work = net, rondo, work
        os.makedirs(work, exist_ok=True)
        self.controller_args = list(controller_args)
        self.combiner_args = list(combiner_args)
        self.ctl = net.add_host("ctl")
        self.combiner_hosts = {}
        for i in range(1, combiners + 1):
            self.combiner_hosts["combiner-%d" % i] = net.add_host("cb%d" % i)
        self.client_hosts = [net.add_host("cl%d" % i)
                             for i in range(1, client_hosts + 1)]
        self.procs = {}
        self.certs = os.path.join(work, "certs")
        self.ca = os.path.join(self.certs, "ca.crt")
        self.secret = os.path.join(self.certs, "token-secret")
        self.admin_token_file = os.path.join(self.certs, "admin.token")
        self.url = None          # https://CTL:HTTP_PORT
        self.middleman = None    # CTL:PORT
        self._make_certs()

    def rondo_run(self, *args, timeout=60):
        """`rondo ARGS` in the root namespace; raises on a non-zero exit."""
        r = subprocess.run([self.rondo] + list(args), capture_output=True,
                           text=True, timeout=timeout)
        if r.returncode != 0:
            raise RuntimeError("rondo %s failed: %s"
                               % (" ".join(args[:3]), r.stderr.strip()))
        return r.stdout

    def _make_certs(self):
        self.rondo_run("certs", "init", self.certs, "--days", "30")
        self.rondo_run("certs", "issue", self.certs, "controller", "--host",
                       self.ctl.ip, "--days", "30")
        for name, host in self.combiner_hosts.items():
            self.rondo_run("certs", "issue", self.certs, name, "--host",
                           host.ip, "--days", "30")
        fd = os.open(self.secret, os.O_WRONLY | os.O_CREAT | os.O_EXCL,
                     0o600)
        with os.fdopen(fd, "w") as f:
            f.write(os.urandom(36).hex())
        self.write_token(self.admin_token_file, "admin")

    def write_token(self, path, role, client=None, ttl="1d"):
        """A token of role (client: naming `client`) into path (0600)."""
        args = ["token", "create", "--secret-file", self.secret, "--role",
                role, "--ttl", ttl]
        if client:
            args += ["--client", client]
        token = self.rondo_run(*args).strip()
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(token + "\n")
        return token

    def tls(self, name):
        return ["--cert", os.path.join(self.certs, name + ".crt"),
                "--key", os.path.join(self.certs, name + ".key"),
                "--ca", self.ca]

    def path(self, name):
        return os.path.join(self.work, name)

    def spawn(self, name, host, args, env=None):
        """`rondo ARGS` as process `name` in host's namespace, logging to
        WORK/name.log."""
        p = self.net.spawn(host, [self.rondo] + list(args),
                           self.path(name + ".log"), env=env)
        self.procs[name] = p
        return p

    def wait_file(self, path, proc, timeout=30):
        """The content of path once written (a port file), while proc
        lives; bounded by timeout seconds."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if os.path.exists(path):
                text = open(path).read().strip()
                if text:
                    return text
            if proc.poll() is not None:
                raise RuntimeError("%s exited (code %s) before writing %s"
                                   % (proc.args[3:5], proc.returncode, path))
            time.sleep(0.05)
        raise RuntimeError("nothing in %s after %d s" % (path, timeout))

    def start_controller(self):
        """Starts the controller on ctl (middleman and HTTPS API on its
        address, ports picked by the system); returns the API URL."""
        for f in ("controller.port", "api.port"):
            if os.path.exists(self.path(f)):
                os.remove(self.path(f))
        p = self.spawn("controller", self.ctl, [
            "controller", "--host", self.ctl.ip, "--port", "0",
            "--port-file", self.path("controller.port"),
            "--http-port", "0", "--http-port-file", self.path("api.port"),
            "--db", self.path("controller-db"),
            "--auth-secret-file", self.secret,
            "--heartbeat-interval", "0.5", "--connection-timeout", "3"]
            + self.tls("controller") + self.controller_args)
        self.middleman = "%s:%s" % (self.ctl.ip, self.wait_file(
            self.path("controller.port"), p))
        self.url = "https://%s:%s" % (self.ctl.ip, self.wait_file(
            self.path("api.port"), p))
        return self.url

    def start_combiner(self, name, extra=(), log_name=None):
        """Starts combiner `name` on its host, joined to the controller;
        returns its client port."""
        host = self.combiner_hosts[name]
        port_file = self.path(name + ".port")
        if os.path.exists(port_file):
            os.remove(port_file)
        p = self.spawn(log_name or name, host, [
            "combiner", "--host", host.ip, "--port", "0",
            "--port-file", port_file, "--db", self.path(name + "-db"),
            "--name", name, "--controller", self.middleman,
            "--auth-secret-file", self.secret,
            "--heartbeat-interval", "0.5", "--connection-timeout", "3"]
            + self.tls(name) + self.combiner_args + list(extra))
        self.procs[name] = p
        return int(self.wait_file(port_file, p))

    def start_combiners(self):
        for name in self.combiner_hosts:
            self.start_combiner(name)
        self.wait_alive(list(self.combiner_hosts))

    def start_client(self, name, host, package=None, env=None,
                     preferred=None, extra=()):
        """`rondo client --api-url` named `name` on client host `host`
        (a Host), with its own token (naming it) and work folder; package:
        a local compute package folder (default: the controller's active
        one, downloaded); preferred: the combiner to ask clients/add for."""
        token = self.path(name + ".token")
        self.write_token(token, "client", client=name)
        work = self.path(name + "-work")
        os.makedirs(work, exist_ok=True)
        args = ["client", "--api-url", self.url, "--ca", self.ca,
                "--token-file", token, "--name", name, "--work-dir", work,
                "--api-retry-time", "60"]
        if package:
            args += ["--package", package]
        if preferred:
            args += ["--preferred-combiner", preferred]
        return self.spawn(name, host, args + list(extra),
                          env=dict(os.environ, **(env or {})))

    # -- the operator's side (root namespace, through the bridge) ----------

    def operator(self, *args, timeout=120):
        """`rondo ARGS --controller URL --ca CA --token-file ADMIN`;
        returns the CompletedProcess (text)."""
        return subprocess.run(
            [self.rondo] + list(args) + ["--controller", self.url, "--ca",
                                         self.ca, "--token-file",
                                         self.admin_token_file],
            capture_output=True, text=True, timeout=timeout)

    def api(self, method, path, body=None, timeout=30, token=None,
            headers=None):
        """(status, parsed JSON or text) of an HTTPS request to the API
        (admin token by default; more headers, e.g. FEDn's X-Limit, in
        headers), bounded by timeout seconds."""
        if token is None:
            token = open(self.admin_token_file).read().strip()
        data = None
        headers = dict(headers or {}, Authorization="Bearer " + token)
        if body is not None:
            data = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        req = urllib.request.Request(self.url + path, data=data,
                                     method=method, headers=headers)
        ctx = ssl.create_default_context(cafile=self.ca)
        try:
            with urllib.request.urlopen(req, timeout=timeout,
                                        context=ctx) as r:
                status, text = r.status, r.read().decode()
        except urllib.error.HTTPError as e:
            status, text = e.code, e.read().decode()
        try:
            return status, json.loads(text)
        except ValueError:
            return status, text

    def combiners(self):
        """{name: combiner as GET /api/v1/combiners/ lists it}."""
        status, body = self.api("GET", "/api/v1/combiners/")
        if status != 200:
            raise RuntimeError("GET /api/v1/combiners/: %s %s"
                               % (status, body))
        return {c["name"]: c for c in body["result"]}

    def wait_alive(self, names, timeout=60):
        """Until the controller lists exactly `names` alive (bounded)."""
        deadline = time.monotonic() + timeout
        while True:
            alive = sorted(n for n, c in self.combiners().items()
                           if c["alive"])
            if alive == sorted(names):
                return
            if time.monotonic() > deadline:
                raise RuntimeError("combiners alive: %s, wanted %s"
                                   % (alive, sorted(names)))
            time.sleep(0.2)

    def upload_package(self, folder, name="package"):
        """Uploads folder as the active compute package (a .tgz with one
        top folder, as FEDn packs one), through `curl` from the root
        namespace; returns the API's JSON answer."""
        tgz = self.path(name + ".tgz")
        with tarfile.open(tgz, "w:gz") as tar:
            tar.add(folder, arcname=os.path.basename(folder.rstrip("/")),
                    filter=lambda i: None if "__pycache__" in i.name else i)
        r = subprocess.run(
            ["curl", "--silent", "--show-error", "--fail-with-body",
             "--max-time", "120", "--cacert", self.ca, "-H",
             "Authorization: Bearer " +
             open(self.admin_token_file).read().strip(),
             "-F", "file=@" + tgz, "-F", "name=" + name,
             "-F", "helper=numpyhelper", "-F", "description=" + name,
             self.url + "/api/v1/packages/"],
            capture_output=True, text=True, timeout=150)
        if r.returncode != 0:
            raise RuntimeError("package upload failed: %s %s"
                               % (r.stdout, r.stderr))
        return json.loads(r.stdout)

    def tails(self, lines=20):
        """Prints the last lines of every log."""
        for name in sorted(os.listdir(self.work)):
            if name.endswith(".log"):
                text = open(self.path(name), errors="replace").read()
                tail = text.splitlines()[-lines:]
                print("---- %s (last %d lines)" % (name, len(tail)))
                print("\n".join(tail))


def reachable(ip, port, timeout=5):
    """Whether a TCP connection to ip:port succeeds from here."""
    try:
        with socket.create_connection((ip, port), timeout=timeout):
            return True
    except OSError:
        return False


# -- CLI -------------------------------------------------------------------


def cmd_up(args):
    """A federation for a person: controller, combiners and clients
    training examples/fashion-mnist (or --package), until SIGINT/SIGTERM."""
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    rondo = os.path.abspath(args.rondo)
    package = os.path.abspath(args.package or
                              os.path.join(root, "examples", "fashion-mnist"))
    net = Net()
    try:
        net.up()
    except NetnsUnavailable as e:
        print("netns_cluster: %s" % e, file=sys.stderr)
        return 77
    work = os.path.abspath(args.out or os.path.join(
        root, "out", "cluster-netns-" + net.prefix))
    status = 1
    try:
        fed = Federation(net, rondo, work, combiners=args.combiners,
                         client_hosts=args.client_hosts)
        fed.start_controller()
        fed.start_combiners()
        fed.upload_package(package, name=os.path.basename(package))
        for i in range(args.clients):
            host = fed.client_hosts[i % len(fed.client_hosts)]
            fed.start_client("client-%d" % i, host, env={
                "FMNIST_CLIENT_INDEX": str(i),
                "FMNIST_NUM_CLIENTS": str(args.clients)})
        token = open(fed.admin_token_file).read().strip()
        info = {
            "prefix": net.prefix, "work": work, "subnet": str(net.subnet),
            "api": fed.url, "ca": fed.ca,
            "admin_token_file": fed.admin_token_file,
            "dashboard": "%s/#token=%s" % (fed.url, token),
            "hosts": {h.name: {"namespace": h.ns, "ip": h.ip}
                      for h in net.hosts.values()},
            "combiners": {n: h.ip for n, h in fed.combiner_hosts.items()},
            "owner_pid": os.getpid()}
        tmp = os.path.join(work, "cluster.json.tmp")
        with open(tmp, "w") as f:
            json.dump(info, f, indent=2)
        os.replace(tmp, os.path.join(work, "cluster.json"))
        print(json.dumps(info, indent=2), flush=True)
        # Until a signal (SystemExit from the handlers) or the controller
        # ends by itself.
        fed.procs["controller"].wait()
        print("netns_cluster: the controller stopped; see %s"
              % fed.path("controller.log"), file=sys.stderr)
    except SystemExit as e:
        status = 0 if e.code in (128 + signal.SIGINT, 128 + signal.SIGTERM,
                                 128 + signal.SIGHUP) else e.code
    except Exception as e:  # report, then remove everything
        print("netns_cluster: %s: %s" % (type(e).__name__, e),
              file=sys.stderr)
    finally:
        net.close()
    return status


def cmd_down(args):
    if args.stale:
        gone = remove_stale()
        print("netns_cluster: removed %d stale run(s) %s"
              % (len(gone), " ".join(gone)))
        return 0
    if not args.prefix:
        print("netns_cluster: down needs PREFIX or --stale", file=sys.stderr)
        return 2
    if not down(args.prefix):
        print("netns_cluster: no run %s (see `list`)" % args.prefix,
              file=sys.stderr)
        return 1
    print("netns_cluster: removed %s" % args.prefix)
    return 0


def cmd_list(args):
    for prefix, s in sorted(runs().items()):
        owner = s.get("owner_pid")
        print("%s subnet %s owner %s (%s) namespaces %s"
              % (prefix, s.get("subnet", "?"), owner,
                 "alive" if pid_alive(owner) else "gone",
                 " ".join(s["namespaces"])))
    return 0


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="command", required=True)
    up = sub.add_parser("up", help="run a federation until SIGINT/SIGTERM; "
                        "prints its addresses (JSON) once it is up")
    up.add_argument("--rondo", required=True, help="the rondo binary")
    up.add_argument("--combiners", type=int, default=3)
    up.add_argument("--client-hosts", type=int, default=3)
    up.add_argument("--clients", type=int, default=6)
    up.add_argument("--package", help="compute package folder (default: "
                    "examples/fashion-mnist)")
    up.add_argument("--out", help="work folder (default: "
                    "out/cluster-netns-PREFIX)")
    dn = sub.add_parser("down", help="remove a run (or every stale one)")
    dn.add_argument("prefix", nargs="?")
    dn.add_argument("--stale", action="store_true",
                    help="every run whose owner process is gone")
    sub.add_parser("list", help="the runs on this machine")
    args = p.parse_args()
    return {"up": cmd_up, "down": cmd_down, "list": cmd_list}[
        args.command](args)


if __name__ == "__main__":
    sys.exit(main())
