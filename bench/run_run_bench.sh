#!/usr/bin/env bash
# `strata run --rm IMAGE true` against `ctr run --rm IMAGE ID true` (issue 5): wall time
# of a whole short-lived container, image already pulled, in the same run.
#
#   sudo bench/run_run_bench.sh BUILD_DIR       (needs BUILD_DIR/stratad and strata)
#
# 1. Builds two images as OCI layouts (tests/e2e/oci_lib.sh): "small", one layer with
#    a static busybox; "big", busybox plus four layers of this machine's files
#    (/usr/lib/python3.11, /usr/include, /usr/share/doc, /usr/share/locale).
# 2. Starts, in a private directory: Debian's docker-registry on loopback (the images
#    are pushed with skopeo), a stratad (runtime runc, the default) and Debian's
#    containerd 1.6 (default overlayfs snapshotter, runc through
#    io.containerd.runc.v2, CRI disabled). Both pull both images
#    (`strata image pull`, `ctr images pull --plain-http`).
# 3. For each image: one untimed run of each contender, then RUNS rounds, each timing
#    every contender once, in turn (wall clock of the client command):
#      ctr run --rm IMAGE ID true
#      ctr run --rm --uidmap 0:100000:65536 --gidmap 0:100000:65536 IMAGE ID true
#        (containerd 1.6's user-namespace path: it prepares a snapshot on the image,
#        chowns every file through the overlay, commits it as "<chain id>-100000-100000"
#        and runs the container on top; a later run would reuse that copy, but nothing
#        references it once the --rm container is gone, so the garbage collector
#        removes it and every run chowns again)
#      strata run --rm -q IMAGE true
#      strata run --rm -q --userns auto IMAGE true   (idmapped layers, a new range each run)
#    Before each measurement it waits (up to QUIET_WAIT s) until other jobs leave the
#    CPUs at most 15% busy, and until stratad and containerd are idle.
#
# Prints a markdown table of medians. Environment: RUNS (10), QUIET_WAIT (300),
# STRATAD_LOG_LEVEL (info), IMAGES ("small big"), KEEP_TMP=1 keeps the private
# directory (logs; stratad's log at debug level has a timestamped line per step).
set -euo pipefail

if [[ $# -ne 1 ]]; then
  echo "usage: $0 BUILD_DIR" >&2
  exit 2
fi
here=$(cd "$(dirname "$0")" && pwd)
build_dir=$(realpath "$1")
CTR_NAMESPACE=strata-run-bench
# shellcheck source=../tests/e2e/lib.sh
source "$here/../tests/e2e/lib.sh"
# shellcheck source=../tests/e2e/registry_lib.sh
source "$here/../tests/e2e/registry_lib.sh"
# shellcheck source=../tests/e2e/oci_lib.sh
source "$here/../tests/e2e/oci_lib.sh"
# shellcheck source=bench_lib.sh
source "$here/bench_lib.sh"
STRATAD_BIN="$build_dir/stratad"
STRATA_BIN="$build_dir/strata"
runs=${RUNS:-10}
quiet_wait=${QUIET_WAIT:-300}
images=${IMAGES:-"small big"}
for f in "$STRATAD_BIN" "$STRATA_BIN"; do
  [[ -x $f ]] || { echo "missing executable: $f (build first)" >&2; exit 2; }
done
for tool in containerd ctr runc docker-registry skopeo busybox jq; do
  command -v "$tool" >/dev/null || { echo "missing tool: $tool (scripts/install-deps.sh)" >&2; exit 2; }
done
[[ $(id -u) -eq 0 ]] || { echo "$0: containers need root" >&2; exit 2; }

e2e_init strata-run-bench
[[ ${KEEP_TMP:-0} == 1 ]] && E2E_KEEP=1  # read by lib.sh's cleanup
results="$E2E_DIR/results.tsv"  # image contender run seconds
: >"$E2E_DIR/busy.log"

# ---- the images ------------------------------------------------------------------------

log "building the images"
base="$E2E_DIR/l-base"
mkdir -p "$base"/{bin,etc,root,tmp}
cp "$(command -v busybox)" "$base/bin/busybox"
for applet in sh true echo id ls cat; do ln -s busybox "$base/bin/$applet"; done
printf 'root:x:0:0:root:/root:/bin/sh\n' >"$base/etc/passwd"
printf 'root:x:0:\n' >"$base/etc/group"
chmod 1777 "$base/tmp"
oci_layout_from_dirs "$E2E_DIR/img-small" bench/run small "$base"
big_layers=("$base")
for src in /usr/lib/python3.11 /usr/include /usr/share/doc /usr/share/locale; do
  d="$E2E_DIR/l$(echo "$src" | tr / -)"
  mkdir -p "$d$(dirname "$src")"
  cp -a "$src" "$d$(dirname "$src")/"
  big_layers+=("$d")
done
oci_layout_from_dirs "$E2E_DIR/img-big" bench/run big "${big_layers[@]}"
declare -A image_note
image_note[small]="1 layer, $(find "$base" | wc -l) entries, $(du -sk "$base" | cut -f1) KiB"
image_note[big]="${#big_layers[@]} layers, $(find "${big_layers[@]}" | wc -l) entries, $(du -sm "${big_layers[@]}" | awk '{s += $1} END {print s}') MB"
rm -rf "${big_layers[@]}"

start_registry
# containerd's runc shim puts containers under /<namespace>/<id> in each cgroup
# hierarchy and leaves /<namespace>; removed before lib.sh's cleanup runs.
remove_ctr_cgroups() {
  local cg
  for cg in /sys/fs/cgroup/"$CTR_NAMESPACE" /sys/fs/cgroup/*/"$CTR_NAMESPACE"; do
    if [[ -d $cg ]]; then rmdir "$cg" 2>/dev/null || true; fi
  done
}
trap 'rc=$?; cleanup_containerd_objects; remove_ctr_cgroups; (exit $rc); _registry_lib_cleanup' EXIT
for img in $images; do push_oci_layout "$E2E_DIR/img-$img:$img" "$REGISTRY_ADDR/bench/run:$img"; done

# ---- the daemons -----------------------------------------------------------------------

cat >"$E2E_DIR/stratad.toml" <<EOF
[runtime]
default_runtime = "runc"
cgroup_parent = "$E2E_CGROUP_PARENT"
EOF
STRATAD_ROOT="$E2E_DIR/strata-root"
STRATAD_SOCK="$E2E_DIR/stratad.sock"
"$STRATAD_BIN" --root "$STRATAD_ROOT" --address "$STRATAD_SOCK" --config "$E2E_DIR/stratad.toml" \
  --log-level "${STRATAD_LOG_LEVEL:-info}" >"$E2E_DIR/stratad.log" 2>&1 &
STRATAD_PID=$!
wait_while_alive "$STRATAD_PID" 30 strata_ snapshot ls || die "stratad did not start (see $E2E_DIR/stratad.log)"
start_containerd

for img in $images; do
  ref="$REGISTRY_ADDR/bench/run:$img"
  strata_ image pull "$ref" >/dev/null
  ctr_ images pull --plain-http "$ref" >/dev/null
done

# ---- measurements ----------------------------------------------------------------------

# Waits up to QUIET_WAIT s until other jobs leave the CPUs at most 15% busy and both
# daemons used no CPU for half a second; a measurement started on a busy machine is
# counted in the report.
wait_quiet() {
  local deadline=$((SECONDS + quiet_wait)) busy s0 c0
  while true; do
    s0=$(cpu_ticks "$STRATAD_PID")
    c0=$(cpu_ticks "$CONTAINERD_PID")
    busy=$(cpu_busy_percent)
    if ((busy <= 15)) && (($(cpu_ticks "$STRATAD_PID") - s0 <= 1)) &&
      (($(cpu_ticks "$CONTAINERD_PID") - c0 <= 1)); then
      return 0
    fi
    if ((SECONDS >= deadline)); then
      log "warning: CPUs ${busy}% busy or a daemon not idle after ${quiet_wait} s; measuring anyway"
      echo "$busy" >>"$E2E_DIR/busy.log"
      return 0
    fi
  done
}

map=0:100000:65536
seq_id=0
# one_run IMAGE CONTENDER RUN: times one container; RUN "warmup" is not recorded.
one_run() {
  local img=$1 who=$2 run=$3 ref="$REGISTRY_ADDR/bench/run:$1" t0 t1 rc=0
  seq_id=$((seq_id + 1))
  local cmd=()
  case $who in
    ctr) cmd=(ctr_ run --rm "$ref" "bench-$seq_id" true) ;;
    ctr-uidmap) cmd=(ctr_ run --rm --uidmap "$map" --gidmap "$map" "$ref" "bench-$seq_id" true) ;;
    strata) cmd=(strata_ run --rm -q "$ref" true) ;;
    strata-userns) cmd=(strata_ run --rm -q --userns auto "$ref" true) ;;
  esac
  wait_quiet
  t0=$EPOCHREALTIME
  "${cmd[@]}" >"$E2E_DIR/run.out" 2>&1 || rc=$?
  t1=$EPOCHREALTIME
  if ((rc != 0)); then
    cat "$E2E_DIR/run.out" >&2
    die "$who on $img failed with status $rc"
  fi
  local secs
  secs=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.4f", b - a }')
  log "$img $who $run: $secs s"
  printf '%s\t%s\t%s\t%s\n' "$img" "$who" "$run" "$secs" >>"$results"
}

contenders="ctr ctr-uidmap strata strata-userns"
for img in $images; do
  for who in $contenders; do one_run "$img" "$who" warmup; done
  for run in $(seq "$runs"); do
    for who in $contenders; do one_run "$img" "$who" "$run"; done
  done
done

# ---- report ----------------------------------------------------------------------------

busy_runs=$(wc -l <"$E2E_DIR/busy.log")
echo
echo "$(nproc) CPUs, $(uname -r); containerd $(containerd --version | awk '{print $3}'), $(runc --version | head -n 1);" \
  "$("$STRATAD_BIN" --version) built $(date -u -r "$STRATAD_BIN" '+%F %H:%M UTC') (source tree now at" \
  "$(git -C "$here/.." rev-parse --short HEAD 2>/dev/null || echo '?')); medians of $runs runs;" \
  "$busy_runs measurements started while other jobs kept the CPUs over 15% busy."
for img in $images; do echo "image $img: ${image_note[$img]}"; done
echo
python3 - "$results" <<'EOF'
import collections, statistics, sys
rows = collections.defaultdict(list)
first = {}
for line in open(sys.argv[1]):
    img, who, run, s = line.rstrip("\n").split("\t")
    if run == "warmup":
        first[(img, who)] = float(s)
    else:
        rows[(img, who)].append(float(s))
names = {"ctr": "`ctr run --rm` (overlayfs, runc)",
         "ctr-uidmap": "`ctr run --rm --uidmap/--gidmap` (chowns a copy of the image)",
         "strata": "`strata run --rm -q` (runc)",
         "strata-userns": "`strata run --rm -q --userns auto` (idmapped layers)"}
print("| image | command | median (s) | min (s) | max (s) | untimed first run (s) | time vs `ctr run` |")
print("|---|---|---:|---:|---:|---:|---:|")
imgs = []
for img, _ in rows:
    if img not in imgs: imgs.append(img)
for img in imgs:
    base = statistics.median(rows[(img, "ctr")])
    for who in ("ctr", "ctr-uidmap", "strata", "strata-userns"):
        v = rows[(img, who)]
        med = statistics.median(v)
        print(f"| {img} | {names[who]} | {med:.3f} | {min(v):.3f} | {max(v):.3f} | "
              f"{first[(img, who)]:.3f} | {med / base:.2f}x |")
EOF
print_summary >/dev/null
