#!/usr/bin/python3
"""Drives the quickstart federation: seeds the global model, runs R rounds
of FedAvg training plus a validation round after each on a running Rondo
combiner (through FEDn's Control service, which FEDn's controller uses to
start rounds on a combiner), prints per-round progress, and writes
metrics.csv and the final global model into the output folder.

Usage: quickstart.py --port P --out DIR --stubs DIR --rounds R --clients N
                     --seed FILE [--round-timeout S] [--client-settings JSON]

Everything it waits for is bounded: the combiner's readiness (gRPC
channel_ready with a timeout) and each round (gRPC deadline).
"""

import argparse
import csv
import json
import os
import sys
import time
import uuid

CHUNK = 1 << 20  # FEDn's transfer chunk size


def parse_args():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--stubs", required=True)
    p.add_argument("--rounds", type=int, default=10)
    p.add_argument("--clients", type=int, default=5)
    p.add_argument("--seed", required=True, help="seed model npz")
    p.add_argument("--round-timeout", type=float, default=180)
    p.add_argument("--client-settings", default="{}")
    return p.parse_args()


def upload(models, fedn, model_id, path):
    """Streams `path` to the combiner's model store as `model_id`."""
    def requests():
        with open(path, "rb") as f:
            while True:
                data = f.read(CHUNK)
                if not data:
                    break
                yield fedn.ModelRequest(id=model_id, data=data,
                                        status=fedn.IN_PROGRESS)
        yield fedn.ModelRequest(id=model_id, status=fedn.OK)
    reply = models.Upload(requests(), timeout=120)
    if reply.status != fedn.OK:
        raise RuntimeError(f"upload of {model_id} failed: {reply.message}")


def download(models, fedn, model_id, path):
    """Writes model `model_id` from the combiner to `path`."""
    tmp = path + ".partial"
    with open(tmp, "wb") as f:
        for r in models.Download(fedn.ModelRequest(id=model_id), timeout=120):
            if r.status == fedn.IN_PROGRESS:
                f.write(r.data)
            elif r.status == fedn.OK:
                break
            else:
                raise RuntimeError(f"download of {model_id} failed: "
                                   f"{r.message}")
    os.replace(tmp, path)


def run_round(control, fedn, config, timeout):
    """Starts one round on the combiner and waits for its terminal record."""
    params = [fedn.Parameter(key=k, value=str(v)) for k, v in config.items()]
    params.append(fedn.Parameter(key="wait", value="true"))
    reply = control.Start(fedn.ControlRequest(command=fedn.START,
                                              parameter=params),
                          timeout=timeout)
    return {p.key: p.value for p in reply.parameter}


def main():
    args = parse_args()
    sys.path.insert(0, args.stubs)
    import grpc
    import fedn_pb2 as fedn
    import fedn_pb2_grpc as rpc

    channel = grpc.insecure_channel(
        f"{args.host}:{args.port}",
        options=[("grpc.max_receive_message_length", 8 << 20)])
    grpc.channel_ready_future(channel).result(timeout=60)
    models = rpc.ModelServiceStub(channel)
    control = rpc.ControlStub(channel)

    session = "quickstart-" + uuid.uuid4().hex[:8]
    model_id = "seed-" + uuid.uuid4().hex[:8]
    upload(models, fedn, model_id, args.seed)
    print(f"quickstart: session {session}, seed model {model_id}, "
          f"{args.clients} clients, {args.rounds} rounds", flush=True)
    print(f"{'round':>5} {'status':>8} {'asked':>5} {'accepted':>8} "
          f"{'seconds':>8} {'val_acc':>8} {'val_loss':>8}", flush=True)
    # The first round also waits for the clients to connect.
    wait = args.round_timeout + 120
    rows = []
    failed = 0
    for r in range(1, args.rounds + 1):
        t0 = time.monotonic()
        train = run_round(control, fedn, {
            "round_id": str(r), "session_id": session, "model_id": model_id,
            "task": "training", "round_timeout": args.round_timeout,
            "clients_required": args.clients, "buffer_size": -1,
            "max_clients": args.clients, "validate": "false",
            "client_settings": args.client_settings,
        }, wait)
        asked = len(json.loads(train.get("clients_selected", "[]")))
        accepted = int(train.get("nr_aggregated_models", "0"))
        acc = loss = float("nan")
        if train.get("status") == "success":
            model_id = train["model_id"]
            val = run_round(control, fedn, {
                "round_id": f"{r}-validation", "session_id": session,
                "model_id": model_id, "task": "validation",
                "round_timeout": args.round_timeout,
                "clients_required": args.clients,
                "max_clients": args.clients,
            }, wait)
            metrics = [v["metrics"] for v in
                       json.loads(val.get("validations", "[]"))]
            if metrics:
                acc = sum(m["test_accuracy"] for m in metrics) / len(metrics)
                loss = sum(m["test_loss"] for m in metrics) / len(metrics)
        else:
            failed += 1
            print(f"quickstart: round {r} failed: {train.get('reason')}",
                  flush=True)
        seconds = time.monotonic() - t0
        rows.append([r, train.get("status"), asked, accepted,
                     f"{seconds:.2f}", f"{acc:.4f}", f"{loss:.4f}"])
        print(f"{r:>5} {train.get('status'):>8} {asked:>5} {accepted:>8} "
              f"{seconds:>8.2f} {acc:>8.4f} {loss:>8.4f}", flush=True)

    with open(os.path.join(args.out, "metrics.csv"), "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["round", "status", "clients_asked", "updates_accepted",
                    "seconds", "val_accuracy", "val_loss"])
        w.writerows(rows)
    final = os.path.join(args.out, "final_model.npz")
    download(models, fedn, model_id, final)
    print(f"quickstart: final global model {model_id} -> {final}")
    print(f"quickstart: metrics -> {os.path.join(args.out, 'metrics.csv')}")
    return 1 if failed == args.rounds else 0


if __name__ == "__main__":
    sys.exit(main())
