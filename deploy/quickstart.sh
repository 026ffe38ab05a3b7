#!/usr/bin/env bash
# The README's main command: a federated training session on Fashion-MNIST.
#
# Installs what is missing, builds Rondo, then starts on loopback a Rondo
# combiner and N `rondo client` processes running examples/fashion-mnist
# (each on its own IID partition), seeds the global model, and runs R rounds
# of FedAvg training with a validation round after each. Progress is printed
# per round; metrics.csv and final_model.npz land in the output folder.
#
# Rounds are pushed to the combiner through FEDn's Control service (what
# FEDn's controller does); Rondo's own controller process comes later.
#
# Options: --rounds R (10)  --clients N (5)  --model softmax|mlp (softmax)
#          --out DIR (out/quickstart-<time>)
# Ctrl-C stops every process this script started.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
rounds=10
clients=5
model=softmax
out=""
usage() { sed -n '2,15p' "$0" | sed 's/^# \{0,1\}//'; }
while [[ $# -gt 0 ]]; do
  case "$1" in
    -h|--help) usage; exit 0 ;;
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

pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# Python stubs for the driver, from the same .proto the combiner serves.
mkdir -p "$out/stubs"
protoc -I "$root/messages/proto" --python_out="$out/stubs" \
  --grpc_python_out="$out/stubs" \
  --plugin=protoc-gen-grpc_python=/usr/bin/grpc_python_plugin \
  "$root/messages/proto/fedn.proto"

port=$($python -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
echo "quickstart: output in $out; combiner on 127.0.0.1:$port"
"$rondo" combiner --host 127.0.0.1 --port "$port" --db "$out/combiner-db" \
  --name combiner-1 > "$out/combiner.log" 2>&1 &
pids+=($!)

(cd "$package" && sh ./run.sh seed.py "$out/seed.npz" --model "$model")
for ((i = 0; i < clients; i++)); do
  FMNIST_CLIENT_INDEX=$i FMNIST_NUM_CLIENTS=$clients \
    "$rondo" client --host 127.0.0.1 --port "$port" --name "client-$i" \
    --package "$package" > "$out/client-$i.log" 2>&1 &
  pids+=($!)
done

start=$(date +%s)
$python "$root/deploy/quickstart.py" --port "$port" --out "$out" \
  --stubs "$out/stubs" --rounds "$rounds" --clients "$clients" \
  --seed "$out/seed.npz"
echo "quickstart: done in $(( $(date +%s) - start )) s"
