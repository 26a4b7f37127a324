#!/usr/bin/env bash
# Builds the stargz-snapshotter gRPC daemon used as the reference peer in the
# benchmarks (bench/peers/stargz-grpc/main.go) from Debian 12's packaged Go sources
# only, offline: GOPATH mode over /usr/share/gocode, no module proxy, no downloads.
#
#   bench/peers/build_stargz_peer.sh OUTPUT_BINARY
#
# Needs the "benchmark peers" packages (scripts/install-deps.sh --bench-peers); when
# they are missing this runs that script, which installs them as root or says what
# to install otherwise. Environment: GOCACHE (Go's build cache; default Go's own),
# STARGZ_PEER_NICE (default 19).
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
GOCODE=/usr/share/gocode
LIB="$GOCODE/src/github.com/containerd/stargz-snapshotter"

die() { echo "build_stargz_peer: $*" >&2; exit 1; }

[[ $# -eq 1 && -n "$1" && "$1" != -* ]] || die "usage: $0 OUTPUT_BINARY"
out=$1
[[ "$out" == /* ]] || out="$PWD/$out"

if ! command -v go >/dev/null 2>&1 || [[ ! -d "$LIB/fs" ]]; then
  echo "build_stargz_peer: Go or Debian's stargz-snapshotter sources missing; running install-deps --bench-peers" >&2
  "$REPO/scripts/install-deps.sh" --bench-peers
  command -v go >/dev/null 2>&1 || die "go is still missing"
  [[ -d "$LIB/fs" ]] || die "$LIB is still missing"
fi

work=$(mktemp -d "${TMPDIR:-/tmp}/stargz-peer-build.XXXXXX")
trap 'rm -rf "$work" "$out.tmp"' EXIT
# Our main lives in a private GOPATH entry; every import resolves in Debian's tree.
pkgdir="$work/src/strata.local/stargz-grpc"
mkdir -p "$pkgdir" "$(dirname "$out")"
cp "$HERE/stargz-grpc/main.go" "$pkgdir/"

export GO111MODULE=off GOPATH="$work:$GOCODE" GOPROXY=off GOFLAGS='' GOENV=off \
  GONOSUMDB='' GOPRIVATE='' GOSUMDB=off CGO_ENABLED=0
lib_version=$(dpkg-query -W -f='${Version}' golang-github-containerd-stargz-snapshotter-dev 2>/dev/null || echo unknown)
echo "build_stargz_peer: $(go version), stargz-snapshotter library $lib_version -> $out" >&2
(cd "$pkgdir" && nice -n "${STARGZ_PEER_NICE:-19}" go build -trimpath \
  -ldflags "-s -w" -o "$out.tmp" .)
mv -f "$out.tmp" "$out"
echo "build_stargz_peer: built $out" >&2
