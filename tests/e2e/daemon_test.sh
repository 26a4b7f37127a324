#!/usr/bin/env bash
# stratad and strata as a user meets them: flags and config file, single instance per
# root, socket permissions, clean shutdown, CLI errors and JSON output.
# Usage: daemon_test.sh STRATAD STRATA
set -uo pipefail

STRATAD=$1
STRATA=$2
TMP=$(mktemp -d /tmp/strata-daemon-test.XXXXXX)
PIDS=()
passed=0
failed=0

cleanup() {
  for pid in "${PIDS[@]}"; do
    kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null
  done
  rm -rf "$TMP"
}
trap cleanup EXIT

pass() { echo "PASS: $1"; passed=$((passed + 1)); }
fail() { echo "FAIL: $1"; failed=$((failed + 1)); }
check() {  # check NAME COMMAND...: passes when COMMAND succeeds
  local name=$1
  shift
  if "$@"; then pass "$name"; else fail "$name"; fi
}

# Starts stratad with the given arguments in the background; sets LAST_PID.
start_daemon() {
  local log=$1
  shift
  "$STRATAD" "$@" >"$log" 2>&1 &
  LAST_PID=$!
  PIDS+=("$LAST_PID")
}

wait_ready() {  # wait_ready SOCKET PID
  for _ in $(seq 100); do
    "$STRATA" --address "$1" snapshot ls >/dev/null 2>&1 && return 0
    kill -0 "$2" 2>/dev/null || return 1
    sleep 0.05
  done
  return 1
}

SOCK=$TMP/run/strata.sock
ROOT=$TMP/root

# 1. Starts with flags; socket is 0600 by default.
start_daemon "$TMP/d1.log" --root "$ROOT" --address "$SOCK" --log-level info
D1=$LAST_PID
check "daemon answers on its socket" wait_ready "$SOCK" "$D1"
check "socket mode is 0600 by default" test "$(stat -c %a "$SOCK")" = 600

# 2. A second daemon on the same root refuses, naming the holder.
"$STRATAD" --root "$ROOT" --address "$TMP/other.sock" >"$TMP/d2.log" 2>&1
rc=$?
check "second daemon on the same root exits non-zero" test "$rc" -ne 0
check "second daemon names the lock holder" grep -q "another stratad (pid $D1)" "$TMP/d2.log"

# 3. CLI: errors are one line with a non-zero exit; JSON is JSON.
"$STRATA" --address "$SOCK" snapshot info no-such-key >"$TMP/out" 2>"$TMP/err"
rc=$?
check "unknown key exits 1" test "$rc" -eq 1
check "unknown key error is one line naming the key" \
  bash -c "test \$(wc -l <'$TMP/err') -eq 1 && grep -q 'no-such-key' '$TMP/err' && grep -q '(not found)' '$TMP/err'"
"$STRATA" --address "$SOCK" snapshot prepare "ns/1/key with spaces:and/colons" >/dev/null
"$STRATA" --address "$SOCK" snapshot commit --label a=b "ns/2/base" "ns/1/key with spaces:and/colons"
"$STRATA" --address "$SOCK" snapshot prepare child "ns/2/base" >/dev/null
"$STRATA" --address "$SOCK" snapshot ls --json >"$TMP/ls.json"
check "ls --json holds the committed snapshot and its label" \
  grep -q '"name": "ns/2/base"' "$TMP/ls.json"
check "ls --json is valid JSON" jq -e 'length == 2' "$TMP/ls.json"
"$STRATA" --address "$SOCK" snapshot rm "ns/2/base" 2>"$TMP/err"
check "removing a parent fails with the containerd message" \
  grep -q "cannot remove snapshot with child" "$TMP/err"
check "check reports consistent" "$STRATA" --address "$SOCK" snapshot check
STRATA_ADDRESS=$SOCK "$STRATA" snapshot tree >"$TMP/tree"
check "STRATA_ADDRESS is honoured and tree shows the child" grep -q "child (active)" "$TMP/tree"
"$STRATA" --address "$TMP/nothing.sock" snapshot ls 2>"$TMP/err"
rc=$?
check "unreachable daemon: exit 1 with a hint" \
  bash -c "test $rc -eq 1 && grep -q 'cannot connect to stratad' '$TMP/err'"

# 4. SIGTERM shuts down cleanly and removes the socket.
kill -TERM "$D1"
wait "$D1"
rc=$?
check "SIGTERM exits 0" test "$rc" -eq 0
check "socket removed on shutdown" test ! -e "$SOCK"
check "shutdown is logged" grep -q "stratad stopped" "$TMP/d1.log"

# 5. Config file: keys apply, flags override, unknown keys are refused.
cat >"$TMP/config.toml" <<EOF
root = "$ROOT"
address = "$TMP/run/from-config.sock"
log_level = "debug"
socket_mode = "0660"
socket_group = "0"
EOF
start_daemon "$TMP/d3.log" --config "$TMP/config.toml"
D3=$LAST_PID
check "config file address is used" wait_ready "$TMP/run/from-config.sock" "$D3"
check "config socket_mode 0660 applied" test "$(stat -c %a "$TMP/run/from-config.sock")" = 660
check "snapshots survived the restart" \
  bash -c "'$STRATA' --address '$TMP/run/from-config.sock' snapshot ls | grep -q 'ns/2/base'"
kill -TERM "$D3"
wait "$D3"
start_daemon "$TMP/d4.log" --config "$TMP/config.toml" --address "$TMP/run/flag.sock"
D4=$LAST_PID
check "flag overrides config" wait_ready "$TMP/run/flag.sock" "$D4"
kill -TERM "$D4"
wait "$D4"
echo 'no_such_key = 1' >"$TMP/bad.toml"
"$STRATAD" --config "$TMP/bad.toml" >"$TMP/d5.log" 2>&1
rc=$?
check "unknown config key exits 2 naming the key" \
  bash -c "test $rc -eq 2 && grep -q 'unknown key \"no_such_key\"' '$TMP/d5.log'"
echo 'root = [' >"$TMP/syntax.toml"
"$STRATAD" --config "$TMP/syntax.toml" >"$TMP/d6.log" 2>&1
check "config syntax error names file and line" grep -q "syntax.toml:1" "$TMP/d6.log"

echo "$passed passed, $failed failed"
test "$failed" -eq 0
