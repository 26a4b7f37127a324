#!/usr/bin/env bash
# Installs the Debian 12 packages strata needs to build, test and run. Idempotent:
# when everything is present it only checks and returns.
#
#   scripts/install-deps.sh                 strata's own packages
#   scripts/install-deps.sh --bench-peers   those plus the optional benchmark-peer group
set -euo pipefail

with_bench_peers=0
for arg in "$@"; do
  case "$arg" in
    --bench-peers) with_bench_peers=1 ;;
    -h | --help)
      sed -n '2,6p' "$0" | sed 's/^# \{0,1\}//'
      exit 0
      ;;
    *)
      echo "install-deps: unknown argument: $arg (see --help)" >&2
      exit 2
      ;;
  esac
done

PACKAGES=(
  # toolchain
  g++ cmake ninja-build ccache pkg-config git
  # libraries (see README "Dependencies" for why each is there)
  libgrpc++-dev protobuf-compiler-grpc libprotobuf-dev protobuf-compiler libabsl-dev
  librocksdb-dev libssl-dev libtomlplusplus-dev libcli11-dev libspdlog-dev nlohmann-json3-dev
  libcurl4-openssl-dev libisal-dev libzstd-dev zlib1g-dev libsimdjson-dev
  libgtest-dev libgmock-dev libbenchmark-dev prometheus-cpp-dev
  libfuse3-dev fuse3 libyaml-cpp-dev
  # real components used by the tests and the benchmarks
  containerd runc crun runsc busybox-static jq docker-registry skopeo umoci apache2-utils zstd attr pigz isal
  # ctr-remote: the converter whose eStargz and zstd:chunked layers the stargz interop test reads
  stargz-snapshotter
)

# Optional group "benchmark peers", installed only with --bench-peers (the bench
# scripts pass it): Go and Debian's packaged stargz-snapshotter library sources, from
# which bench/peers/build_stargz_peer.sh builds the stargz gRPC snapshotter daemon
# offline (Debian ships only ctr-remote, not containerd-stargz-grpc). The -dev
# package pulls in the rest of the Go dependency closure; the others are the
# daemon's direct imports, listed so a change in its Depends cannot break the build.
BENCH_PEER_PACKAGES=(
  golang-go golang-github-containerd-stargz-snapshotter-dev
  golang-github-containerd-containerd-dev golang-github-docker-go-metrics-dev
  golang-github-hashicorp-go-retryablehttp-dev golang-github-moby-sys-dev
  golang-github-pelletier-go-toml-dev golang-github-sirupsen-logrus-dev
  golang-google-grpc-dev
)
if ((with_bench_peers)); then
  PACKAGES+=("${BENCH_PEER_PACKAGES[@]}")
fi

missing=()
for p in "${PACKAGES[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done

if ((${#missing[@]} == 0)); then
  echo "install-deps: all ${#PACKAGES[@]} packages present"
  exit 0
fi

if [[ $(id -u) -ne 0 ]]; then
  echo "install-deps: missing packages: ${missing[*]}; run as root to install them" >&2
  exit 1
fi
echo "install-deps: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -q
apt-get install -y -q --no-install-recommends "${missing[@]}"
# Debian's containerd package starts a system containerd; strata's tests and
# benchmarks run their own private instances and do not need it.
