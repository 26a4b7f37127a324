#!/usr/bin/env bash
# Snapshot service throughput and latency: containerd's built-in overlayfs snapshotter
# (the peer) beside strata, in the same run, through the same gRPC client.
#
#   bench/run_snapshot_bench.sh BUILD_DIR
#
# Starts, in a private temp dir, a stratad and Debian's containerd 1.6 with strata
# configured as a proxy snapshotter, then runs build/bench/snapshot_bench against
#   containerd overlayfs   containerd's socket, snapshotter=overlayfs (bbolt metadata)
#   containerd -> strata   containerd's socket, snapshotter=strata (proxied to stratad)
#   strata direct          stratad's socket, snapshotter=bench-direct
# at 1 and 16 clients, plus Stat/List latency with POPULATION committed snapshots,
# and prints a markdown table. Needs root (containerd). Environment knobs:
#   SECONDS_PER_RUN (default 8), WARMUP_SECONDS (2), ROUNDS (3), POPULATION (10000),
#   POPULATE_CLIENTS (4), STAT_CALLS (5000), LIST_CALLS (5),
#   CONTAINERD (/usr/bin/containerd), CTR (/usr/bin/ctr), KEEP_TMP=1 to keep logs
#   and results.
set -euo pipefail

if [[ $# -ne 1 ]]; then
  echo "usage: $0 BUILD_DIR" >&2
  exit 2
fi
build_dir=$(realpath "$1")
# shellcheck source=bench_lib.sh
source "$(cd "$(dirname "$0")" && pwd)/bench_lib.sh"
stratad="$build_dir/stratad"
bench="$build_dir/bench/snapshot_bench"
containerd_bin=${CONTAINERD:-/usr/bin/containerd}
ctr_bin=${CTR:-/usr/bin/ctr}
seconds=${SECONDS_PER_RUN:-8}
warmup=${WARMUP_SECONDS:-2}
rounds=${ROUNDS:-3}
population=${POPULATION:-10000}
populate_clients=${POPULATE_CLIENTS:-4}
stat_calls=${STAT_CALLS:-5000}
list_calls=${LIST_CALLS:-5}
for f in "$stratad" "$bench" "$containerd_bin" "$ctr_bin"; do
  [[ -x $f ]] || { echo "missing executable: $f" >&2; exit 2; }
done
if [[ $(id -u) -ne 0 ]]; then
  echo "$0: containerd needs root" >&2
  exit 2
fi

tmp=$(mktemp -d /tmp/strata-bench.XXXXXX)
strata_sock="$tmp/strata.sock"
containerd_sock="$tmp/containerd.sock"
results="$tmp/results.jsonl"
stratad_pid=""
containerd_pid=""

cleanup() {
  # containerd first: it is a client of stratad.
  for pid in "$containerd_pid" "$stratad_pid"; do
    [[ -n $pid ]] || continue
    kill -TERM "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
  done
  if [[ ${KEEP_TMP:-0} == 1 ]]; then
    echo "kept $tmp" >&2
  else
    rm -rf "$tmp"
  fi
}
trap cleanup EXIT

wait_for_socket() {  # path pid name
  for _ in $(seq 1 100); do
    [[ -S $1 ]] && return 0
    kill -0 "$2" 2>/dev/null || { echo "$3 exited; log:" >&2; cat "$tmp/$3.log" >&2; exit 1; }
    sleep 0.1
  done
  echo "$3 did not create $1 within 10s" >&2
  exit 1
}

"$stratad" --root "$tmp/strata" --address "$strata_sock" --log-level warn \
  >"$tmp/stratad.log" 2>&1 &
stratad_pid=$!
wait_for_socket "$strata_sock" "$stratad_pid" stratad

# Only the metadata, snapshot and gRPC services are needed; CRI, the other
# snapshotters, runtimes and the /opt installer plugin are disabled so that nothing
# else touches the disk or the host.
cat >"$tmp/containerd.toml" <<EOF
version = 2
root = "$tmp/containerd/root"
state = "$tmp/containerd/state"
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
  address = "$containerd_sock"

[ttrpc]
  address = "$tmp/containerd-ttrpc.sock"

[debug]
  level = "warn"

[proxy_plugins.strata]
  type = "snapshot"
  address = "$strata_sock"
EOF
"$containerd_bin" --config "$tmp/containerd.toml" >"$tmp/containerd.log" 2>&1 &
containerd_pid=$!
wait_for_socket "$containerd_sock" "$containerd_pid" containerd
# containerd collects snapshots no lease holds; real clients (ctr, CRI, BuildKit) work
# under a lease too.
"$ctr_bin" --address "$containerd_sock" --namespace strata-bench leases create --id strata-bench \
  --expires 0 >/dev/null

run_bench() {  # target address snapshotter args...
  local target=$1 address=$2 snapshotter=$3
  shift 3
  wait_quiet
  if ! "$bench" --target "$target" --address "$address" --snapshotter "$snapshotter" \
      --namespace strata-bench --lease strata-bench "$@" >>"$results" 2>"$tmp/bench.err"; then
    echo "snapshot_bench failed for $target $*:" >&2
    cat "$tmp/bench.err" >&2
    exit 1
  fi
  tail -n 1 "$results" >&2
}

# Waits (up to 30 s) until containerd and stratad are idle, so that one target's
# leftovers (containerd's GC removing directories, stratad's deferred removals) do not
# run during the next target's measurement.
wait_quiet() {
  local before after
  for _ in $(seq 60); do
    before=$(($(cpu_ticks "$containerd_pid") + $(cpu_ticks "$stratad_pid")))
    sleep 0.5
    after=$(($(cpu_ticks "$containerd_pid") + $(cpu_ticks "$stratad_pid")))
    ((after - before <= 1)) && return 0
  done
  echo "warning: daemons still busy after 30 s" >&2
}

fsync_probe() {
  "$bench" --fsync-probe "$tmp" >>"$results"
  tail -n 1 "$results" >&2
}

# strata direct uses its own snapshotter name: stratad keeps one set of snapshots per
# name, and containerd's garbage collector removes snapshots under its proxy's name
# ("strata") that containerd did not create.
targets=(
  "containerd-overlayfs $containerd_sock overlayfs"
  "containerd-strata $containerd_sock strata"
  "strata $strata_sock bench-direct"
)
fsync_probe
# Interleave the targets, in several rounds, so that drift in the machine (this VM's
# disk flush latency moves by 3x within minutes) hits all of them alike; the table
# reports medians over the rounds and each round's ratio.
for round in $(seq "$rounds"); do
  for clients in 1 16; do
    for t in "${targets[@]}"; do
      # shellcheck disable=SC2086
      run_bench $t --clients "$clients" --seconds "$seconds" --warmup-seconds "$warmup"
    done
  done
done
for t in "${targets[@]}"; do
  # shellcheck disable=SC2086
  run_bench $t --latency --population "$population" --clients "$populate_clients" \
    --stat-calls "$stat_calls" --list-calls "$list_calls"
done
fsync_probe

python3 - "$results" "$population" "$populate_clients" <<'EOF'
import json, statistics, sys

rows = [json.loads(line) for line in open(sys.argv[1])]
population, populate_clients = sys.argv[2], sys.argv[3]
peer, proxied, direct = "containerd-overlayfs", "containerd-strata", "strata"

def values(target, mode, key, clients=None):
    out = [r[key] for r in rows
           if r.get("target") == target and r["mode"] == mode and (clients is None or r["clients"] == clients)]
    if not out:
        raise KeyError((target, mode, key, clients))
    return out

def get(target, mode, key, clients=None):  # the median over the rounds
    return statistics.median(values(target, mode, key, clients))

def ratio(ours, theirs, higher_is_better):
    if ours == 0 or theirs == 0:
        return "n/a"
    return f"{(ours / theirs if higher_is_better else theirs / ours):.2f}x"

lines = []
def row(label, key, mode, clients=None, fmt="{:.0f}", better="higher"):
    vals = [get(t, mode, key, clients) for t in (peer, proxied, direct)]
    hb = better == "higher"
    lines.append(f"| {label} | " + " | ".join(fmt.format(v) for v in vals) +
                 f" | {ratio(vals[2], vals[0], hb)} | {ratio(vals[1], vals[0], hb)} |")

print()
print("| measurement | containerd overlayfs (peer) | containerd -> strata | strata direct "
      "| strata direct vs peer | containerd -> strata vs peer |")
print("|---|---:|---:|---:|---:|---:|")
row("cycles/s, 1 client", "cycles_per_sec", "cycles", 1)
row("cycles/s, 16 clients", "cycles_per_sec", "cycles", 16)
row("cycle p50 us, 1 client", "cycle_p50_us", "cycles", 1, better="lower")
row("cycle p50 us, 16 clients", "cycle_p50_us", "cycles", 16, better="lower")
row(f"Stat p50 us ({population} snapshots)", "stat_p50_us", "latency", better="lower")
row(f"Stat p99 us ({population} snapshots)", "stat_p99_us", "latency", better="lower")
row(f"List p50 ms ({population} snapshots)", "list_p50_ms", "latency", fmt="{:.1f}", better="lower")
row(f"List p99 ms ({population} snapshots)", "list_p99_ms", "latency", fmt="{:.1f}", better="lower")
row(f"populate (Prepare+Commit)/s, {populate_clients} clients", "populate_per_sec", "latency")
row(f"Remove/s, {populate_clients} clients", "remove_per_sec", "latency")
print("\n".join(lines))
probes = [r for r in rows if r["mode"] == "fsync"]
print()
print("fdatasync of a 200-byte overwrite on the same disk, before / after the run: " +
      " / ".join(f"p50 {r['fdatasync_p50_us']:.0f} us, p99 {r['fdatasync_p99_us']:.0f} us" for r in probes))
print()
print("Cycles/s of each round (peer / containerd -> strata / strata direct, and strata direct vs peer):")
for clients in (1, 16):
    per = [values(t, "cycles", "cycles_per_sec", clients) for t in (peer, proxied, direct)]
    rounds = [f"{p:.0f} / {x:.0f} / {d:.0f} ({d / p:.2f}x)" for p, x, d in zip(*per)]
    ratios = [d / p for p, d in zip(per[0], per[2])]
    print(f"- {clients} client(s): " + "; ".join(rounds) +
          f"; median of the round ratios {statistics.median(ratios):.2f}x")
print()
print("Per-call p50 us in the cycle runs, medians over the rounds (prepare / commit / stat / remove):")
for clients in (1, 16):
    for t in (peer, proxied, direct):
        parts = [f"{get(t, 'cycles', k + '_p50_us', clients):.0f}" for k in ("prepare", "commit", "stat", "remove")]
        print(f"- {t}, {clients} client(s): " + " / ".join(parts))
EOF
