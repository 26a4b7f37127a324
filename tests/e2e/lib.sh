# shellcheck shell=bash
# Shared helpers for strata's shell end-to-end tests. Source it, then call
# e2e_init once; everything started through these helpers lives in $E2E_DIR and
# is stopped by pid (and unmounted, and removed) when the script exits.
#
#   source "$(dirname "$0")/lib.sh"
#   e2e_init strata-interop
#   start_stratad "$STRATAD_BIN" "$STRATA_BIN"
#   start_containerd
#   check "images are listed" grep -q foo <(ctr_ images ls -q)
#   e2e_finish            # prints "N passed, M failed", returns non-zero on failure

E2E_DIR=""
E2E_PASSED=0
E2E_FAILED=0
STRATAD_PID=""
CONTAINERD_PID=""
STRATAD_SOCK=""
STRATAD_ROOT=""
CONTAINERD_SOCK=""
E2E_CGROUP_PARENT=""
CTR_NAMESPACE="${CTR_NAMESPACE:-strata-test}"

log() { printf '[%(%H:%M:%S)T] %s\n' -1 "$*" >&2; }

# ---- results -----------------------------------------------------------------

pass() {
  E2E_PASSED=$((E2E_PASSED + 1))
  printf 'PASS: %s\n' "$1"
}

# fail DESCRIPTION [DETAIL...]: records a failure; the script goes on so that
# one run reports every broken check.
fail() {
  E2E_FAILED=$((E2E_FAILED + 1))
  printf 'FAIL: %s\n' "$1"
  shift
  local line
  for line in "$@"; do printf '      %s\n' "$line"; done
}

# check DESCRIPTION COMMAND...: passes when COMMAND exits 0.
check() {
  local what="$1"
  shift
  local out
  if out=$("$@" 2>&1); then
    pass "$what"
  else
    fail "$what" "command: $*" "${out:0:2000}"
  fi
}

# check_contains DESCRIPTION HAYSTACK NEEDLE: passes when NEEDLE is a whole line
# of HAYSTACK (exact match, no regex).
check_contains() {
  if grep -qxF -- "$3" <<<"$2"; then
    pass "$1"
  else
    fail "$1" "expected a line \"$3\" in:" "${2:0:2000}"
  fi
}

# check_has DESCRIPTION NEEDLE HAYSTACK: passes when HAYSTACK contains NEEDLE anywhere
# (a substring, not a whole line).
check_has() {
  if grep -qF -- "$2" <<<"$3"; then
    pass "$1"
  else
    fail "$1" "expected \"$2\" in:" "${3:0:2000}"
  fi
}

# check_lacks DESCRIPTION HAYSTACK NEEDLE: passes when no line of HAYSTACK
# contains NEEDLE.
check_lacks() {
  if grep -qF -- "$3" <<<"$2"; then
    fail "$1" "unexpected \"$3\" in:" "${2:0:2000}"
  else
    pass "$1"
  fi
}

# check_eq DESCRIPTION ACTUAL EXPECTED
check_eq() {
  if [[ "$2" == "$3" ]]; then
    pass "$1"
  else
    fail "$1" "expected: $3" "actual:   $2"
  fi
}

# e2e_finish: prints the logs on failure and the summary line; returns 1 when
# any check failed.
e2e_finish() {
  if ((E2E_FAILED > 0)); then dump_logs; fi
  print_summary
  ((E2E_FAILED == 0))
}

E2E_SUMMARY_PRINTED=""
print_summary() {
  printf '%d passed, %d failed\n' "$E2E_PASSED" "$E2E_FAILED"
  E2E_SUMMARY_PRINTED=1
}

# die MESSAGE: a failure the rest of the script cannot survive.
die() {
  fail "$1"
  dump_logs
  print_summary
  exit 1
}

dump_logs() {
  local f
  for f in "$E2E_DIR/containerd.log" "$E2E_DIR/stratad.log"; do
    [[ -f "$f" ]] || continue
    printf -- '---- last 60 lines of %s ----\n' "$f"
    tail -n 60 "$f" || true
  done
}

# ---- lifecycle ---------------------------------------------------------------

# e2e_init NAME: creates the private directory and installs the cleanup trap.
e2e_init() {
  E2E_DIR=$(mktemp -d "/tmp/${1:-strata-e2e}.XXXXXX")
  chmod 0711 "$E2E_DIR"
  # Containers' cgroups go under this parent, which cleanup removes.
  E2E_CGROUP_PARENT="$(basename "$E2E_DIR")"
  trap e2e_cleanup EXIT
  trap 'exit 130' INT TERM
  # Under set -e an unexpected error ends the script; remember where.
  trap 'E2E_ERR_AT="line $LINENO: $BASH_COMMAND"' ERR
}

# wait_until TIMEOUT_S COMMAND...: retries COMMAND every 0.1 s.
wait_until() {
  local deadline=$((SECONDS + $1))
  shift
  until "$@" >/dev/null 2>&1; do
    ((SECONDS < deadline)) || return 1
    sleep 0.1
  done
}

# wait_while_alive PID TIMEOUT_S COMMAND...: like wait_until, but gives up
# as soon as process PID has exited.
wait_while_alive() {
  local pid="$1" deadline=$((SECONDS + $2))
  shift 2
  until "$@" >/dev/null 2>&1; do
    kill -0 "$pid" 2>/dev/null || return 1
    ((SECONDS < deadline)) || return 1
    sleep 0.1
  done
}

# stop_pid PID NAME: SIGTERM, up to 20 s of grace, then SIGKILL; reaps it.
stop_pid() {
  local pid="$1" name="$2"
  [[ -n "$pid" ]] || return 0
  kill -0 "$pid" 2>/dev/null || { wait "$pid" 2>/dev/null || true; return 0; }
  kill -TERM "$pid" 2>/dev/null || true
  local i
  for ((i = 0; i < 200; i++)); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  if kill -0 "$pid" 2>/dev/null; then
    log "$name (pid $pid) ignored SIGTERM; killing it"
    kill -KILL "$pid" 2>/dev/null || true
  fi
  wait "$pid" 2>/dev/null || true
}

# strata_ ARGS...: the strata CLI against our daemon.
strata_() { "$STRATA_BIN" --address "$STRATAD_SOCK" "$@"; }

# start_stratad STRATAD STRATA [EXTRA_ARGS...]: starts the daemon with its
# root and socket in $E2E_DIR and waits until it answers.
start_stratad() {
  STRATAD_BIN="$1"
  STRATA_BIN="$2"
  shift 2
  STRATAD_ROOT="$E2E_DIR/strata-root"
  STRATAD_SOCK="$E2E_DIR/stratad.sock"
  "$STRATAD_BIN" --root "$STRATAD_ROOT" --address "$STRATAD_SOCK" --log-level debug "$@" \
    >"$E2E_DIR/stratad.log" 2>&1 &
  STRATAD_PID=$!
  log "stratad pid $STRATAD_PID, socket $STRATAD_SOCK"
  if ! wait_while_alive "$STRATAD_PID" 30 strata_ snapshot ls; then
    kill -0 "$STRATAD_PID" 2>/dev/null || die "stratad exited during startup"
    die "stratad did not answer on $STRATAD_SOCK within 30 s"
  fi
}

# ctr_ ARGS...: ctr against our containerd, in our namespace.
ctr_() { ctr --address "$CONTAINERD_SOCK" --namespace "$CTR_NAMESPACE" "$@"; }

# write_containerd_config FILE [PLUGIN ADDRESS]: version 2 config with private
# paths, the plugins this test does not need disabled, and a proxy snapshotter:
# PLUGIN (default "strata") served at ADDRESS (default $STRATAD_SOCK).
write_containerd_config() {
  local plugin="${2:-strata}" address="${3:-$STRATAD_SOCK}"
  cat >"$1" <<EOF
version = 2
root = "$E2E_DIR/containerd/root"
state = "$E2E_DIR/containerd/state"
disabled_plugins = [
  "io.containerd.grpc.v1.cri",
  "io.containerd.snapshotter.v1.btrfs",
  "io.containerd.snapshotter.v1.zfs",
  "io.containerd.snapshotter.v1.devmapper",
  "io.containerd.snapshotter.v1.aufs",
  "io.containerd.tracing.processor.v1.otlp",
  "io.containerd.internal.v1.tracing",
]

[grpc]
  address = "$CONTAINERD_SOCK"

[ttrpc]
  address = "$E2E_DIR/containerd/containerd.sock.ttrpc"

[debug]
  address = ""
  level = "debug"

[metrics]
  address = ""

[plugins]
  [plugins."io.containerd.internal.v1.opt"]
    path = "$E2E_DIR/containerd/opt"

[proxy_plugins]
  [proxy_plugins.$plugin]
    type = "snapshot"
    address = "$address"
EOF
}

# start_containerd [PLUGIN ADDRESS]: starts containerd with private root, state,
# sockets and config (write_containerd_config), and waits until it answers.
start_containerd() {
  mkdir -p "$E2E_DIR/containerd"
  CONTAINERD_SOCK="$E2E_DIR/containerd/containerd.sock"
  write_containerd_config "$E2E_DIR/containerd/config.toml" "$@"
  containerd --config "$E2E_DIR/containerd/config.toml" >"$E2E_DIR/containerd.log" 2>&1 &
  CONTAINERD_PID=$!
  log "containerd pid $CONTAINERD_PID, socket $CONTAINERD_SOCK"
  if ! wait_while_alive "$CONTAINERD_PID" 30 ctr --address "$CONTAINERD_SOCK" version; then
    kill -0 "$CONTAINERD_PID" 2>/dev/null || die "containerd exited during startup"
    die "containerd did not answer on $CONTAINERD_SOCK within 30 s"
  fi
}

# Pids of runc shims serving our containerd (they carry its address).
our_shim_pids() {
  [[ -n "$CONTAINERD_SOCK" ]] || return 0
  local dir pid
  for dir in /proc/[0-9]*; do
    pid=${dir#/proc/}
    local cmd
    cmd=$({ tr '\0' ' ' <"$dir/cmdline"; } 2>/dev/null) || continue
    [[ "$cmd" == *containerd-shim* && "$cmd" == *"-address $CONTAINERD_SOCK "* ]] && echo "$pid"
  done
  return 0
}

# Removes every task and container of our namespace, so their shims exit.
cleanup_containerd_objects() {
  kill -0 "$CONTAINERD_PID" 2>/dev/null || return 0
  local id
  for id in $(ctr_ tasks ls -q 2>/dev/null); do
    ctr_ tasks kill --signal SIGKILL "$id" >/dev/null 2>&1 || true
  done
  for id in $(ctr_ tasks ls -q 2>/dev/null); do
    wait_until 10 bash -c "! ctr --address '$CONTAINERD_SOCK' -n '$CTR_NAMESPACE' tasks ls -q | grep -qx '$id'" ||
      true
    ctr_ tasks delete --force "$id" >/dev/null 2>&1 || true
  done
  for id in $(ctr_ containers ls -q 2>/dev/null); do
    ctr_ containers delete "$id" >/dev/null 2>&1 || true
  done
}

# Removes every task stratad runs (`strata run`), and any container or task supervisor
# of ours that outlived it, found by our own root and directory.
cleanup_strata_tasks() {
  [[ -n "$STRATAD_ROOT" ]] || return 0
  local id
  if kill -0 "$STRATAD_PID" 2>/dev/null; then
    for id in $(strata_ ps -a -q 2>/dev/null); do strata_ rm -f "$id" >/dev/null 2>&1 || true; done
  fi
  local state runtime
  for state in "$STRATAD_ROOT"/runtime/*; do
    [[ -d "$state" ]] || continue
    runtime=$(basename "$state")
    command -v "$runtime" >/dev/null || continue
    for id in $("$runtime" --root "$state" list -q 2>/dev/null); do
      "$runtime" --root "$state" delete --force "$id" >/dev/null 2>&1 || true
    done
  done
  local pid
  for pid in $(pgrep -f -- "--task-shim" 2>/dev/null); do
    grep -qF "$STRATAD_ROOT" "/proc/$pid/cmdline" 2>/dev/null || continue
    log "stopping leftover task supervisor pid $pid"
    kill -KILL "$pid" 2>/dev/null || true
  done
}

# Mount points under $E2E_DIR, deepest first.
mounts_under_e2e_dir() {
  [[ -n "$E2E_DIR" ]] || return 0
  awk -v dir="$E2E_DIR" '
    function unescape(s) { gsub(/\\040/, " ", s); gsub(/\\011/, "\t", s); gsub(/\\012/, "\n", s); gsub(/\\134/, "\\", s); return s }
    { p = unescape($5); if (p == dir || index(p, dir "/") == 1) print length(p) "\t" p }
  ' /proc/self/mountinfo | sort -rn | cut -f2-
}

e2e_cleanup() {
  local rc=$?
  set +e
  trap - EXIT ERR
  if [[ -z "$E2E_SUMMARY_PRINTED" ]] && ((rc != 0)); then
    fail "script aborted with status $rc${E2E_ERR_AT:+ at $E2E_ERR_AT}"
    dump_logs
    print_summary
  fi
  cleanup_containerd_objects
  cleanup_strata_tasks
  stop_pid "$CONTAINERD_PID" containerd
  local pid
  for pid in $(our_shim_pids); do
    log "stopping leftover shim pid $pid"
    stop_pid "$pid" containerd-shim
  done
  stop_pid "$STRATAD_PID" stratad
  # runc removes a container's cgroup, not the parent made for it.
  local cg
  if [[ -n "$E2E_CGROUP_PARENT" ]]; then
    for cg in /sys/fs/cgroup/"$E2E_CGROUP_PARENT" /sys/fs/cgroup/*/"$E2E_CGROUP_PARENT"; do
      [[ -d "$cg" ]] && { rmdir "$cg" 2>/dev/null || log "cannot remove cgroup $cg"; }
    done
  fi
  local m
  while IFS= read -r m; do
    [[ -n "$m" ]] || continue
    umount "$m" 2>/dev/null || umount -l "$m" 2>/dev/null || log "cannot unmount $m"
  done < <(mounts_under_e2e_dir)
  if [[ -n "$E2E_DIR" && -d "$E2E_DIR" ]]; then
    if [[ -n "${E2E_KEEP:-}" ]]; then
      log "keeping $E2E_DIR (E2E_KEEP set)"
    else
      rm -rf --one-file-system "$E2E_DIR"
    fi
  fi
  exit "$rc"
}
