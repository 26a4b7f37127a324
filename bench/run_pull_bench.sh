#!/usr/bin/env bash
# Image pull (issue 3): pull+unpack wall time of a multi-layer image from a loopback
# registry, strata beside containerd's `ctr images pull` (overlayfs snapshotter) in the
# same run; then unpack-only and decompress-only throughput on the image's layer blobs,
# strata's unpacker beside `tar -xzf`, `pigz -dc | tar -x`, `gzip -dc` and `pigz -dc`.
#
#   bench/run_pull_bench.sh BUILD_DIR
#
# 1. Builds once (cached in BENCH_CACHE) an OCI image layout of six gzip layers (GNU tar
#    pax, gzip -6) made from copies of this machine's /usr trees: about 400 MB
#    uncompressed, at least 300 MB.
# 2. Starts Debian's docker-registry on loopback (storage in the temp dir) and pushes
#    the image with skopeo.
# 3. Pull, alternating strata and containerd, RUNS times each; every run gets a fresh
#    daemon with an empty root, started and idle before the clock starts, stopped and
#    deleted afterwards, then settled (below).
#      strata:     strata image pull REF
#      containerd: ctr images pull --plain-http --snapshotter overlayfs REF
# 4. Phases (the same alternation): download only (strata image pull --skip-unpack;
#    ctr content fetch), then unpack from the local content store (the same pull again).
# 5. Unpack only, on the biggest layer and on all layers one after the other, each into
#    a fresh directory under the temp dir: unpack_bench, tar -xzf, pigz -dc | tar -x
#    (plus unpack_bench with 3 layers at a time, as the puller runs them, with and
#    without a final syncfs); decompress only: unpack_bench --decompress-only (and
#    --hash), gzip -dc, pigz -dc, and ISA-L's own igzip -dc when it is installed
#    (Debian package isal).
#
# Settling between runs (untimed): delete the run's files, `sync`, drop the clean page
# cache (SETTLE=drop, the default; SETTLE=sync skips the drop), then read the registry's
# blobs, the layer files and every program used back into it. The drop matters on
# ext4 without a journal: its inode allocator skips inodes freed in the last 60 s
# (ialloc.c recently_deleted) as long as their inode table block is cached, and on this
# machine creating 20,000 files right after deleting 20,000 took 3-6x the system time.
# So every run, of either side, starts with a warm source (registry and layer files in
# the page cache) and without the previous run's deletions in its way.
# containerd 1.6 decompresses gzip layers with `unpigz` when it is on the PATH (pigz is
# in scripts/install-deps.sh), else with Go's gzip; CONTAINERD_DISABLE_PIGZ=1 in the
# environment makes it use Go's.
# Prints markdown tables with medians. Needs root. Environment knobs:
#   RUNS (3), BENCH_CACHE (/var/tmp/strata-bench-image), PARTS ("pull phases unpack"),
#   SETTLE (drop), QUIET_WAIT (120: seconds to wait before each measurement for the
#   machine's other jobs to leave the CPUs at most 15% busy), CONTAINERD
#   (/usr/bin/containerd), CTR (/usr/bin/ctr), KEEP_TMP=1 keeps logs.
set -euo pipefail

if [[ $# -ne 1 ]]; then
  echo "usage: $0 BUILD_DIR" >&2
  exit 2
fi
build_dir=$(realpath "$1")
# shellcheck source=bench_lib.sh
source "$(cd "$(dirname "$0")" && pwd)/bench_lib.sh"
stratad="$build_dir/stratad"
strata="$build_dir/strata"
unpack_bench="$build_dir/bench/unpack_bench"
containerd_bin=${CONTAINERD:-/usr/bin/containerd}
ctr_bin=${CTR:-/usr/bin/ctr}
runs=${RUNS:-3}
cache=${BENCH_CACHE:-/var/tmp/strata-bench-image}
parts=${PARTS:-pull phases unpack}
settle_mode=${SETTLE:-drop}
quiet_wait=${QUIET_WAIT:-120}
for f in "$stratad" "$strata" "$unpack_bench" "$containerd_bin" "$ctr_bin"; do
  [[ -x $f ]] || { echo "missing executable: $f" >&2; exit 2; }
done
for tool in docker-registry skopeo jq pigz gzip tar curl sha256sum python3; do
  command -v "$tool" >/dev/null || { echo "missing tool: $tool (scripts/install-deps.sh)" >&2; exit 2; }
done
if [[ $(id -u) -ne 0 ]]; then
  echo "$0: containerd and unpacking need root" >&2
  exit 2
fi

tmp=$(mktemp -d /tmp/strata-pull-bench.XXXXXX)
results="$tmp/results.tsv"  # part  label  run  seconds  cpu_seconds
registry_pid=""
daemon_pid=""

log() { printf '[%(%H:%M:%S)T] %s\n' -1 "$*" >&2; }

stop_pid() {
  local pid=$1
  [[ -n $pid ]] || return 0
  kill -TERM "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
}

cleanup() {
  stop_pid "$daemon_pid"
  stop_pid "$registry_pid"
  if [[ ${KEEP_TMP:-0} == 1 ]]; then
    echo "kept $tmp" >&2
  else
    rm -rf --one-file-system "$tmp"
  fi
}
trap cleanup EXIT

# wait_for NAME PID COMMAND...: retries COMMAND every 0.1 s for up to 30 s while PID
# lives.
wait_for() {
  local name=$1 pid=$2
  shift 2
  for _ in $(seq 300); do
    "$@" >/dev/null 2>&1 && return 0
    kill -0 "$pid" 2>/dev/null || { echo "$name exited; log:" >&2; cat "$tmp/$name.log" >&2; exit 1; }
    sleep 0.1
  done
  echo "$name did not answer within 30 s" >&2
  exit 1
}

# CPU seconds (user + system) process PID has used so far.
cpu_seconds() {
  awk -v hz="$(getconf CLK_TCK)" '{printf "%.2f", ($14 + $15) / hz}' "/proc/$1/stat"
}

# CPU seconds (user + system) of the finished children in FILE, the output of the
# `times` builtin (which must run in this shell, not in a $(...) subshell).
children_cpu_seconds() {
  awk 'NR == 2 {
         n = split($0, f, /[ ms]+/); s = 0
         for (i = 1; i + 1 <= n; i += 2) if (f[i] != "") s += f[i] * 60 + f[i + 1]
         printf "%.2f", s }' "$1"
}

# Waits (up to 15 s) until process PID uses no CPU for half a second.
wait_idle() {
  local before after
  for _ in $(seq 30); do
    before=$(cpu_ticks "$1")
    sleep 0.5
    after=$(cpu_ticks "$1")
    ((after - before <= 1)) && return 0
  done
  log "warning: pid $1 still busy"
}

# Waits up to QUIET_WAIT seconds for the machine to be quiet (other jobs share these
# two cores); a measurement started on a busy machine is counted in the report.
wait_machine_quiet() {
  local deadline=$((SECONDS + quiet_wait)) busy
  while true; do
    busy=$(cpu_busy_percent)
    ((busy <= 15)) && return 0
    if ((SECONDS >= deadline)); then
      log "warning: CPUs still ${busy}% busy with other work; measuring anyway"
      echo "$busy" >>"$tmp/busy.log"
      return 0
    fi
  done
}

# START is an $EPOCHREALTIME value. No process per line: ctr prints many.
timestamp_lines() {
  local start_us=${1/./} line us
  while IFS= read -r line; do
    us=$((${EPOCHREALTIME/./} - start_us))
    printf '%4d.%03d %s\n' $((us / 1000000)) $((us % 1000000 / 1000)) "$line"
  done
}

record() {  # part label run seconds cpu_seconds
  printf '%s\t%s\t%s\t%s\t%s\n' "$@" >>"$results"
}

# ---- the image ---------------------------------------------------------------

# Layers: source tree under / and a budget of uncompressed MB. Files are taken in name
# order, skipping any that would overrun the budget (hard links count once); every
# directory above a file is in the layer too. Different trees compress differently:
# shared libraries, programs, text and docs, headers, compiler binaries, Python sources.
layer_specs=(
  "usr/lib/x86_64-linux-gnu 100"
  "usr/bin 70"
  "usr/share 70"
  "usr/include 60"
  "usr/lib/gcc 50"
  "usr/lib/python3.11 50"
)

# Moves FILE into LAYOUT's blob store; prints its digest.
add_blob() {
  local hex
  hex=$(sha256sum "$2" | cut -d' ' -f1)
  mv "$2" "$1/blobs/sha256/$hex"
  echo "sha256:$hex"
}

build_image() {
  local out=$1 work="$1.building.$$"
  rm -rf "$work"
  mkdir -p "$work/layout/blobs/sha256" "$work/stage"
  local layout="$work/layout" i=0 spec src budget_mb
  local diff_ids=() layers_json="[]" total=0
  : >"$work/layers.tsv"
  for spec in "${layer_specs[@]}"; do
    read -r src budget_mb <<<"$spec"
    if [[ ! -d /$src ]]; then
      log "image: /$src missing here; layer skipped"
      continue
    fi
    i=$((i + 1))
    local list="$work/stage/layer$i.list" tarfile="$work/stage/layer$i.tar"
    (cd / && find "$src" -xdev \( -type f -o -type l \) -printf '%s %i %p\n') |
      LC_ALL=C sort -k3 |
      awk -v budget=$((budget_mb * 1000000)) '
        { size = seen[$2]++ ? 0 : $1  # a hard link adds no data
          path = substr($0, length($1) + length($2) + 3)
          if (total + size > budget) next
          total += size; print path
          n = split(path, parts, "/"); dir = ""
          for (j = 1; j < n; j++) { dir = dir (j > 1 ? "/" : "") parts[j]; print dir } }' |
      LC_ALL=C sort -u >"$list"
    tar -C / --format=pax --numeric-owner --no-recursion --pax-option=delete=atime,delete=ctime \
      -cf "$tarfile" -T "$list"
    local size diff_id entries digest gz_size
    size=$(stat -c %s "$tarfile")
    diff_id="sha256:$(sha256sum "$tarfile" | cut -d' ' -f1)"
    entries=$(wc -l <"$list")
    gzip -n -6 "$tarfile"
    gz_size=$(stat -c %s "$tarfile.gz")
    digest=$(add_blob "$layout" "$tarfile.gz")
    diff_ids+=("$diff_id")
    total=$((total + size))
    layers_json=$(jq -c --arg d "$digest" --argjson s "$gz_size" \
      '. + [{mediaType: "application/vnd.oci.image.layer.v1.tar+gzip", digest: $d, size: $s}]' \
      <<<"$layers_json")
    printf '%s\t%s\t%s\t%s\t%s\n' "$digest" "$gz_size" "$size" "$entries" "/$src" >>"$work/layers.tsv"
    log "image: layer $i /$src: $((size / 1000000)) MB tar, $((gz_size / 1000000)) MB gzip, $entries entries"
  done
  if ((total < 300000000)); then
    echo "image: only $((total / 1000000)) MB uncompressed; need at least 300" >&2
    exit 1
  fi

  local arch config_size config_digest manifest_size manifest_digest
  arch=$(dpkg --print-architecture 2>/dev/null || echo amd64)
  jq -n -c --arg arch "$arch" --args '{
      created: "2024-01-01T00:00:00Z", architecture: $arch, os: "linux",
      config: {Env: ["PATH=/usr/bin:/bin"], Cmd: ["/usr/bin/bash"]},
      rootfs: {type: "layers", diff_ids: $ARGS.positional},
      history: [range(0; $ARGS.positional | length) |
                {created: "2024-01-01T00:00:00Z", created_by: "run_pull_bench.sh layer \(. + 1)"}]
    }' "${diff_ids[@]}" >"$work/stage/config.json"
  config_size=$(stat -c %s "$work/stage/config.json")
  config_digest=$(add_blob "$layout" "$work/stage/config.json")
  jq -n -c --arg cd "$config_digest" --argjson cs "$config_size" --argjson layers "$layers_json" '{
      schemaVersion: 2, mediaType: "application/vnd.oci.image.manifest.v1+json",
      config: {mediaType: "application/vnd.oci.image.config.v1+json", digest: $cd, size: $cs},
      layers: $layers
    }' >"$work/stage/manifest.json"
  manifest_size=$(stat -c %s "$work/stage/manifest.json")
  manifest_digest=$(add_blob "$layout" "$work/stage/manifest.json")
  jq -n -c --arg md "$manifest_digest" --argjson ms "$manifest_size" '{
      schemaVersion: 2, mediaType: "application/vnd.oci.image.index.v1+json",
      manifests: [{mediaType: "application/vnd.oci.image.manifest.v1+json", digest: $md,
                   size: $ms, annotations: {"org.opencontainers.image.ref.name": "latest"}}]
    }' >"$layout/index.json"
  printf '{"imageLayoutVersion":"1.0.0"}' >"$layout/oci-layout"
  mv "$layout" "$work/oci"
  mv "$work/layers.tsv" "$work/oci.layers.tsv"
  rm -rf "$work/stage"
  rm -rf "$out"
  mv "$work" "$out"
}

if [[ ! -f $cache/oci/index.json || ! -f $cache/oci.layers.tsv ]]; then
  log "building the image in $cache (once)"
  mkdir -p "$(dirname "$cache")"
  build_image "$cache"
fi
layers_tsv="$cache/oci.layers.tsv"
blobs=()
while IFS=$'\t' read -r digest _; do blobs+=("$cache/oci/blobs/sha256/${digest#sha256:}"); done <"$layers_tsv"
compressed_total=$(awk -F'\t' '{s += $2} END {print s}' "$layers_tsv")
uncompressed_total=$(awk -F'\t' '{s += $3} END {print s}' "$layers_tsv")
log "image: ${#blobs[@]} layers, $((compressed_total / 1000000)) MB gzip, $((uncompressed_total / 1000000)) MB uncompressed"

# settle PATH...: deletes PATHs, then see "Settling" at the top.
settle() {
  rm -rf --one-file-system "$@"
  sync
  [[ $settle_mode == drop ]] || return 0
  echo 1 >/proc/sys/vm/drop_caches
  cat "${blobs[@]}" >/dev/null
  find "$tmp/registry/storage" -type f -exec cat {} + >/dev/null
  local program
  for program in "$stratad" "$strata" "$containerd_bin" "$ctr_bin"; do
    "$program" --version >/dev/null
  done
  "$unpack_bench" --help >/dev/null
  tar --version >/dev/null
  gzip --version >/dev/null
  pigz --version >/dev/null 2>&1
}

# ---- registry ------------------------------------------------------------------

start_registry() {
  mkdir -p "$tmp/registry"
  local port
  for _ in $(seq 20); do
    port=$((20000 + RANDOM % 12000))
    (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && continue
    cat >"$tmp/registry/config.yml" <<EOF
version: 0.1
log:
  level: warn
storage:
  filesystem:
    rootdirectory: $tmp/registry/storage
  maintenance:
    uploadpurging:
      enabled: false
http:
  addr: 127.0.0.1:$port
  secret: strata-bench-$RANDOM$RANDOM
EOF
    # docker-registry takes REGISTRY_* environment variables as configuration.
    local hide=() var
    for var in $(compgen -e -X '!REGISTRY_*'); do hide+=(-u "$var"); done
    env "${hide[@]}" docker-registry serve "$tmp/registry/config.yml" >"$tmp/registry.log" 2>&1 &
    registry_pid=$!
    for _ in $(seq 100); do
      curl -s -o /dev/null --max-time 1 "http://127.0.0.1:$port/v2/" && break
      kill -0 "$registry_pid" 2>/dev/null || break
      sleep 0.1
    done
    if curl -s -o /dev/null --max-time 1 "http://127.0.0.1:$port/v2/"; then
      registry_addr="127.0.0.1:$port"
      return 0
    fi
    stop_pid "$registry_pid"
    registry_pid=""
  done
  echo "docker-registry did not start; log:" >&2
  cat "$tmp/registry.log" >&2
  exit 1
}

start_registry
ref="$registry_addr/bench/big:latest"
[[ $settle_mode == drop || $settle_mode == sync ]] || { echo "SETTLE: drop or sync" >&2; exit 2; }
printf '{"default":[{"type":"insecureAcceptAnything"}]}\n' >"$tmp/policy.json"
log "pushing to $ref"
REGISTRY_AUTH_FILE="$tmp/skopeo-auth.json" skopeo --policy "$tmp/policy.json" copy --quiet \
  --dest-tls-verify=false "oci:$cache/oci:latest" "docker://$ref"
settle

# ---- pulls ---------------------------------------------------------------------

# start_stratad N: a fresh stratad with its root in the temp dir; sets daemon_pid, sock.
start_stratad() {
  sock="$tmp/strata-$1.sock"
  "$stratad" --root "$tmp/strata-root-$1" --address "$sock" --log-level info \
    >"$tmp/stratad-$1.log" 2>&1 &
  daemon_pid=$!
  wait_for "stratad-$1" "$daemon_pid" "$strata" --address "$sock" snapshot ls
  wait_idle "$daemon_pid"
}

# start_containerd N: a fresh containerd with private root, state, sockets and config
# (only what a pull needs: CRI, runtimes and the other snapshotters are disabled).
start_containerd() {
  local dir="$tmp/containerd-$1"
  mkdir -p "$dir"
  sock="$dir/containerd.sock"
  cat >"$dir/config.toml" <<EOF
version = 2
root = "$dir/root"
state = "$dir/state"
disabled_plugins = [
  "io.containerd.grpc.v1.cri",
  "io.containerd.internal.v1.opt",
  "io.containerd.snapshotter.v1.aufs",
  "io.containerd.snapshotter.v1.btrfs",
  "io.containerd.snapshotter.v1.devmapper",
  "io.containerd.snapshotter.v1.zfs",
  "io.containerd.snapshotter.v1.native",
  "io.containerd.runtime.v1.linux",
  "io.containerd.runtime.v2.task",
  "io.containerd.monitor.v1.cgroups",
  "io.containerd.tracing.processor.v1.otlp",
  "io.containerd.internal.v1.tracing",
]

[grpc]
  address = "$sock"

[ttrpc]
  address = "$dir/containerd-ttrpc.sock"

[debug]
  level = "warn"
EOF
  "$containerd_bin" --config "$dir/config.toml" >"$tmp/containerd-$1.log" 2>&1 &
  daemon_pid=$!
  wait_for "containerd-$1" "$daemon_pid" "$ctr_bin" --address "$sock" version
  wait_idle "$daemon_pid"
}

stop_daemon() {  # PATH... to delete
  stop_pid "$daemon_pid"
  daemon_pid=""
  settle "$@"
}

# timed PART LABEL RUN LOG COMMAND...: runs COMMAND (output to LOG, each line with its
# time), records wall seconds and the CPU of COMMAND plus that of $daemon_pid, if set.
timed() {
  local part=$1 label=$2 run=$3 out=$4
  shift 4
  local cpu0=0 cpu1=0 start end
  wait_machine_quiet
  [[ -z $daemon_pid ]] || cpu0=$(cpu_seconds "$daemon_pid")
  times >"$tmp/times.before"
  start=$EPOCHREALTIME
  if ! "$@" 2>&1 | timestamp_lines "$start" >"$out"; then
    echo "failed: $*; output:" >&2
    cat "$out" >&2
    exit 1
  fi
  end=$EPOCHREALTIME
  times >"$tmp/times.after"
  [[ -z $daemon_pid ]] || cpu1=$(cpu_seconds "$daemon_pid")
  local seconds cpu
  seconds=$(awk -v a="$end" -v b="$start" 'BEGIN {printf "%.3f", a - b}')
  cpu=$(awk -v a="$cpu0" -v b="$cpu1" -v c="$(children_cpu_seconds "$tmp/times.before")" \
    -v d="$(children_cpu_seconds "$tmp/times.after")" 'BEGIN {printf "%.2f", (b - a) + (d - c)}')
  record "$part" "$label" "$run" "$seconds" "$cpu"
  log "$part $label run $run: $seconds s (cpu $cpu s)"
}

run_pulls() {
  local n name
  for n in $(seq "$runs"); do
    name="s$n"
    start_stratad "$name"
    timed pull strata "$n" "$tmp/pull-$name.out" "$strata" --address "$sock" image pull "$ref"
    "$strata" --address "$sock" image ls >>"$tmp/pull-$name.out"
    stop_daemon "$tmp/strata-root-$name"

    name="c$n"
    start_containerd "$name"
    timed pull containerd "$n" "$tmp/pull-$name.out" \
      "$ctr_bin" -a "$sock" -n bench images pull --plain-http --snapshotter overlayfs "$ref"
    # ctr 1.6 fetches every blob first, then prints "unpacking" and unpacks.
    record fetch-split "containerd: fetch, until ctr prints 'unpacking'" "$n" \
      "$(awk '/unpacking/ {print $1; exit}' "$tmp/pull-$name.out")" 0
    stop_daemon "$tmp/containerd-$name"
  done
}

run_phases() {
  local n name
  for n in $(seq "$runs"); do
    name="sp$n"
    start_stratad "$name"
    timed phases "strata download" "$n" "$tmp/phase-$name-download.out" \
      "$strata" --address "$sock" image pull --skip-unpack "$ref"
    wait_idle "$daemon_pid"
    timed phases "strata unpack from store" "$n" "$tmp/phase-$name-unpack.out" \
      "$strata" --address "$sock" image pull "$ref"
    stop_daemon "$tmp/strata-root-$name"

    name="cp$n"
    start_containerd "$name"
    timed phases "containerd download" "$n" "$tmp/phase-$name-download.out" \
      "$ctr_bin" -a "$sock" -n bench content fetch --plain-http "$ref"
    wait_idle "$daemon_pid"
    timed phases "containerd unpack from store" "$n" "$tmp/phase-$name-unpack.out" \
      "$ctr_bin" -a "$sock" -n bench images pull --plain-http --snapshotter overlayfs "$ref"
    stop_daemon "$tmp/containerd-$name"
  done
}

# ---- unpack only ---------------------------------------------------------------

untar_gzip() {  # DEST BLOB...: each blob into DEST (one) or DEST/layer-<i>
  local dest=$1 i=0 blob
  shift
  for blob; do
    local d=$dest
    (($# == 1)) || { d="$dest/layer-$i"; mkdir "$d"; }
    tar -xzf "$blob" -C "$d" --numeric-owner
    i=$((i + 1))
  done
}

untar_pigz() {
  local dest=$1 i=0 blob
  shift
  for blob; do
    local d=$dest
    (($# == 1)) || { d="$dest/layer-$i"; mkdir "$d"; }
    pigz -dc "$blob" | tar -x -C "$d" --numeric-owner
    i=$((i + 1))
  done
}

gzip_to_null() { local blob; for blob; do gzip -dc "$blob" >/dev/null; done; }
igzip_to_null() { local blob; for blob; do igzip -dc "$blob" >/dev/null; done; }
pigz_to_null() { local blob; for blob; do pigz -dc "$blob" >/dev/null; done; }

# unpack_case PART LABEL KIND ARGS...: KIND "dest" runs ARGS with a fresh directory
# added (first for the shell functions, last for unpack_bench); "none" as given.
unpack_case() {
  local part=$1 label=$2 kind=$3
  shift 3
  local n dest="$tmp/unpack"
  for n in $(seq "$runs"); do
    mkdir "$dest"
    case "$kind" in
      fn) timed "$part" "$label" "$n" "$tmp/unpack.out" "$1" "$dest" "${@:2}" ;;
      bench) timed "$part" "$label" "$n" "$tmp/unpack.out" "$@" "$dest" ;;
      none) timed "$part" "$label" "$n" "$tmp/unpack.out" "$@" ;;
    esac
    settle "$dest"
  done
}

run_unpack() {
  local biggest
  biggest=$(sort -t$'\t' -k3 -n "$layers_tsv" | tail -n 1 | cut -f1)
  biggest="$cache/oci/blobs/sha256/${biggest#sha256:}"
  local set part files
  for set in biggest all; do
    if [[ $set == biggest ]]; then files=("$biggest"); else files=("${blobs[@]}"); fi
    part="unpack-$set"
    unpack_case "$part" "strata unpack_bench" bench "$unpack_bench" "${files[@]}"
    if [[ $set == all ]]; then
      unpack_case "$part" "strata unpack_bench --jobs 3" bench "$unpack_bench" --jobs 3 "${files[@]}"
      unpack_case "$part" "strata unpack_bench --jobs 3 --syncfs" bench "$unpack_bench" --jobs 3 \
        --syncfs "${files[@]}"
    fi
    unpack_case "$part" "tar -xzf" fn untar_gzip "${files[@]}"
    unpack_case "$part" "pigz -dc | tar -x" fn untar_pigz "${files[@]}"
    part="decompress-$set"
    unpack_case "$part" "strata unpack_bench --decompress-only" none \
      "$unpack_bench" --decompress-only "${files[@]}"
    unpack_case "$part" "strata unpack_bench --decompress-only --hash" none \
      "$unpack_bench" --decompress-only --hash "${files[@]}"
    unpack_case "$part" "gzip -dc >/dev/null" none gzip_to_null "${files[@]}"
    unpack_case "$part" "pigz -dc >/dev/null" none pigz_to_null "${files[@]}"
    if command -v igzip >/dev/null; then
      unpack_case "$part" "igzip -dc >/dev/null" none igzip_to_null "${files[@]}"
    fi
  done
  printf '%s\n' "$biggest" >"$tmp/biggest"
}

: >"$results"
[[ " $parts " == *" pull "* ]] && run_pulls
[[ " $parts " == *" phases "* ]] && run_phases
[[ " $parts " == *" unpack "* ]] && run_unpack

# ---- report --------------------------------------------------------------------

biggest_line=""
[[ -f $tmp/biggest ]] && biggest_line=$(grep -F "$(basename "$(cat "$tmp/biggest")")" "$layers_tsv")
busy_runs=0
[[ -f $tmp/busy.log ]] && busy_runs=$(wc -l <"$tmp/busy.log")
python3 - "$results" "$layers_tsv" "$biggest_line" "$busy_runs" <<'EOF'
import statistics, sys
from collections import OrderedDict

results, layers_tsv, biggest_line, busy_runs = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4]
rows = OrderedDict()
for line in open(results):
    part, label, run, seconds, cpu = line.rstrip("\n").split("\t")
    rows.setdefault((part, label), []).append((float(seconds), float(cpu)))
layers = [l.rstrip("\n").split("\t") for l in open(layers_tsv)]
total_gz = sum(int(l[1]) for l in layers)
total_tar = sum(int(l[2]) for l in layers)
big = biggest_line.split("\t") if biggest_line else None

def median(values):
    return statistics.median(values)

def fmt_runs(samples):
    return " / ".join(f"{s:.2f}" for s, _ in samples)

print(f"\nImage: {len(layers)} gzip layers, {total_gz / 1e6:.1f} MB compressed, "
      f"{total_tar / 1e6:.1f} MB uncompressed (MB = 10^6 bytes)")
for l in layers:
    print(f"- {l[0][7:19]} {l[4]}: {int(l[1]) / 1e6:.1f} MB gzip, {int(l[2]) / 1e6:.1f} MB tar, "
          f"{l[3]} entries")
print(f"\nMeasurements started while other jobs kept the CPUs busy: {busy_runs} of "
      f"{sum(len(v) for k, v in rows.items() if k[0] != 'fetch-split')}")

def table(part, size_gz, size_tar, baseline, title):
    """baseline(label) names the row a row's time is divided by."""
    keys = [k for k in rows if k[0] == part]
    if not keys:
        return
    print(f"\n{title}\n")
    print("| what | median s | runs s | MB/s compressed | MB/s uncompressed | CPU s (median) "
          "| time / strata's |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for k in keys:
        secs = median([s for s, _ in rows[k]])
        cpu = median([c for _, c in rows[k]])
        peer = (part, baseline(k[1]))
        base = median([s for s, _ in rows[peer]]) if peer in rows else None
        ratio = f"{secs / base:.2f}x" if base else "n/a"
        print(f"| {k[1]} | {secs:.2f} | {fmt_runs(rows[k])} | {size_gz / 1e6 / secs:.0f} "
              f"| {size_tar / 1e6 / secs:.0f} | {cpu:.1f} | {ratio} |")

table("pull", total_gz, total_tar, lambda label: "strata",
      "Pull + unpack from the loopback registry (wall clock; CPU = daemon + client)")
if ("pull", "strata") in rows and ("pull", "containerd") in rows:
    s = median([x for x, _ in rows[("pull", "strata")]])
    c = median([x for x, _ in rows[("pull", "containerd")]])
    print(f"\ncontainerd / strata: {c / s:.2f}x (goal: 2x)")
table("fetch-split", total_gz, total_tar, lambda label: "",
      "Within the containerd pulls above: its fetch phase")
table("phases", total_gz, total_tar, lambda label: label.replace("containerd", "strata"),
      "Phases: download only, then unpack from the local content store")
if big:
    table("unpack-biggest", int(big[1]), int(big[2]), lambda label: "strata unpack_bench",
          f"Unpack only, biggest layer ({big[4]}, {int(big[1]) / 1e6:.1f} MB gzip, "
          f"{int(big[2]) / 1e6:.1f} MB tar)")
    table("decompress-biggest", int(big[1]), int(big[2]),
          lambda label: "strata unpack_bench --decompress-only", "Decompress only, biggest layer")
table("unpack-all", total_gz, total_tar, lambda label: "strata unpack_bench",
      "Unpack only, all layers one after the other (each into its own directory)")
table("decompress-all", total_gz, total_tar, lambda label: "strata unpack_bench --decompress-only",
      "Decompress only, all layers one after the other")
EOF
