#!/usr/bin/env bash
# The README's main command: a federated training session on Fashion-MNIST.
#
# Installs what is missing, builds Rondo, then starts on loopback a Rondo
# controller, a combiner joined to it over the CAF middleman and N
# `rondo client` processes running examples/fashion-mnist (each on its own
# IID partition), seeds the global model, and runs a session of R rounds of
# FedAvg training with a validation round after each. Everything runs
# secured, as a federation across hosts must: a throwaway cluster CA and
# certificates (mutual TLS between controller and combiner), the
# controller's HTTP API over HTTPS with an admin token for the operator
# commands, TLS on the combiner's client port and one token per client, all
# in the output folder's certs/. Progress is printed per round; metrics.csv,
# session.json and final_model.npz land in the output folder, and the
# dashboard's address (with the admin token) is printed. Exits 0 when the
# session finished.
#
# Options: --rounds R (10)  --clients N (5)  --model softmax|mlp (softmax)
#          --out DIR (out/quickstart-<time>)
#          --keep-open: after the session, keep the controller, the
#          combiner and the clients running (to browse the dashboard) until
#          Ctrl-C
# Ctrl-C stops every process this script started.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
rounds=10
clients=5
model=softmax
out=""
keep_open=0
usage() { sed -n '2,23p' "$0" | sed 's/^# \{0,1\}//'; }
while [[ $# -gt 0 ]]; do
  case "$1" in
    -h|--help) usage; exit 0 ;;
    --keep-open) keep_open=1; shift ;;
    --rounds|--clients|--model|--out)
      if [[ $# -lt 2 ]]; then
        echo "quickstart: $1 needs a value (see --help)" >&2; exit 2
      fi
      case "$1" in
        --rounds) rounds=$2 ;;
        --clients) clients=$2 ;;
        --model) model=$2 ;;
        --out) out=$2 ;;
      esac
      shift 2 ;;
    *) echo "quickstart: unknown option $1 (see --help)" >&2; exit 2 ;;
  esac
done
case "$model" in softmax|mlp) ;; *)
  echo "quickstart: --model must be softmax or mlp, got $model" >&2; exit 2 ;;
esac
for pair in "rounds:$rounds" "clients:$clients"; do
  if ! [[ ${pair#*:} =~ ^[1-9][0-9]*$ ]]; then
    echo "quickstart: --${pair%%:*} must be a whole number >= 1, got" \
      "${pair#*:}" >&2
    exit 2
  fi
done
[[ -n "$out" ]] || out="$root/out/quickstart-$(date +%Y%m%d-%H%M%S)"
mkdir -p "$out"
out=$(cd "$out" && pwd)

"$root/deploy/install-deps.sh"
"$root/deploy/build.sh" --target rondo
rondo="$root/build/apps/rondo"
package="$root/examples/fashion-mnist"
python=/usr/bin/python3

# A throwaway cluster CA, one certificate per server (the loopback address
# and localhost as subjectAltNames), the tokens' secret, one token per
# client, each naming its client, and an admin token for the operator
# commands and the dashboard.
certs="$out/certs"
"$rondo" certs init "$certs" > /dev/null
for name in controller combiner-1; do
  "$rondo" certs issue "$certs" "$name" --host 127.0.0.1 --host localhost \
    > /dev/null
done
(umask 077 && head -c 48 /dev/urandom | base64 > "$certs/token-secret")
for ((i = 0; i < clients; i++)); do
  (umask 077 && "$rondo" token create --secret-file "$certs/token-secret" \
    --role client --client "client-$i" --ttl 1d > "$certs/client-$i.token")
done
(umask 077 && "$rondo" token create --secret-file "$certs/token-secret" \
  --role admin --ttl 1d > "$certs/admin.token")
# The mutual-TLS flags of each cluster member (the controller's certificate
# and key also serve its HTTP API over HTTPS).
controller_tls=(--cert "$certs/controller.crt" --key "$certs/controller.key"
  --ca "$certs/ca.crt")
combiner_tls=(--cert "$certs/combiner-1.crt" --key "$certs/combiner-1.key"
  --ca "$certs/ca.crt")

pids=()        # every process started here
client_pids=() # the clients among them
interrupted=0
cleanup() {
  # After Ctrl-C the controller and the combiner already have their SIGINT
  # and are stopping: give them 10 s before a SIGTERM (a second signal makes
  # them exit at once, skipping a clean shutdown). The clients, background
  # jobs of this script, ignore SIGINT as shells expect: stop them now.
  if [[ $interrupted == 1 ]]; then
    for pid in "${client_pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    for _ in $(seq 1 100); do
      alive=0
      for pid in "${pids[@]}"; do kill -0 "$pid" 2>/dev/null && alive=1; done
      [[ $alive == 0 ]] && break
      sleep 0.1
    done
  fi
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
}
trap cleanup EXIT
trap 'interrupted=1; exit 130' INT TERM

wait_port() { # FILE: the port a process writes once listening (bounded)
  for _ in $(seq 1 300); do
    [[ -s "$1" ]] && { cat "$1"; return 0; }
    sleep 0.1
  done
  echo "quickstart: no port in $1 after 30 s; see the logs in $out" >&2
  return 1
}

"$rondo" controller --host 127.0.0.1 --port 0 --port-file "$out/controller.port" \
  --http-port 0 --http-port-file "$out/controller-api.port" \
  --auth-secret-file "$certs/token-secret" \
  --db "$out/controller-db" "${controller_tls[@]}" > "$out/controller.log" 2>&1 &
pids+=($!)
cport=$(wait_port "$out/controller.port")
controller="127.0.0.1:$cport"
api="127.0.0.1:$(wait_port "$out/controller-api.port")"
"$rondo" combiner --host 127.0.0.1 --port 0 --port-file "$out/combiner.port" \
  --db "$out/combiner-db" --name combiner-1 --controller "$controller" \
  "${combiner_tls[@]}" --auth-secret-file "$certs/token-secret" \
  > "$out/combiner.log" 2>&1 &
pids+=($!)
port=$(wait_port "$out/combiner.port")
echo "quickstart: output in $out; controller on $controller (API on" \
  "https://$api), combiner on 127.0.0.1:$port (TLS, tokens; certificates" \
  "in $certs)"
echo "quickstart: dashboard: https://$api/#token=$(cat "$certs/admin.token")" \
  "(the browser must trust $certs/ca.crt, or accept the certificate)"

(cd "$package" && sh ./run.sh seed.py "$out/seed.npz" --model "$model")
# The compute package goes to the controller (FEDn's set_active_package);
# the clients join as FEDn clients do: through the API (clients/add assigns
# them the combiner), downloading the package and checking its sha256.
tar -czf "$out/package.tgz" -C "$(dirname "$package")" \
  --exclude=__pycache__ "$(basename "$package")"
curl --silent --show-error --fail-with-body --max-time 60 \
  --cacert "$certs/ca.crt" \
  -H "Authorization: Bearer $(cat "$certs/admin.token")" \
  -F "file=@$out/package.tgz" -F name=fashion-mnist -F helper=numpyhelper \
  -F "description=examples/fashion-mnist" \
  "https://$api/api/v1/packages/" > "$out/package-upload.json"
echo "quickstart: compute package $out/package.tgz uploaded to the controller"
for ((i = 0; i < clients; i++)); do
  FMNIST_CLIENT_INDEX=$i FMNIST_NUM_CLIENTS=$clients \
    "$rondo" client --api-url "https://$api" --name "client-$i" \
    --ca "$certs/ca.crt" --token-file "$certs/client-$i.token" \
    --work-dir "$out/client-$i" > "$out/client-$i.log" 2>&1 &
  pids+=($!)
  client_pids+=($!)
done

start=$(date +%s)
operator=(--controller "$api" --ca "$certs/ca.crt"
  --token-file "$certs/admin.token")
seed_id=$("$rondo" seed "${operator[@]}" "$out/seed.npz")
session="quickstart-$(date +%H%M%S)"
echo "quickstart: seed model $seed_id; session $session: $clients clients," \
  "$rounds rounds"
status=0
"$rondo" session start "${operator[@]}" --session-id "$session" \
  --rounds "$rounds" --clients-required "$clients" \
  --clients-requested "$clients" --round-timeout 180 --validate true \
  --model-id "$seed_id" --follow --metrics-csv "$out/metrics.csv" || status=$?
"$rondo" session status "${operator[@]}" "$session" --json \
  > "$out/session.json"
final=$($python -c 'import json, sys
rounds = json.load(open(sys.argv[1]))["rounds"]
ok = [r["model_id"] for r in rounds if r["status"] == "success"]
print(ok[-1] if ok else "")' "$out/session.json")
if [[ -n "$final" ]]; then
  "$rondo" models export "${operator[@]}" "$final" \
    "$out/final_model.npz"
fi
echo "quickstart: metrics -> $out/metrics.csv; report -> $out/session.json"
echo "quickstart: done in $(( $(date +%s) - start )) s"
if [[ $keep_open == 1 ]]; then
  echo "quickstart: --keep-open: the federation keeps running; dashboard:" \
    "https://$api/#token=$(cat "$certs/admin.token"); Ctrl-C stops it"
  trap 'interrupted=1; exit $status' INT TERM
  # Until Ctrl-C, or until the controller stops by itself.
  wait "${pids[0]}" || true
  echo "quickstart: the controller stopped; see $out/controller.log" >&2
fi
exit $status
