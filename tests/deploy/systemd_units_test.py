#!/usr/bin/env python3
"""deploy/systemd's units, run as systemd would run them: each unit's
ExecStart, with %i and its EnvironmentFile's settings expanded the way
systemd expands them (${VAR} one word, $VAR split at whitespace), starts a
real controller and a real combiner (TLS and tokens, from `rondo certs`
and `rondo token create`); the combiner joins over mutual TLS and the
controller's API lists it alive; SIGTERM (the units' KillSignal) stops
both with exit code 0. With systemd-analyze on the machine, the units also
pass `systemd-analyze verify` (their rondo path pointed at the build).

Usage: systemd_units_test.py --rondo PATH. Exit 0 on success, 1 on a
failed check (with the logs), every wait bounded.
"""

import argparse
import json
import os
import re
import shlex
import shutil
import signal
import ssl
import subprocess
import sys
import tempfile
import time
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
UNITS = os.path.join(HERE, "..", "..", "deploy", "systemd")


def check(cond, what):
    if not cond:
        raise AssertionError(what)
    print("ok:", what, flush=True)


def unit_entries(path):
    """{key: [values]} of a unit file's [Service] section, continuation
    lines joined."""
    out, section, pending = {}, None, ""
    for raw in open(path):
        line = raw.rstrip("\n")
        if pending:
            line, pending = pending + " " + line.strip(), ""
        if line.endswith("\\"):
            pending = line[:-1].rstrip()
            continue
        s = line.strip()
        if not s or s.startswith(("#", ";")):
            continue
        if s.startswith("["):
            section = s
            continue
        if section == "[Service]" and "=" in s:
            k, v = s.split("=", 1)
            out.setdefault(k.strip(), []).append(v.strip())
    return out


def read_env(path):
    env = {}
    for line in open(path):
        s = line.strip()
        if s and not s.startswith("#") and "=" in s:
            k, v = s.split("=", 1)
            env[k.strip()] = v.strip()
    return env


def expand(exec_start, env, instance):
    """The argv systemd runs for `exec_start`: %i is the instance; ${VAR}
    is one word, $VAR splits at whitespace; an unset VAR is empty."""
    words = []
    for w in shlex.split(exec_start.replace("%i", instance)):
        m = re.fullmatch(r"\$([A-Za-z_][A-Za-z0-9_]*)", w)
        if m:
            words.extend(env.get(m.group(1), "").split())
            continue
        words.append(re.sub(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}",
                            lambda g: env.get(g.group(1), ""), w))
    return words


def write_env(path, example, values):
    """An environment file from the example beside the units, with
    `values` in place of the example's settings (every setting the example
    names must be given, so the test follows the example)."""
    names = read_env(example)
    missing = sorted(set(names) - set(values))
    check(not missing, "%s: every setting given (missing %s)"
          % (os.path.basename(example), missing))
    with open(path, "w") as f:
        for k, v in values.items():
            f.write("%s=%s\n" % (k, v))


def wait_file(path, proc, what):
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if os.path.exists(path) and open(path).read().strip():
            return int(open(path).read())
        if proc.poll() is not None:
            raise AssertionError(what + " exited early (%d)" % proc.returncode)
        time.sleep(0.05)
    raise AssertionError(what + " wrote no port within 30 s")


def run(rondo, work):
    certs = os.path.join(work, "certs")
    subprocess.run([rondo, "certs", "init", certs], check=True,
                   capture_output=True, timeout=60)
    for name in ("controller", "c1"):
        subprocess.run([rondo, "certs", "issue", certs, name, "--host",
                        "127.0.0.1"], check=True, capture_output=True,
                       timeout=60)
    secret = os.path.join(work, "token-secret")
    with open(secret, "w") as f:
        f.write("k" * 48 + "\n")
    admin = subprocess.run(
        [rondo, "token", "create", "--secret-file", secret, "--role",
         "admin", "--ttl", "1h"], check=True, capture_output=True,
        text=True, timeout=30).stdout.strip()

    ctrl_unit = os.path.join(UNITS, "rondo-controller.service")
    comb_unit = os.path.join(UNITS, "rondo-combiner@.service")
    ctrl = unit_entries(ctrl_unit)
    comb = unit_entries(comb_unit)
    check(ctrl["EnvironmentFile"] == ["/etc/rondo/controller.env"]
          and comb["EnvironmentFile"] == ["/etc/rondo/combiner-%i.env"],
          "the units read /etc/rondo/controller.env and "
          "/etc/rondo/combiner-NAME.env")
    check(ctrl["KillSignal"] == ["SIGTERM"]
          and comb["KillSignal"] == ["SIGTERM"], "both stop on SIGTERM")

    ctrl_env = os.path.join(work, "controller.env")
    write_env(ctrl_env, os.path.join(UNITS, "controller.env.example"), {
        "RONDO_HOST": "127.0.0.1", "RONDO_PORT": "0",
        "RONDO_HTTP_PORT": "0",
        "RONDO_DB": os.path.join(work, "controller-db"),
        "RONDO_CERT": os.path.join(certs, "controller.crt"),
        "RONDO_KEY": os.path.join(certs, "controller.key"),
        "RONDO_CA": os.path.join(certs, "ca.crt"),
        "RONDO_TOKEN_SECRET": secret,
        "RONDO_EXTRA_ARGS": "--port-file %s --http-port-file %s"
        % (os.path.join(work, "ctrl.port"), os.path.join(work, "api.port")),
    })
    argv = expand(ctrl["ExecStart"][0], read_env(ctrl_env), "")
    check(argv[0] == "/usr/local/bin/rondo" and argv[1] == "controller",
          "the controller unit runs /usr/local/bin/rondo controller")
    procs = {}
    logs = {}

    def start(name, argv):
        logs[name] = os.path.join(work, name + ".log")
        procs[name] = subprocess.Popen([rondo] + argv[1:],
                                       stdout=open(logs[name], "w"),
                                       stderr=subprocess.STDOUT)

    try:
        start("controller", argv)
        port = wait_file(os.path.join(work, "ctrl.port"), procs["controller"],
                         "the controller")
        api = wait_file(os.path.join(work, "api.port"), procs["controller"],
                        "the controller's API")
        comb_env = os.path.join(work, "combiner-c1.env")
        write_env(comb_env, os.path.join(UNITS, "combiner.env.example"), {
            "RONDO_HOST": "127.0.0.1", "RONDO_PORT": "0",
            "RONDO_CONTROLLER": "127.0.0.1:%d" % port,
            "RONDO_DB": os.path.join(work, "c1-db"),
            "RONDO_CERT": os.path.join(certs, "c1.crt"),
            "RONDO_KEY": os.path.join(certs, "c1.key"),
            "RONDO_CA": os.path.join(certs, "ca.crt"),
            "RONDO_TOKEN_SECRET": secret,
            "RONDO_EXTRA_ARGS": "--port-file "
            + os.path.join(work, "c1.port"),
        })
        argv = expand(comb["ExecStart"][0], read_env(comb_env), "c1")
        check(argv[1] == "combiner" and "--name" in argv
              and argv[argv.index("--name") + 1] == "c1",
              "the combiner unit's instance name is the combiner id")
        start("c1", argv)
        wait_file(os.path.join(work, "c1.port"), procs["c1"], "the combiner")

        ctx = ssl.create_default_context(cafile=os.path.join(certs,
                                                             "ca.crt"))
        listed = []
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            req = urllib.request.Request(
                "https://127.0.0.1:%d/api/v1/combiners/" % api,
                headers={"Authorization": "Bearer " + admin})
            with urllib.request.urlopen(req, context=ctx, timeout=10) as r:
                body = json.loads(r.read())
            listed = [c for c in body.get("result", [])
                      if c.get("name", c.get("combiner_id")) == "c1"]
            if listed:
                break
            time.sleep(0.2)
        check(len(listed) == 1, "combiner c1 joined the controller over "
              "mutual TLS and the API (HTTPS, admin token) lists it: %s"
              % listed)
        for name in ("c1", "controller"):
            procs[name].send_signal(signal.SIGTERM)
            code = procs[name].wait(timeout=30)
            check(code == 0, "%s exits 0 on SIGTERM" % name)
    except Exception:
        for name, path in logs.items():
            print("---- %s.log" % name)
            print(open(path, errors="replace").read()[-3000:])
        raise
    finally:
        for p in procs.values():
            if p.poll() is None:
                p.kill()
                p.wait(timeout=10)

    analyze = shutil.which("systemd-analyze")
    if not analyze:
        print("note: systemd-analyze not installed; `verify` not run")
        return
    units = os.path.join(work, "units")
    os.makedirs(units)
    for name in ("rondo-controller.service", "rondo-combiner@.service"):
        text = open(os.path.join(UNITS, name)).read()
        text = text.replace("/usr/local/bin/rondo", os.path.abspath(rondo))
        with open(os.path.join(units, name), "w") as f:
            f.write(text)
    r = subprocess.run([analyze, "verify",
                        os.path.join(units, "rondo-controller.service"),
                        os.path.join(units, "rondo-combiner@c1.service")],
                       capture_output=True, text=True, timeout=60,
                       cwd=units)
    # verify also reports the host's own units' problems (e.g. in a
    # container); only lines about ours count.
    ours = [line for line in (r.stdout + r.stderr).splitlines()
            if "rondo-" in line]
    check(not ours, "systemd-analyze verify finds nothing in the units: %s"
          % ours)


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rondo", required=True)
    args = p.parse_args()
    work = tempfile.mkdtemp(prefix="rondo-units-")
    try:
        run(os.path.abspath(args.rondo), work)
    except Exception as e:  # noqa: BLE001 - reported
        print("FAILED: %s: %s" % (type(e).__name__, e), flush=True)
        print("work folder:", work)
        return 1
    shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
