#!/usr/bin/env bash
# A multi-host Rondo federation on this machine, one network namespace per
# host, to look at (needs root and iproute2).
#
#   deploy/cluster-netns.sh up [--combiners K (3)] [--clients N (6)]
#                              [--client-hosts M (3)] [--out DIR]
#   deploy/cluster-netns.sh down [PREFIX]   (default: the last `up`)
#   deploy/cluster-netns.sh list
#
# `up` installs what is missing, builds rondo, then (deploy/netns_cluster.py,
# left running in the background) makes a bridge and one namespace per
# host on a private 10.x.y.0/24: the controller, K combiners, M client
# hosts; starts the controller and the combiners bound to their hosts'
# addresses with TLS and tokens (a throwaway CA, a certificate per node,
# the tokens' secret and an admin token in DIR/certs), uploads
# examples/fashion-mnist as the compute package, starts N `rondo client
# --api-url` processes spread over the client hosts (each asks the
# controller's clients/add for a combiner, downloads the package and
# trains on its own Fashion-MNIST partition), seeds the global model and
# prints the dashboard's URL and the operator commands. The root namespace
# reaches the subnet through the bridge (it holds the subnet's .1);
# nothing listens outside the namespaces. `down` stops every process and
# removes the namespaces, links and bridge (also after a crash of `up`).
# Logs, databases and certificates: DIR (default out/cluster-netns-PREFIX).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
harness="$root/deploy/netns_cluster.py"
current="$root/out/cluster-netns.current"
python=/usr/bin/python3
usage() { sed -n '2,24p' "$0" | sed 's/^# \{0,1\}//'; }

[[ $# -ge 1 ]] || { usage; exit 2; }
command=$1
shift
if [[ $EUID -ne 0 ]]; then
  echo "cluster-netns: network namespaces need root" >&2
  exit 1
fi

case "$command" in
  -h|--help) usage; exit 0 ;;
  list) exec "$python" "$harness" list ;;
  down)
    prefix=${1:-}
    if [[ -z "$prefix" ]]; then
      [[ -s "$current" ]] || {
        echo "cluster-netns: no run recorded in $current; give a PREFIX" \
          "(see: $0 list)" >&2
        exit 1
      }
      prefix=$(cat "$current")
    fi
    "$python" "$harness" down "$prefix"
    if [[ -s "$current" && $(cat "$current") == "$prefix" ]]; then
      rm -f "$current"
    fi
    exit 0 ;;
  up) ;;
  *) echo "cluster-netns: unknown command $command (up, down, list)" >&2
     exit 2 ;;
esac

combiners=3
clients=6
client_hosts=3
out=""
while [[ $# -gt 0 ]]; do
  case "$1" in
    --combiners|--clients|--client-hosts|--out)
      [[ $# -ge 2 ]] || { echo "cluster-netns: $1 needs a value" >&2; exit 2; }
      case "$1" in
        --combiners) combiners=$2 ;;
        --clients) clients=$2 ;;
        --client-hosts) client_hosts=$2 ;;
        --out) out=$2 ;;
      esac
      shift 2 ;;
    *) echo "cluster-netns: unknown option $1 (see --help)" >&2; exit 2 ;;
  esac
done
for pair in "combiners:$combiners" "clients:$clients" \
            "client-hosts:$client_hosts"; do
  if ! [[ ${pair#*:} =~ ^[1-9][0-9]?$ ]]; then
    echo "cluster-netns: --${pair%%:*} must be a whole number 1..99, got" \
      "${pair#*:}" >&2
    exit 2
  fi
done

"$root/deploy/install-deps.sh"
"$root/deploy/build.sh" --target rondo
rondo="$root/build/apps/rondo"

mkdir -p "$root/out"
[[ -n "$out" ]] || out="$root/out/cluster-netns-$(date +%Y%m%d-%H%M%S)"
mkdir -p "$out"
out=$(cd "$out" && pwd)
rm -f "$out/cluster.json"
# The harness owns the namespaces and processes; it removes them on
# SIGTERM (what `down` sends) and on any failure.
setsid "$python" "$harness" up --rondo "$rondo" --combiners "$combiners" \
  --clients "$clients" --client-hosts "$client_hosts" --out "$out" \
  < /dev/null > "$out/harness.log" 2>&1 &
owner=$!
for _ in $(seq 1 1200); do  # 120 s at most
  [[ -s "$out/cluster.json" ]] && break
  if ! kill -0 "$owner" 2>/dev/null; then
    echo "cluster-netns: the harness stopped; its log ($out/harness.log):" >&2
    tail -n 30 "$out/harness.log" >&2
    exit 1
  fi
  sleep 0.1
done
if [[ ! -s "$out/cluster.json" ]]; then
  echo "cluster-netns: not up after 120 s; see $out/harness.log" >&2
  kill "$owner" 2>/dev/null || true
  exit 1
fi
field() { "$python" -c 'import json, sys
print(json.load(open(sys.argv[1]))[sys.argv[2]])' "$out/cluster.json" "$1"; }
prefix=$(field prefix)
api=$(field api)
echo "$prefix" > "$current"
op="--controller $api --ca $out/certs/ca.crt --token-file $out/certs/admin.token"

(cd "$root/examples/fashion-mnist" && sh ./run.sh seed.py "$out/seed.npz")
# shellcheck disable=SC2086
seed_id=$("$rondo" seed $op "$out/seed.npz")

echo
echo "cluster-netns: run $prefix up on $(field subnet): controller," \
  "$combiners combiner(s), $clients client(s) on $client_hosts client host(s)"
"$python" -c 'import json, sys
c = json.load(open(sys.argv[1]))
for name, h in sorted(c["hosts"].items()):
    print("  %-4s %-15s namespace %s" % (name, h["ip"], h["namespace"]))' \
  "$out/cluster.json"
echo "cluster-netns: seed model $seed_id; logs, databases and certificates" \
  "in $out"
echo "cluster-netns: dashboard (trust $out/certs/ca.crt, or accept the" \
  "certificate): $(field dashboard)"
echo "cluster-netns: operator commands:"
echo "  op=\"$op\""
echo "  $rondo session start \$op --rounds 5 --clients-required 1 --follow"
echo "  $rondo models list \$op"
echo "  $rondo combiners list \$op"
echo "  $rondo combiners drain combiner-2 \$op   # scale-in: its clients move"
echo "  ip netns exec $prefix-cl1 ...  # run something on client host 1"
echo "cluster-netns: stop it all with: $0 down"
