"""Simulate a federated session of this package WITHOUT Rondo (a check of
the accuracy and time targets):

    ./run.sh simulate.py [--model softmax|mlp] [--clients 5] [--rounds 10]
                         [--partition iid|label-skew|dirichlet] [--alpha 0.5]
                         [--settings '{"epochs": 1}'] [--jobs N] [--keep DIR]

Seeds a model with seed.py, then for each round: every client runs the
`train` command of fedn.yaml exactly as a FEDn client would
(`sh -c "<command> <inpath> <outpath>"` in this folder, with its
FMNIST_CLIENT_INDEX / FMNIST_NUM_CLIENTS / FMNIST_PARTITION set and the
client_settings in <inpath>-metadata), the updates are averaged (FedAvg
weighted by num_examples), and every client runs `validate` on the new
global model.  Prints per-round metrics and the total wall time (which
includes every process start and data load).
"""

import argparse
import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time

import numpy as np

import fmnist

PROG = "simulate.py"
HERE = os.path.dirname(os.path.abspath(__file__))


def entry_point_commands(path):
    """Read the entry point commands of fedn.yaml (tiny parser for its
    fixed layout: entry_points: / <name>: / command: <text>)."""
    commands = {}
    current = None
    with open(path, "r", encoding="utf-8") as handle:
        for line in handle:
            text = line.split("#", 1)[0].rstrip()
            if not text.strip():
                continue
            indent = len(text) - len(text.lstrip())
            key, _, value = text.strip().partition(":")
            if indent == 2 and not value.strip():
                current = key
            elif indent == 4 and key == "command" and current:
                commands[current] = value.strip()
    for name in ("train", "validate"):
        if name not in commands:
            raise fmnist.FmnistError("%s has no %s command" % (path, name))
    return commands


def run_clients(command, jobs, calls):
    """Run ``sh -c "<command> <in> <out>"`` for every (env, in, out, log) in
    ``calls``, at most ``jobs`` at a time; raise on the first failure."""
    pending = list(calls)
    running = []
    try:
        while pending or running:
            while pending and len(running) < jobs:
                env, inpath, outpath, logpath = pending.pop(0)
                line = "%s %s %s" % (command, shlex.quote(inpath),
                                     shlex.quote(outpath))
                log = open(logpath, "wb")
                proc = subprocess.Popen(["sh", "-c", line], cwd=HERE, env=env,
                                        stdout=log, stderr=subprocess.STDOUT,
                                        start_new_session=True)
                running.append((proc, log, line, logpath))
            proc, log, line, logpath = running.pop(0)
            status = proc.wait()
            log.close()
            if status != 0:
                with open(logpath, "r", encoding="utf-8",
                          errors="replace") as handle:
                    output = handle.read()
                raise fmnist.FmnistError("`%s` exited with status %d:\n%s"
                                         % (line, status, output))
    finally:
        # On failure or interruption, stop the clients still running (each
        # runs in its own process group: sh, run.sh and python).
        for proc, log, _, _ in running:
            try:
                os.killpg(proc.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            proc.wait()
            log.close()


def fedavg(models, weights):
    """Average lists of tensors, weighted; keeps the first model's dtypes."""
    total = float(sum(weights))
    return [(sum(m[k].astype(np.float64) * w for m, w in zip(models, weights))
             / total).astype(models[0][k].dtype)
            for k in range(len(models[0]))]


def client_env(args, index):
    """The environment of client ``index``."""
    env = dict(os.environ)
    env.update(FMNIST_CLIENT_INDEX=str(index),
               FMNIST_NUM_CLIENTS=str(args.clients),
               FMNIST_PARTITION=args.partition,
               FMNIST_ALPHA=str(args.alpha))
    return env


def parse_args(argv):
    """Command line of the simulation."""
    parser = argparse.ArgumentParser(prog=PROG, description=__doc__.split(
        "\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", choices=fmnist.MODEL_KINDS,
                        default="softmax")
    parser.add_argument("--hidden", default=str(fmnist.DEFAULT_HIDDEN),
                        help="mlp hidden size(s) for seed.py")
    parser.add_argument("--seed", type=int, default=0,
                        help="seed.py initialisation seed")
    parser.add_argument("--clients", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--partition", choices=fmnist.PARTITION_MODES,
                        default="iid")
    parser.add_argument("--alpha", type=float,
                        default=fmnist.DEFAULT_DIRICHLET_ALPHA)
    parser.add_argument("--settings", default="{}",
                        help="client_settings JSON object sent every round")
    parser.add_argument("--jobs", type=int, default=0,
                        help="client processes run at once (default: all "
                        "clients, as in a real session)")
    parser.add_argument("--keep", metavar="DIR",
                        help="work in DIR and keep it (default: a temporary "
                        "directory, removed at the end)")
    args = parser.parse_args(argv)
    if args.clients < 1 or args.rounds < 1:
        parser.error("--clients and --rounds must be >= 1")
    try:
        args.client_settings = json.loads(args.settings)
    except ValueError as exc:
        parser.error("--settings is not JSON: %s" % exc)
    if not isinstance(args.client_settings, dict):
        parser.error("--settings must be a JSON object")
    args.jobs = args.jobs if args.jobs > 0 else args.clients
    return args


def simulate(args, work):
    """Run the session in directory ``work``; returns the final metrics."""
    commands = entry_point_commands(os.path.join(HERE, "fedn.yaml"))
    started = time.monotonic()
    times = os.times()
    cpu_before = times.children_user + times.children_system
    model_path = os.path.join(work, "round-00.npz")
    seed_cmd = [os.path.join(HERE, "run.sh"), "seed.py", model_path,
                "--model", args.model, "--hidden", args.hidden,
                "--seed", str(args.seed)]
    subprocess.run(["sh"] + seed_cmd, check=True, stderr=subprocess.DEVNULL)
    print("model %s, %d clients, %s partition, %d rounds, client_settings %s, "
          "%d at a time" % (args.model, args.clients, args.partition,
                            args.rounds, json.dumps(args.client_settings),
                            args.jobs), flush=True)
    print("round  test_acc  test_loss  train_acc  train_loss  seconds",
          flush=True)
    metrics = {}
    for rnd in range(1, args.rounds + 1):
        rdir = os.path.join(work, "round-%02d" % rnd)
        os.makedirs(rdir)
        calls, outs = [], []
        for i in range(args.clients):
            inpath = os.path.join(rdir, "client-%d-in.npz" % i)
            shutil.copyfile(model_path, inpath)
            fmnist.write_json(inpath + "-metadata", args.client_settings)
            outpath = os.path.join(rdir, "client-%d-out.npz" % i)
            calls.append((client_env(args, i), inpath, outpath,
                          os.path.join(rdir, "client-%d-train.log" % i)))
            outs.append(outpath)
        run_clients(commands["train"], args.jobs, calls)

        models = [fmnist.load_model(path) for path in outs]
        weights = [fmnist.read_json_object(path + "-metadata",
                                           missing_ok=False)["num_examples"]
                   for path in outs]
        model_path = os.path.join(work, "round-%02d.npz" % rnd)
        fmnist.save_model(model_path, fedavg(models, weights),
                          dtype=models[0][0].dtype)

        calls = [(client_env(args, i), model_path,
                  os.path.join(rdir, "client-%d-validation.json" % i),
                  os.path.join(rdir, "client-%d-validate.log" % i))
                 for i in range(args.clients)]
        run_clients(commands["validate"], args.jobs, calls)
        results = [fmnist.read_json_object(call[2], missing_ok=False)
                   for call in calls]
        # Test metrics are the same for every client (whole test set);
        # training metrics are averaged, weighted by partition size.
        metrics = {key: float(np.average([r[key] for r in results],
                                         weights=weights))
                   for key in ("test_accuracy", "test_loss",
                               "training_accuracy", "training_loss")}
        print("%5d  %8.4f  %9.4f  %9.4f  %10.4f  %7.1f" % (
            rnd, metrics["test_accuracy"], metrics["test_loss"],
            metrics["training_accuracy"], metrics["training_loss"],
            time.monotonic() - started), flush=True)
    metrics["seconds"] = time.monotonic() - started
    times = os.times()
    metrics["cpu_seconds"] = (times.children_user + times.children_system
                              - cpu_before)
    print("final test_accuracy %.4f; total %.1f s wall, %.1f s CPU of the "
          "%d train + %d validate processes (load average now %.1f)"
          % (metrics["test_accuracy"], metrics["seconds"],
             metrics["cpu_seconds"], args.rounds * args.clients,
             args.rounds * args.clients, os.getloadavg()[0]))
    return metrics


def main(argv):
    """Parse arguments, run the simulation in a work directory."""
    args = parse_args(argv)
    # SIGTERM unwinds like Ctrl-C, so client processes and the temporary
    # directory are cleaned up.
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(143))
    if args.keep:
        os.makedirs(args.keep, exist_ok=True)
        simulate(args, args.keep)
    else:
        work = tempfile.mkdtemp(prefix="fmnist-sim-")
        try:
            simulate(args, work)
        finally:
            shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    fmnist.run_main(PROG, main)
