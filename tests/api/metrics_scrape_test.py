#!/usr/bin/env python3
"""Prometheus metrics of a real federation: a controller (bearer tokens on
its HTTP port), a combiner with --metrics-port and three `rondo client`s,
one of which uploads NaN weights (the combiner rejects its model updates as
non-finite). After a 2-round session with validation:

- the combiner's /metrics counts its training and validation rounds, the
  accepted and rejected (class nonfinite) model updates, the validations,
  the active trainers and the model bytes moved through its edge;
- the controller's /metrics needs an admin token (401 without, 403 with a
  client token) and its rounds and accepted/rejected counters equal the
  figures of `rondo session status --json` (clients_accepted and
  clients_rejected summed over rounds); rondo_sessions{status="finished"}
  is 1 and the /metrics requests themselves are counted.

Case combiner_token: a combiner with --auth-secret-file wants an admin
token on its /metrics (401 without, 403 with a client token).

Usage: metrics_scrape_test.py --case NAME [--keep]; RONDO_BIN names the
binary. Exit 0 on success, 1 on a failed check (with the logs' tails).
"""

import argparse
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from federation import check, http_get, parse_metrics, run_case  # noqa

CLIENTS = {"c1": (1.0, 10), "c2": (3.0, 30), "bad": ("nan", 20)}


def training(series, **labels):
    labels.setdefault("kind", "training")
    return series + "{" + ",".join(
        '%s="%s"' % kv for kv in sorted(labels.items())) + "}"


def session_and_scrape(f):
    seed = f.seed()
    r = f.cli("session", "start", "--session-id", "s1", "--rounds", "2",
              "--clients-required", "2", "--round-timeout", "60",
              "--validate", "true", "--model-id", seed, "--follow",
              timeout=240)
    check(r.returncode == 0, "session s1 finished:\n" + r.stdout + r.stderr)
    report = json.loads(f.cli("session", "status", "s1", "--json").stdout)
    rounds = report["rounds"]
    succeeded = sum(1 for x in rounds if x["status"] == "success")
    accepted = sum(len(x["clients_accepted"]) for x in rounds)
    rejected = sum(len(x["clients_rejected"]) for x in rounds)
    check(succeeded == 2 and accepted == 4 and rejected == 2,
          "the session report: 2 rounds succeeded, 4 updates accepted, 2 "
          "rejected (got %d, %d, %d)" % (succeeded, accepted, rejected))

    # The combiner: no auth secret, so its scrape is open.
    status, text = http_get(f.combiner_metrics)
    check(status == 200, "the combiner's /metrics answers 200")
    m = parse_metrics(text)
    check(m.get(training("rondo_rounds_total", status="success")) == 2,
          "combiner: 2 training rounds succeeded")
    check(m.get(training("rondo_rounds_total", kind="validation",
                         status="success")) == 2,
          "combiner: 2 validation rounds succeeded")
    check(m.get(training("rondo_updates_accepted_total")) == 4,
          "combiner: 4 model updates accepted")
    check(m.get(training("rondo_updates_rejected_total",
                         reason="nonfinite")) == 2,
          "combiner: 2 model updates rejected as nonfinite")
    check(m.get(training("rondo_updates_accepted_total",
                         kind="validation")) == 6,
          "combiner: 6 validations accepted (3 validators, 2 rounds)")
    check(m.get('rondo_active_clients{role="trainer"}') == 3,
          "combiner: 3 active trainers")
    check(m.get(training("rondo_round_duration_seconds_count")) == 2,
          "combiner: 2 training round durations observed")
    check(m.get('rondo_aggregation_seconds_count{step="update"}', 0) >= 4,
          "combiner: each accepted update's aggregation timed")
    # 6 uploads of a 3-float model and 12 downloads (6 to train, 6 to
    # validate), each at least the model's size.
    up = m.get("rondo_model_bytes_uploaded_total", 0)
    down = m.get("rondo_model_bytes_downloaded_total", 0)
    check(up >= 6 * 12 and down >= 12 * 12,
          "combiner: model bytes uploaded %d and downloaded %d" % (up, down))
    check(m.get("rondo_models_stored", 0) >= 1,
          "combiner: models stored gauge is set")

    # The controller: an admin token is needed.
    url = f.api + "/metrics"
    check(http_get(url)[0] == 401, "controller /metrics without a token: 401")
    check(http_get(url, f.token("client"))[0] == 403,
          "controller /metrics with a client token: 403")
    status, text = http_get(url, f.admin)
    check(status == 200, "controller /metrics with an admin token: 200")
    m = parse_metrics(text)
    check(m.get(training("rondo_rounds_total", status="success"))
          == succeeded,
          "controller: rondo_rounds_total{status=success} equals the "
          "report's %d" % succeeded)
    check(m.get(training("rondo_rounds_total", status="failed")) == 0,
          "controller: no failed round")
    check(m.get(training("rondo_updates_accepted_total")) == accepted,
          "controller: updates accepted equal the report's %d" % accepted)
    rejected_metric = sum(v for k, v in m.items()
                          if k.startswith("rondo_updates_rejected_total"))
    check(rejected_metric == rejected,
          "controller: updates rejected (%d) equal the report's %d"
          % (rejected_metric, rejected))
    check(m.get(training("rondo_updates_rejected_total",
                         reason="nonfinite")) == rejected,
          "controller: the rejections are of class nonfinite")
    check(m.get('rondo_sessions{status="finished"}') == 1,
          "controller: one finished session")
    check(m.get("rondo_models_stored") == 3,
          "controller: 3 models stored (the seed and 2 rounds')")
    check(m.get('rondo_http_requests_total{code="401",method="GET",'
                'route="/metrics"}') == 1,
          "controller: the refused scrape was counted")


def combiner_token(f, work):
    """A standalone combiner with --auth-secret-file: its /metrics needs an
    admin token too."""
    f.start_combiner(["--auth-secret-file", f.secret_file])
    url = f.combiner_metrics
    check(http_get(url)[0] == 401, "combiner /metrics without a token: 401")
    check(http_get(url, f.token("client"))[0] == 403,
          "combiner /metrics with a client token: 403")
    status, text = http_get(url, f.token("admin"))
    check(status == 200 and "rondo_rounds_total" in text,
          "combiner /metrics with an admin token: 200 and the families")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--case", required=True,
                    choices=["session_counters", "combiner_token"])
    ap.add_argument("--keep", action="store_true")
    args = ap.parse_args()

    def body(f, work):
        if args.case == "combiner_token":
            combiner_token(f, work)
            return
        f.start(clients=CLIENTS)
        session_and_scrape(f)

    return run_case("rondo-metrics-", body, args.keep)


if __name__ == "__main__":
    sys.exit(main())
