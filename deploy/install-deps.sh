#!/usr/bin/env bash
# Installs every Debian 12 package that Rondo's build, tests, benchmarks and
# quickstart need. Idempotent: when all are present it changes nothing and
# does not touch the network. Nothing is fetched from anywhere but apt.
set -euo pipefail

packages=(
  # toolchain
  build-essential cmake ninja-build ccache pkg-config
  # libraries
  libcaf-dev libprotobuf-dev protobuf-compiler libgrpc++-dev
  protobuf-compiler-grpc librocksdb-dev doctest-dev libzip-dev zlib1g-dev
  libisal-dev
  libspdlog-dev libfmt-dev libcli11-dev libyaml-cpp-dev nlohmann-json3-dev
  libssl-dev libxxhash-dev uuid-dev libjwt-dev
  # the operator API: HTTP(S), Prometheus metrics, compute package archives
  libcpp-httplib-dev prometheus-cpp-dev libarchive-dev
  # security: fuzzing (libFuzzer) and certificate checks in the tests
  clang-14 libfuzzer-14-dev libclang-rt-14-dev openssl
  # Python side: test client, example compute package, numpy comparisons
  python3 python3-numpy python3-grpcio python3-protobuf python3-requests
  # the quickstart uploads its compute package to the API with curl
  curl
  # the dashboard's browser test: headless Chromium driven by selenium
  chromium chromium-driver python3-selenium
  # the multi-host tests and deploy/cluster-netns.sh: network namespaces,
  # veth, a bridge and tc (ip, tc)
  iproute2
  # real data for the main job
  dataset-fashion-mnist
)

missing=()
for p in "${packages[@]}"; do
  status=$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null || true)
  [[ "$status" == "install ok installed" ]] || missing+=("$p")
done

if [[ ${#missing[@]} -eq 0 ]]; then
  echo "install-deps: all ${#packages[@]} packages present"
  exit 0
fi

sudo=""
if [[ $(id -u) -ne 0 ]]; then
  command -v sudo >/dev/null || {
    echo "install-deps: need root or sudo to install: ${missing[*]}" >&2
    exit 1
  }
  sudo="sudo"
fi
echo "install-deps: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -q
$sudo apt-get install -y -q --no-install-recommends "${packages[@]}"
