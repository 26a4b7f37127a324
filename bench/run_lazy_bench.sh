#!/usr/bin/env bash
# Cold start with lazy pulling (issue 4): the time from "pull this image" to the
# container's first output, strata beside stargz-snapshotter (the reference lazy
# snapshotter) on the same eStargz image, registry and network, in the same run; a full
# pull with containerd's overlayfs snapshotter is the baseline.
#
#   bench/run_lazy_bench.sh BUILD_DIR
#
# 1. Builds once (cached in BENCH_CACHE) an OCI image of three gzip layers made from
#    this machine's files: a base (busybox, the dynamic loader and every shared
#    library Python's modules need), Python 3.11 with its standard library and
#    dist-packages, and /usr/share/doc as application data nobody reads at start. The
#    container's command imports a dozen standard modules and prints "ready".
# 2. Starts Debian's docker-registry on loopback and strata's fault proxy in front of
#    it, which emulates the network: NETWORKS lists "NAME RATE_BYTES_PER_S DELAY_MS"
#    profiles (default: unthrottled loopback, and 100 Mbit/s with 10 ms per request).
# 3. Converts the image to eStargz with Debian's `ctr-remote images optimize` (which
#    runs the command once and records the files it reads, so that both snapshotters
#    prefetch the same landmark-prioritised files), or `images convert --estargz` when
#    OPTIMIZE=0, and pushes it.
# 4. For each network profile, RUNS rounds; each round runs every contender once, in
#    turn, each on a fresh containerd (private root) and a fresh snapshotter daemon
#    (empty root and cache), started and idle before the clock starts:
#      strata:     ctr-remote image rpull --snapshotter strata   + ctr run --snapshotter strata
#      stargz:     ctr-remote image rpull --snapshotter stargz   + ctr run --snapshotter stargz
#      overlayfs:  ctr image pull --snapshotter overlayfs        + ctr run --snapshotter overlayfs
#    and measures pull, run (to the container's exit; its output is checked) and total.
#    Background fetching is off for both lazy snapshotters (it only competes with the
#    start-up reads); both prefetch the landmark files.
#
# Prints a markdown table of medians and strata's ratio to each peer. Needs root.
# Environment: RUNS (5), BENCH_CACHE (/var/tmp/strata-lazy-bench), NETWORKS, OPTIMIZE
# (1), STRATAD_LOG_LEVEL (warn), STARGZ_PEER (BUILD_DIR/bench/stargz-grpc, built by
# bench/peers/build_stargz_peer.sh when missing), KEEP_TMP=1 keeps logs.
set -euo pipefail

if [[ $# -ne 1 ]]; then
  echo "usage: $0 BUILD_DIR" >&2
  exit 2
fi
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=../tests/e2e/oci_lib.sh
source "$here/../tests/e2e/oci_lib.sh"
build_dir=$(realpath "$1")
stratad="$build_dir/stratad"
strata="$build_dir/strata"
fault_proxy="$build_dir/tests/tools/strata-test-fault-proxy"
peer=${STARGZ_PEER:-$build_dir/bench/stargz-grpc}
runs=${RUNS:-5}
cache=${BENCH_CACHE:-/var/tmp/strata-lazy-bench}
optimize=${OPTIMIZE:-1}
networks=${NETWORKS:-"loopback 0 0;100Mbit-10ms 12500000 10"}
for f in "$stratad" "$strata" "$fault_proxy"; do
  [[ -x $f ]] || { echo "missing executable: $f (build first)" >&2; exit 2; }
done
for tool in containerd ctr ctr-remote runc docker-registry jq curl busybox python3.11; do
  command -v "$tool" >/dev/null || { echo "missing tool: $tool (scripts/install-deps.sh)" >&2; exit 2; }
done
if [[ $(id -u) -ne 0 ]]; then
  echo "$0: containerd and FUSE need root" >&2
  exit 2
fi
if [[ ! -x $peer ]]; then
  echo "building the stargz-snapshotter peer into $peer" >&2
  "$here/peers/build_stargz_peer.sh" "$peer"
fi

tmp=$(mktemp -d /tmp/strata-lazy-bench.XXXXXX)
results="$tmp/results.tsv"  # network contender run pull_s run_s total_s
registry_pid="" proxy_pid="" containerd_pid="" snap_pid=""

log() { printf '[%(%H:%M:%S)T] %s\n' -1 "$*" >&2; }

stop_pid() {
  local pid=$1
  [[ -n $pid ]] || return 0
  kill -TERM "$pid" 2>/dev/null || true
  for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  kill -KILL "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
}

# Unmounts everything under DIR, deepest first.
unmount_under() {
  awk -v dir="$1" '{ if ($5 == dir || index($5, dir "/") == 1) print length($5) "\t" $5 }' \
    /proc/self/mountinfo | sort -rn | cut -f2- | while read -r m; do umount -l "$m" 2>/dev/null || true; done
}

stop_round() {
  if [[ -n $containerd_pid ]]; then
    local id
    for id in $(ctr_ tasks ls -q 2>/dev/null); do ctr_ tasks kill -s SIGKILL "$id" >/dev/null 2>&1 || true; done
    sleep 0.2
    for id in $(ctr_ tasks ls -q 2>/dev/null); do ctr_ tasks delete -f "$id" >/dev/null 2>&1 || true; done
    for id in $(ctr_ containers ls -q 2>/dev/null); do ctr_ containers delete "$id" >/dev/null 2>&1 || true; done
  fi
  stop_pid "$containerd_pid"
  containerd_pid=""
  stop_pid "$snap_pid"
  snap_pid=""
  unmount_under "$tmp/round"
  if [[ ${KEEP_TMP:-0} == 1 ]]; then
    mkdir -p "$tmp/logs"
    for f in "$tmp"/round/*.log; do [[ -e $f ]] && mv "$f" "$tmp/logs/$(date +%s%N)-$(basename "$f")"; done
  fi
  rm -rf --one-file-system "$tmp/round"
}

cleanup() {
  set +e
  stop_round
  stop_pid "$proxy_pid"
  stop_pid "$registry_pid"
  unmount_under "$tmp"
  if [[ ${KEEP_TMP:-0} == 1 ]]; then
    echo "kept $tmp" >&2
  else
    rm -rf --one-file-system "$tmp"
  fi
}
trap cleanup EXIT

# wait_for NAME PID COMMAND...: retries COMMAND every 0.1 s for up to 30 s while PID lives.
wait_for() {
  local name=$1 pid=$2
  shift 2
  for _ in $(seq 300); do
    "$@" >/dev/null 2>&1 && return 0
    kill -0 "$pid" 2>/dev/null || { echo "$name exited" >&2; return 1; }
    sleep 0.1
  done
  echo "$name did not answer within 30 s" >&2
  return 1
}

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

ctr_() { ctr --address "$tmp/round/containerd.sock" --namespace bench "$@"; }
ctr_remote_() { ctr-remote --address "$tmp/round/containerd.sock" --namespace bench "$@"; }

# ---- the image ---------------------------------------------------------------------

app_cmd=(python3 -c 'import json, sqlite3, decimal, email.parser, http.client, xml.dom.minidom, asyncio, argparse, logging, csv, hashlib, ssl; print("ready")')

build_image() {
  local out="$1" work="$1.work"
  rm -rf "$work" "$out"
  mkdir -p "$work/l1/bin" "$work/l1/tmp" "$work/l1/etc" "$work/l2" "$work/l3/usr/share"
  # Base: busybox, the loader, and the libraries of python3.11 and its extension modules.
  cp "$(command -v busybox)" "$work/l1/bin/busybox"
  for a in sh ls cat; do ln -s busybox "$work/l1/bin/$a"; done
  printf 'root:x:0:0:root:/root:/bin/sh\n' >"$work/l1/etc/passwd"
  chmod 1777 "$work/l1/tmp"
  local libs
  libs=$( { ldd /usr/bin/python3.11; find /usr/lib/python3.11/lib-dynload -name '*.so' -exec ldd {} \; ; } 2>/dev/null |
    awk '/=>/ { print $3 } /ld-linux/ { print $1 }' | grep '^/' | sort -u)
  local lib
  for lib in $libs; do
    mkdir -p "$work/l1$(dirname "$lib")"
    cp -L "$lib" "$work/l1$lib"
  done
  if [[ -e /lib64 && ! -e $work/l1/lib64 ]]; then mkdir -p "$work/l1/lib64"; cp -L /lib64/ld-linux-x86-64.so.2 "$work/l1/lib64/"; fi
  # Python.
  mkdir -p "$work/l2/usr/bin" "$work/l2/usr/lib"
  cp /usr/bin/python3.11 "$work/l2/usr/bin/"
  ln -s python3.11 "$work/l2/usr/bin/python3"
  cp -a /usr/lib/python3.11 "$work/l2/usr/lib/"
  mkdir -p "$work/l2/usr/lib/python3"
  cp -a /usr/lib/python3/dist-packages "$work/l2/usr/lib/python3/"
  # Data nobody reads at start.
  cp -a /usr/share/doc "$work/l3/usr/share/"
  oci_layout_from_dirs "$out" bench.local/python-app:gzip gzip "$work/l1" "$work/l2" "$work/l3"
  rm -rf "$work"
}

if [[ ! -f $cache/image/index.json ]]; then
  log "building the benchmark image in $cache/image"
  mkdir -p "$cache"
  build_image "$cache/image"
fi

# ---- the registry ------------------------------------------------------------------

mkdir -p "$tmp/registry"
reg_port=$(free_port)
cat >"$tmp/registry/config.yml" <<EOF
version: 0.1
log:
  level: warn
storage:
  filesystem:
    rootdirectory: $tmp/registry/storage
http:
  addr: 127.0.0.1:$reg_port
EOF
env -u REGISTRY_LOG docker-registry serve "$tmp/registry/config.yml" >"$tmp/registry.log" 2>&1 &
registry_pid=$!
wait_for docker-registry "$registry_pid" curl -sf "http://127.0.0.1:$reg_port/v2/"
proxy_port=$(free_port)
"$fault_proxy" --listen "127.0.0.1:$proxy_port" --upstream "127.0.0.1:$reg_port" \
  >"$tmp/proxy.log" 2>&1 &
proxy_pid=$!
wait_for fault-proxy "$proxy_pid" curl -sf "http://127.0.0.1:$proxy_port/v2/"
REG="127.0.0.1:$proxy_port"
SRC="$REG/bench/python-app:gzip"
LAZY="$REG/bench/python-app:estargz"

# containerd with both proxy snapshotters; the round's daemon serves one of them.
start_containerd() {
  mkdir -p "$tmp/round/containerd"
  cat >"$tmp/round/containerd/config.toml" <<EOF
version = 2
root = "$tmp/round/containerd/root"
state = "$tmp/round/containerd/state"
disabled_plugins = ["io.containerd.grpc.v1.cri", "io.containerd.snapshotter.v1.btrfs",
  "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.devmapper",
  "io.containerd.snapshotter.v1.aufs", "io.containerd.tracing.processor.v1.otlp",
  "io.containerd.internal.v1.tracing"]
[grpc]
  address = "$tmp/round/containerd.sock"
[ttrpc]
  address = "$tmp/round/containerd.sock.ttrpc"
[plugins."io.containerd.internal.v1.opt"]
  path = "$tmp/round/containerd/opt"
[proxy_plugins.strata]
  type = "snapshot"
  address = "$tmp/round/strata.sock"
[proxy_plugins.stargz]
  type = "snapshot"
  address = "$tmp/round/stargz.sock"
EOF
  containerd --config "$tmp/round/containerd/config.toml" >"$tmp/round/containerd.log" 2>&1 &
  containerd_pid=$!
  wait_for containerd "$containerd_pid" ctr --address "$tmp/round/containerd.sock" version
}

start_strata() {
  cat >"$tmp/round/stratad.toml" <<EOF
[lazy]
background_fetch = false
restart_grace = "0s"
EOF
  "$stratad" --root "$tmp/round/strata-root" --address "$tmp/round/strata.sock" \
    --config "$tmp/round/stratad.toml" --log-level "${STRATAD_LOG_LEVEL:-warn}" >"$tmp/round/stratad.log" 2>&1 &
  snap_pid=$!
  wait_for stratad "$snap_pid" test -S "$tmp/round/strata.sock"
}

start_stargz() {
  # Background fetch off, as for strata; loopback registries are plain HTTP.
  "$peer" --address "$tmp/round/stargz.sock" --root "$tmp/round/stargz-root" \
    --no-background-fetch --log-level warn >"$tmp/round/stargz.log" 2>&1 &
  snap_pid=$!
  wait_for stargz "$snap_pid" test -S "$tmp/round/stargz.sock"
}

# ---- the eStargz image ---------------------------------------------------------------

log "pushing the images"
mkdir -p "$tmp/round"
start_containerd
tar -C "$cache/image" -cf "$tmp/image.tar" .
ctr_ images import "$tmp/image.tar" >/dev/null
ctr_ images tag bench.local/python-app:gzip "$SRC" >/dev/null
ctr_ images push --plain-http "$SRC" >/dev/null
if [[ $optimize == 1 ]]; then
  ctr_remote_ images optimize --oci --entrypoint '["/usr/bin/python3"]' \
    --args "$(jq -c -n '$ARGS.positional' --args "${app_cmd[@]:1}")" "$SRC" "$LAZY" >"$tmp/optimize.log" 2>&1 ||
    { log "ctr-remote images optimize failed (see below); converting without a profile"; tail -5 "$tmp/optimize.log" >&2; optimize=0; }
fi
if [[ $optimize != 1 ]]; then
  ctr_remote_ images convert --oci --estargz "$SRC" "$LAZY" >/dev/null
fi
ctr_ images push --plain-http "$LAZY" >/dev/null
stop_round
image_bytes=$(curl -sf -H 'Accept: application/vnd.oci.image.manifest.v1+json' \
  "http://$REG/v2/bench/python-app/manifests/estargz" | jq '[.layers[].size] | add')
log "eStargz image: $image_bytes bytes of layers"

# ---- measurements --------------------------------------------------------------------

now() { date +%s.%N; }
one_run() {  # network contender run
  local net=$1 who=$2 run=$3 t0 t1 t2 out
  mkdir -p "$tmp/round"
  start_containerd
  case $who in
    strata) start_strata ;;
    stargz) start_stargz ;;
  esac
  sync
  echo 3 >/proc/sys/vm/drop_caches
  t0=$(now)
  case $who in
    overlayfs) ctr_ images pull --plain-http --snapshotter overlayfs "$SRC" >/dev/null ;;
    *) ctr_remote_ image rpull --plain-http --snapshotter "$who" "$LAZY" >/dev/null ;;
  esac
  t1=$(now)
  local ref=$LAZY
  [[ $who == overlayfs ]] && ref=$SRC
  out=$(ctr_ run --rm --snapshotter "$who" "$ref" "bench-$run" "${app_cmd[@]}" 2>&1)
  t2=$(now)
  if [[ $out != *ready* ]]; then
    echo "run of $who failed: $out" >&2
    exit 1
  fi
  printf '%s\t%s\t%s\t%.3f\t%.3f\t%.3f\n' "$net" "$who" "$run" \
    "$(echo "$t1 - $t0" | bc)" "$(echo "$t2 - $t1" | bc)" "$(echo "$t2 - $t0" | bc)" >>"$results"
  log "$net $who run $run: pull $(echo "$t1 - $t0" | bc) s, run $(echo "$t2 - $t1" | bc) s"
  stop_round
}

# strata mount: time until an image's files are visible, lazily and by full pull.
mount_run() {  # network run
  local net=$1 run=$2 t0 t1 mode
  for mode in lazy full; do
    mkdir -p "$tmp/round/mnt"
    cat >"$tmp/round/stratad.toml" <<TOML
[registry]
config_path = "$tmp/round/certs.d"
[lazy]
background_fetch = false
restart_grace = "0s"
TOML
    "$stratad" --root "$tmp/round/strata-root" --address "$tmp/round/strata.sock" \
      --config "$tmp/round/stratad.toml" --log-level "${STRATAD_LOG_LEVEL:-warn}" >"$tmp/round/stratad.log" 2>&1 &
    snap_pid=$!
    wait_for stratad "$snap_pid" test -S "$tmp/round/strata.sock"
    sync
    echo 3 >/proc/sys/vm/drop_caches
    t0=$(now)
    "$strata" --address "$tmp/round/strata.sock" mount -q "--lazy=$([[ $mode == lazy ]] && echo true || echo false)" \
      "$LAZY" "$tmp/round/mnt" >/dev/null
    test -x "$tmp/round/mnt/usr/bin/python3.11"
    t1=$(now)
    printf '%s\tstrata mount (%s)\t%s\t%.3f\t0\t%.3f\n' "$net" "$mode" "$run" \
      "$(echo "$t1 - $t0" | bc)" "$(echo "$t1 - $t0" | bc)" >>"$results"
    log "$net strata mount ($mode) run $run: $(echo "$t1 - $t0" | bc) s"
    "$strata" --address "$tmp/round/strata.sock" umount "$tmp/round/mnt" >/dev/null
    stop_round
  done
}

IFS=';' read -r -a profiles <<<"$networks"
for profile in "${profiles[@]}"; do
  read -r net rate delay <<<"$profile"
  rules=""
  ((rate > 0)) && rules+="* .* rate=$rate"$'\n'
  ((delay > 0)) && rules+="* .* delay=$delay"$'\n'
  curl -sS --fail-with-body -X POST --data-binary "$rules" "http://$REG/__fault/rules" >/dev/null
  for run in $(seq "$runs"); do
    for who in strata stargz overlayfs; do one_run "$net" "$who" "$run"; done
    mount_run "$net" "$run"
  done
done

# ---- report --------------------------------------------------------------------------

echo
echo "Cold start, $(nproc) cores, image $image_bytes bytes of eStargz layers (optimize=$optimize), $runs runs, medians:"
echo
echo "| network | contender | pull (s) | run (s) | total (s) | strata is faster by |"
echo "|---|---|---|---|---|---|"
python3 - "$results" <<'EOF'
import statistics, sys, collections
rows = collections.defaultdict(list)
for line in open(sys.argv[1]):
    net, who, run, p, r, t = line.split("\t")
    rows[(net, who)].append((float(p), float(r), float(t)))
nets = []
for (net, who) in rows:
    if net not in nets: nets.append(net)
for net in nets:
    med = {}
    for who in ("strata", "stargz", "overlayfs", "strata mount (lazy)", "strata mount (full)"):
        if (net, who) not in rows: continue
        v = rows[(net, who)]
        med[who] = [statistics.median(x[i] for x in v) for i in range(3)]
    for who, (p, r, t) in med.items():
        if who.startswith("strata mount"):
            ratio = "" if who.endswith("(lazy)") else f"{t / med['strata mount (lazy)'][2]:.2f}x (vs lazy mount)"
        else:
            ratio = "" if who == "strata" else f"{t / med['strata'][2]:.2f}x"
        print(f"| {net} | {who} | {p:.2f} | {r:.2f} | {t:.2f} | {ratio} |")
EOF
