#!/usr/bin/env bash
# Installs the Debian 12 packages strata needs to build, test and run. Idempotent:
# when everything is present it only checks and returns.
set -euo pipefail

PACKAGES=(
  # toolchain
  g++ cmake ninja-build ccache pkg-config git
  # libraries (see README "Dependencies" for why each is there)
  libgrpc++-dev protobuf-compiler-grpc libprotobuf-dev protobuf-compiler
  librocksdb-dev libssl-dev libtomlplusplus-dev libcli11-dev libspdlog-dev nlohmann-json3-dev
  libcurl4-openssl-dev libisal-dev libzstd-dev zlib1g-dev
  libgtest-dev libgmock-dev libbenchmark-dev prometheus-cpp-dev
  libfuse3-dev fuse3
  # real components used by the tests and the benchmarks
  containerd runc busybox-static jq docker-registry skopeo umoci apache2-utils zstd attr pigz isal
  # ctr-remote: the converter whose eStargz and zstd:chunked layers the stargz interop test reads
  stargz-snapshotter
)

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
