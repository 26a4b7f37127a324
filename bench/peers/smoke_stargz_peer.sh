#!/usr/bin/env bash
# Smoke test of the stargz peer daemon with real components: Debian's containerd
# loads it as proxy snapshotter "stargz"; an image converted to eStargz by Debian's
# ctr-remote sits in Debian's docker-registry on loopback (plain HTTP);
# `ctr-remote image rpull --snapshotter stargz` mounts its layers lazily (FUSE) and
# `ctr run --snapshotter stargz` reads them. Also checks that SIGTERM unmounts the
# layers and that a restart mounts them again. Needs root.
#
#   bench/peers/smoke_stargz_peer.sh [STARGZ_GRPC_BINARY]
#
# STRATA_BUILD_DIR=build also converts the image with `strata image convert --estargz`
# and checks that the peer reads strata's eStargz. Without an argument the daemon is
# built first (build_stargz_peer.sh) into the
# test's private directory. Uses the e2e helpers of tests/e2e (lib.sh,
# registry_lib.sh); everything lives in a temp dir removed at exit (E2E_KEEP=1
# keeps it).
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
E2E="$HERE/../../tests/e2e"
# shellcheck source=../../tests/e2e/lib.sh
source "$E2E/lib.sh"
# shellcheck source=../../tests/e2e/registry_lib.sh
source "$E2E/registry_lib.sh"

for tool in containerd ctr ctr-remote runc containerd-shim-runc-v2 busybox jq skopeo docker-registry; do
  command -v "$tool" >/dev/null || { echo "FAIL: $tool is not installed (scripts/install-deps.sh)"; exit 1; }
done
[[ $(id -u) -eq 0 ]] || { echo "FAIL: needs root (FUSE, overlayfs, containerd)"; exit 1; }

e2e_init strata-stargz-peer
if [[ $# -ge 1 ]]; then
  PEER=$(realpath "$1")
else
  PEER="$E2E_DIR/stargz-grpc"
  "$HERE/build_stargz_peer.sh" "$PEER" || die "build_stargz_peer.sh failed"
fi

PEER_ROOT="$E2E_DIR/stargz-root"
PEER_SOCK="$E2E_DIR/stargz.sock"
PEER_LOG="$E2E_DIR/stargz-grpc.log"
METRICS_PORT=$(registry_free_port)
# lib.sh's cleanup stops $STRATAD_PID; the peer takes that slot.
start_peer() {
  "$PEER" --root "$PEER_ROOT" --address "$PEER_SOCK" --log-level debug \
    --metrics-address "127.0.0.1:$METRICS_PORT" "$@" >>"$PEER_LOG" 2>&1 &
  STRATAD_PID=$!
  log "stargz-grpc pid $STRATAD_PID, socket $PEER_SOCK"
  wait_while_alive "$STRATAD_PID" 30 test -S "$PEER_SOCK" ||
    die "stargz-grpc did not start: $(tail -n 20 "$PEER_LOG")"
}
start_peer

# containerd with a private root, state and sockets, and the peer as proxy plugin.
start_containerd stargz "$PEER_SOCK"

check "the proxy plugin answers: ctr snapshots --snapshotter stargz ls" \
  ctr_ snapshots --snapshotter stargz ls
check "the proxy plugin is listed by containerd" \
  grep -q 'io.containerd.snapshotter.v1 *stargz .*ok' <(ctr_ plugins ls)

# ---- the image: strata's test image, converted to eStargz ------------------------
# shellcheck disable=SC2119  # default flags
start_registry
make_test_image "$E2E_DIR/image"
SRC="$REGISTRY_ADDR/peer/test:gzip"
REF="$REGISTRY_ADDR/peer/test:estargz"
check "gzip test image pushed" push_oci_layout "$E2E_DIR/image" "$SRC"
ns_ctr() { ctr --address "$CONTAINERD_SOCK" --namespace "$1" "${@:2}"; }
check "gzip image pulled for conversion" ns_ctr build images pull --plain-http "$SRC"
check "ctr-remote converts it to eStargz" \
  ctr-remote --address "$CONTAINERD_SOCK" --namespace build images convert --oci --estargz "$SRC" "$REF"
check "eStargz image pushed" ns_ctr build images push --plain-http "$REF"

# With STRATA_BUILD_DIR set: the same image converted by `strata image convert
# --estargz` must be read by stargz-snapshotter too (interop of strata's writer).
if [[ -n ${STRATA_BUILD_DIR:-} ]]; then
  STRATA_REF="$REGISTRY_ADDR/peer/test:strata-estargz"
  "$STRATA_BUILD_DIR/stratad" --root "$E2E_DIR/strata-root" --address "$E2E_DIR/strata.sock" \
    >"$E2E_DIR/stratad.log" 2>&1 &
  strata_pid=$!
  wait_while_alive "$strata_pid" 30 test -S "$E2E_DIR/strata.sock" || die "stratad did not start"
  check "strata image convert --estargz --push" "$STRATA_BUILD_DIR/strata" --address "$E2E_DIR/strata.sock" \
    image convert --estargz --push "$SRC" "$STRATA_REF"
  kill -TERM "$strata_pid"
  wait "$strata_pid" || true
  out=$(ctr-remote --address "$CONTAINERD_SOCK" --namespace "$CTR_NAMESPACE" image rpull --plain-http \
    --snapshotter stargz "$STRATA_REF" 2>&1) || fail "stargz rpull of strata's eStargz" "$out"
  out=$(ctr_ run --rm --snapshotter stargz "$STRATA_REF" peer-strata sh -c \
    'cat /data/hello.txt /etc/layer3; ls /opaque' 2>&1) || fail "stargz run of strata's eStargz" "$out"
  check_contains "stargz-snapshotter reads strata's eStargz (layer 2)" "$out" "hello from layer 2"
  check_contains "stargz-snapshotter reads strata's eStargz (layer 3)" "$out" "third layer"
  check_contains "stargz-snapshotter honours strata's opaque directory" "$out" "new.txt"
  check "strata's image removed" ctr_ images rm --sync "$STRATA_REF"
fi

# FUSE mounts of the peer (go-fuse names them "stargz").
lazy_mounts() {
  awk -v dir="$PEER_ROOT/" 'index($5, dir) == 1 && $0 ~ / - fuse[^ ]* stargz / { n++ } END { print n + 0 }' \
    /proc/self/mountinfo
}

# ---- lazy pull and run ------------------------------------------------------------
out=$(ctr-remote --address "$CONTAINERD_SOCK" --namespace "$CTR_NAMESPACE" image rpull --plain-http \
  --snapshotter stargz "$REF" 2>&1) || fail "ctr-remote rpull --snapshotter stargz" "$out"
pass "ctr-remote rpull --snapshotter stargz"
check_eq "the three layers are lazy FUSE mounts" "$(lazy_mounts)" 3
snaps=$(ctr_ snapshots --snapshotter stargz ls)
check "the layer snapshots are committed" grep -q Committed <<<"$snaps"
mounts_metric=$(curl -sS "http://127.0.0.1:$METRICS_PORT/metrics" |
  awk '/^stargz_fs_operation_duration_milliseconds_count\{.*operation_type="mount"/ { s += $2 } END { print s + 0 }')
expected_mounts=3
[[ -z ${STRATA_BUILD_DIR:-} ]] || expected_mounts=6  # strata's image was mounted too
check_eq "metrics: every layer mount recorded" "$mounts_metric" "$expected_mounts"
out=$(ctr_ run --rm --snapshotter stargz "$REF" peer-read-1 sh -c 'cat /data/hello.txt /etc/layer3; ls /opaque' 2>&1) ||
  fail "ctr run --snapshotter stargz" "$out"
check_contains "layer 2's file through the lazy layers" "$out" "hello from layer 2"
check_contains "layer 3's file through the lazy layers" "$out" "third layer"
check_contains "opaque directory honoured" "$out" "new.txt"

# ---- SIGTERM unmounts; a restart mounts the layers again -------------------------
stop_pid "$STRATAD_PID" stargz-grpc
check_eq "SIGTERM: the peer unmounted its layers" "$(lazy_mounts)" 0
check "SIGTERM: the peer logged a clean stop" grep -q 'stargz-grpc stopped' "$PEER_LOG"
check "SIGTERM: the socket was removed" test ! -e "$PEER_SOCK"
start_peer
check_eq "restart: the layers are mounted again" "$(lazy_mounts)" 3
out=$(ctr_ run --rm --snapshotter stargz "$REF" peer-read-2 cat /data/hello.txt 2>&1) ||
  fail "ctr run after a restart" "$out"
check_contains "content after a restart" "$out" "hello from layer 2"

# ---- --cleanup-on-exit: the library's Close unmounts and removes every snapshot ---
stop_pid "$STRATAD_PID" stargz-grpc
start_peer --cleanup-on-exit
check_eq "--cleanup-on-exit run: the layers are mounted" "$(lazy_mounts)" 3
stop_pid "$STRATAD_PID" stargz-grpc
check_eq "--cleanup-on-exit: the layers are unmounted" "$(lazy_mounts)" 0
check_eq "--cleanup-on-exit: the snapshot directories are gone" \
  "$(find "$PEER_ROOT/snapshotter/snapshots" -mindepth 1 -maxdepth 1 | wc -l)" 0

cleanup_containerd_objects
if ((E2E_FAILED > 0)); then
  printf -- '---- last 60 lines of %s ----\n' "$PEER_LOG"
  tail -n 60 "$PEER_LOG" || true
fi
e2e_finish
