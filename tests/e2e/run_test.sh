#!/usr/bin/env bash
# `strata run|ps|logs|exec|stop|kill|rm|wait` end to end with a real OCI runtime:
# Debian's docker-registry serving a busybox image the test builds itself, stratad
# pulling it, runc or crun (the RUNTIME argument) running it with real overlay and
# idmapped mounts, cgroups, user namespaces and CDI devices.
#
#   run_test.sh STRATAD STRATA RUNTIME      (RUNTIME: runc | crun | runsc)
#
# With runsc (gVisor) only a smoke subset runs, and it is skipped with the reason when
# gVisor cannot start a sandbox on this machine.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
source "$HERE/lib.sh"
source "$HERE/registry_lib.sh"
source "$HERE/oci_lib.sh"

STRATAD=$(realpath "$1")
STRATA=$(realpath "$2")
RUNTIME="$3"
for tool in "$RUNTIME" busybox jq skopeo docker-registry script; do
  command -v "$tool" >/dev/null || { echo "FAIL: $tool is not installed (scripts/install-deps.sh)"; exit 1; }
done

e2e_init "strata-run-$RUNTIME"

# crun refuses a hybrid cgroup host (v1 controllers plus a cgroup2 mount) whose cgroup2
# hierarchy holds any controller ("drop all controllers from cgroupv2"); this VM leaves
# hugetlb there. When no cgroup uses them in v2, bind them to a private v1 hierarchy for
# the test's lifetime (unmounted by the cleanup; the kernel returns them to cgroup2).
UNIFIED=/sys/fs/cgroup/unified
if [[ "$RUNTIME" == crun && -n "$(cat $UNIFIED/cgroup.controllers 2>/dev/null)" &&
  -z "$(cat $UNIFIED/cgroup.subtree_control 2>/dev/null)" ]]; then
  CONTROLLERS=$(tr ' ' ',' <"$UNIFIED/cgroup.controllers")
  log "hybrid cgroups with cgroup2 controllers ($CONTROLLERS): moving them to a private v1 hierarchy for crun"
  mkdir -p "$E2E_DIR/cgroup-v1"
  mount -t cgroup -o "$CONTROLLERS" none "$E2E_DIR/cgroup-v1"
fi

# ---- the image: static busybox, users, two layers ------------------------------------
L1="$E2E_DIR/layer1" L2="$E2E_DIR/layer2"
mkdir -p "$L1"/{bin,etc,root,tmp,home/app,dev,proc,sys} "$L2/srv"
cp "$(command -v busybox)" "$L1/bin/busybox"
for applet in sh echo cat ls id pwd env sleep true false touch stat head tail tty grep \
  mkdir rm wc test kill ps cut sed dd tr dmesg; do
  ln -s busybox "$L1/bin/$applet"
done
printf 'root:x:0:0:root:/root:/bin/sh\napp:x:1000:1000:app:/home/app:/bin/sh\n' >"$L1/etc/passwd"
printf 'root:x:0:\napp:x:1000:\nextra:x:2000:app\n' >"$L1/etc/group"
chmod 1777 "$L1/tmp"
chown 1000:1000 "$L1/home/app"
echo "from layer 2" >"$L2/srv/hello.txt"
oci_layout_from_dirs "$E2E_DIR/img-plain" strata/run plain "$L1" "$L2"
OCI_CONFIG_PATCH='.Entrypoint = ["/bin/sh", "-c"] | .Cmd = ["echo entry:$FOO:$(pwd):$(id -u)"]
  | .Env += ["FOO=bar"] | .WorkingDir = "/srv" | .User = "app"' \
  oci_layout_from_dirs "$E2E_DIR/img-config" strata/run config "$L1" "$L2"
start_registry
push_oci_layout "$E2E_DIR/img-plain:plain" "$REGISTRY_ADDR/strata/run:plain"
push_oci_layout "$E2E_DIR/img-config:config" "$REGISTRY_ADDR/strata/run:config"
IMG="$REGISTRY_ADDR/strata/run:plain"
IMG2="$REGISTRY_ADDR/strata/run:config"

mkdir -p "$E2E_DIR/cdi"
cat >"$E2E_DIR/stratad.toml" <<EOF
[runtime]
default_runtime = "$RUNTIME"
cgroup_parent = "$E2E_CGROUP_PARENT"
cdi_spec_dirs = ["$E2E_DIR/cdi"]
EOF
start_stratad "$STRATAD" "$STRATA" --config "$E2E_DIR/stratad.toml"

# run_out ARGS...: stdout of `strata run --rm -q ARGS`, its exit code in RC.
run_out() {
  set +e
  OUT=$(strata_ run --rm -q "$@" 2>"$E2E_DIR/stderr")
  RC=$?
  set -e
  ERR=$(cat "$E2E_DIR/stderr")
}

# ---- runsc: a smoke test where gVisor can run -------------------------------------------
if [[ "$RUNTIME" == runsc ]]; then
  run_out "$IMG" echo hello from gvisor
  if ((RC != 0)); then
    log "SKIP: runsc cannot run a sandbox here: ${ERR:0:400}"
    echo "SKIP: gVisor (runsc) cannot start a sandbox on this machine: ${ERR:0:200}"
    print_summary
    exit 0
  fi
  check_eq "runsc: output" "hello from gvisor" "$OUT"
  run_out "$IMG" sh -c 'exit 5'
  check_eq "runsc: exit code" 5 "$RC"
  run_out -e A=1 -u app "$IMG2" 'echo $A $(id -u) $(pwd)'
  check_eq "runsc: image config and options" "$OUT" "1 1000 /srv"
  run_out "$IMG" sh -c 'dmesg 2>/dev/null | head -1 | grep -qi gvisor && echo sandboxed'
  check_eq "runsc: the kernel is gVisor's" "$OUT" "sandboxed"
  strata_ run -d -q --name g "$IMG" sh -c 'echo up; while true; do sleep 0.2; done' >/dev/null
  check_eq "runsc: exec" "$(strata_ exec g cat /srv/hello.txt)" "from layer 2"
  wait_until 10 sh -c "'$STRATA' --address '$STRATAD_SOCK' logs g | grep -q up" || true
  check_eq "runsc: logs" "$(strata_ logs g)" "up"
  strata_ stop -t 1 g >/dev/null
  check_eq "runsc: stopped" "$(strata_ ps -a --json | jq -r '.[0].state')" "stopped"
  strata_ rm g >/dev/null
  check_eq "runsc: nothing left" "" "$(strata_ ps -a -q)"
  e2e_finish
  exit $?
fi

# ---- basics --------------------------------------------------------------------------
run_out "$IMG" echo hello
check_eq "run --rm echo: output" "hello" "$OUT"
check_eq "run --rm echo: exit code" 0 "$RC"
check_eq "run --rm removes the task" "" "$(strata_ ps -a -q)"
check_lacks "run --rm removes the task's snapshot" \
  "$(strata_ --snapshotter strata-images snapshot ls)" "strata-task/"
check_eq "run --rm removes the bundle" "" "$(ls "$STRATAD_ROOT/tasks")"

run_out "$IMG" sh -c 'exit 7'
check_eq "exit code propagates" 7 "$RC"
run_out "$IMG" sh -c 'kill -TERM $$; echo "pid 1 ignores signals it does not handle"'
check_eq "init of the pid namespace ignores unhandled signals" "$OUT" "pid 1 ignores signals it does not handle"
run_out "$IMG" sh -c 'echo to-out; echo to-err >&2'
check_eq "stdout stays stdout" "to-out" "$OUT"
check_eq "stderr stays stderr" "to-err" "$ERR"

run_out -e A=1 -e B=two "$IMG" sh -c 'echo "$A $B $HOME $PATH"'
check_eq "env: -e and defaults" "1 two /root /usr/local/bin:/usr/bin:/bin" "$OUT"
printf 'C=3\n# comment\nD=four\n' >"$E2E_DIR/envfile"
run_out --env-file "$E2E_DIR/envfile" "$IMG" sh -c 'echo "$C $D"'
check_eq "env: --env-file" "3 four" "$OUT"

# The image config's Entrypoint, Cmd, Env, WorkingDir and User.
run_out "$IMG2"
check_eq "image config: entrypoint, cmd, env, workdir, user" "entry:bar:/srv:1000" "$OUT"
run_out --entrypoint id "$IMG2" -G
check_has "image config user: supplementary groups from /etc/group" "2000" "$OUT"
run_out -u root "$IMG2" 'id -u'
check_eq "-u overrides the image's user" "0" "$OUT"
run_out -u 1000:2000 "$IMG" sh -c 'echo $(id -u):$(id -g)'
check_eq "-u UID:GID" "1000:2000" "$OUT"
run_out -u nosuchuser "$IMG" true
check "unknown user: refused" test "$RC" -ne 0
check_has "unknown user: named in the error" "nosuchuser" "$ERR"
run_out -w /tmp/work "$IMG" pwd
check_eq "-w creates and enters the directory" "/tmp/work" "$OUT"
run_out --hostname box "$IMG" cat /proc/sys/kernel/hostname
check_eq "--hostname" "box" "$OUT"
run_out "$IMG" cat /srv/hello.txt
check_eq "files of the upper layer" "from layer 2" "$OUT"

# ---- mounts, read-only rootfs --------------------------------------------------------
mkdir -p "$E2E_DIR/vol"
echo "from host" >"$E2E_DIR/vol/in"
run_out -v "$E2E_DIR/vol:/data" "$IMG" sh -c 'cat /data/in; echo from-container > /data/out'
check_eq "bind mount: read" "from host" "$OUT"
check_eq "bind mount: write lands on the host" "from-container" "$(cat "$E2E_DIR/vol/out")"
run_out -v "$E2E_DIR/vol:/data:ro" "$IMG" sh -c 'echo x > /data/ro-test'
check "bind mount :ro refuses writes" test "$RC" -ne 0
check "bind mount :ro: nothing written" test ! -e "$E2E_DIR/vol/ro-test"
run_out --read-only "$IMG" touch /newfile
check "--read-only: rootfs writes fail" test "$RC" -ne 0
check_has "--read-only: EROFS" "Read-only file system" "$ERR"
run_out "$IMG" sh -c 'touch /newfile && echo ok'
check_eq "writable rootfs by default" "ok" "$OUT"
run_out -v "relative:/data" "$IMG" true
check "relative volume path: refused" test "$RC" -ne 0
check_has "relative volume path: explained" "absolute" "$ERR"

# ---- limits ---------------------------------------------------------------------------
# dd fills a 256 MiB buffer: it cannot fit in 32m.
run_out -m 32m "$IMG" dd if=/dev/zero of=/dev/null bs=256M count=1
check_eq "memory limit: the process is OOM-killed (128+SIGKILL)" "$RC" 137
run_out -m 512m "$IMG" dd if=/dev/zero of=/dev/null bs=256M count=1
check_eq "memory limit: the same process fits in 512m" "$RC" 0
run_out -m 64m "$IMG" sh -c 'cat /sys/fs/cgroup/memory/memory.limit_in_bytes 2>/dev/null || cat /sys/fs/cgroup/memory.max'
check_eq "memory limit: cgroup value" "67108864" "$OUT"
run_out --pids-limit 7 "$IMG" sh -c 'cat /sys/fs/cgroup/pids/pids.max 2>/dev/null || cat /sys/fs/cgroup/pids.max'
check_eq "pids limit: cgroup value" "7" "$OUT"
run_out --cpus 0.5 "$IMG" sh -c 'cat /sys/fs/cgroup/cpu/cpu.cfs_quota_us 2>/dev/null || cut -d" " -f1 /sys/fs/cgroup/cpu.max'
check_eq "cpu limit: cgroup quota" "50000" "$OUT"
run_out "$IMG" sh -c 'cat /proc/self/status | grep CapEff'
check_eq "default capability set" "CapEff:	00000000a80425fb" "$OUT"
run_out --net none "$IMG" sh -c 'ls /sys/class/net'
check_eq "--net none: loopback only" "lo" "$OUT"
run_out --net host "$IMG" sh -c 'ls /sys/class/net'
check_eq "--net host: the host's interfaces" "$OUT" "$(ls /sys/class/net)"

# ---- stdin and terminals ----------------------------------------------------------------
OUT=$(echo "piped in" | strata_ run --rm -q -i "$IMG" cat)
check_eq "-i: stdin reaches the process" "piped in" "$OUT"
OUT=$(echo "ignored" | strata_ run --rm -q "$IMG" sh -c 'cat; echo done')
check_eq "without -i stdin is empty" "done" "$OUT"
OUT=$(script -qec "$STRATA --address $STRATAD_SOCK run --rm -q -t -i $IMG tty" /dev/null </dev/null | tr -d '\r')
check_has "-t: the process has a terminal" "/dev/pts/0" "$OUT"
OUT=$(printf 'echo typed-$((6*7))\nexit 3\n' | script -qec "$STRATA --address $STRATAD_SOCK run --rm -q -t -i $IMG sh; echo rc=\$?" /dev/null | tr -d '\r')
check_has "-it: typed input runs in the shell" "typed-42" "$OUT"
check_has "-it: the shell's exit code" "rc=3" "$OUT"

# ---- detached tasks: ps, logs, exec, stop, rm ---------------------------------------------
ID=$(strata_ run -d -q --name web "$IMG" sh -c 'echo started; echo oops >&2; i=0; while true; do i=$((i+1)); echo tick $i; sleep 0.2; done')
check "run -d prints the id" test "${#ID}" -eq 64
check_has "ps lists the running task" "web" "$(strata_ ps)"
check_eq "ps --json: state" "running" "$(strata_ ps --json | jq -r '.[] | select(.name=="web") | .state')"
PID=$(strata_ ps --json | jq -r '.[] | select(.name=="web") | .pid')
check "ps --json: the host pid is alive" kill -0 "$PID"
wait_until 10 sh -c "'$STRATA' --address '$STRATAD_SOCK' logs web | grep -q 'tick 3'" || true
LOGS=$(strata_ logs web 2>/dev/null)
check_has "logs: stdout" "started" "$LOGS"
check_has "logs: later output" "tick 3" "$LOGS"
check_eq "logs: stderr goes to stderr" "oops" "$(strata_ logs web 2>&1 >/dev/null)"
check_eq "logs --tail 1" 1 "$(strata_ logs --tail 1 web | wc -l)"
check "logs -t: an RFC 3339 timestamp first" grep -qE '^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9:.]+Z tick' \
  <(strata_ logs -t --tail 1 web)
check_eq "exec: runs in the task" "from layer 2" "$(strata_ exec web cat /srv/hello.txt)"
set +e
strata_ exec web sh -c 'exit 3'
RC=$?
set -e
check_eq "exec: exit code" 3 "$RC"
check_eq "exec -i: stdin" "via exec" "$(echo 'via exec' | strata_ exec -i web cat)"
check_eq "exec -e -w -u" "1000 /srv yes" "$(strata_ exec -e X=yes -w /srv -u app web sh -c 'echo $(id -u) $(pwd) $X')"
check_eq "exec joins the task's pid namespace" "$(strata_ exec web cat /proc/1/comm)" "sh"
OUT=$(script -qec "$STRATA --address $STRATAD_SOCK exec -t web tty" /dev/null </dev/null | tr -d '\r')
check_has "exec -t: a terminal" "/dev/pts/" "$OUT"
check_fails "exec in an unknown task fails" strata_ exec nosuchtask true
check_fails "a second task named web is refused" strata_ run -d -q --name web "$IMG" true
check_has "name conflict: explained" "exists" "$(strata_ run -d -q --name web "$IMG" true 2>&1 || true)"
check_fails "rm of a running task without -f is refused" strata_ rm web
check_has "rm refusal says why" "stop it first" "$(strata_ rm web 2>&1 || true)"

# stratad restarts: the task keeps running and is found again.
stop_pid "$STRATAD_PID" stratad
check "task survives a stratad stop" kill -0 "$PID"
start_stratad "$STRATAD" "$STRATA" --config "$E2E_DIR/stratad.toml"
check_eq "after restart: still running" "running" "$(strata_ ps --json | jq -r '.[] | select(.name=="web") | .state')"
check_eq "after restart: exec works" "from layer 2" "$(strata_ exec web cat /srv/hello.txt)"
sleep 0.5
check_has "after restart: logs keep growing" "tick" "$(strata_ logs --tail 1 web)"
kill -KILL "$STRATAD_PID"
wait "$STRATAD_PID" 2>/dev/null || true
check "task survives stratad being killed" kill -0 "$PID"
start_stratad "$STRATAD" "$STRATA" --config "$E2E_DIR/stratad.toml"
check_eq "after kill -9 of stratad: still running" "running" "$(strata_ ps --json | jq -r '.[] | select(.name=="web") | .state')"

# The task's snapshot is a gc root: removing the image and collecting keeps it.
strata_ image rm "$IMG" >/dev/null
strata_ content gc >/dev/null
check_eq "gc keeps a running task's layers" "from layer 2" "$(strata_ exec web cat /srv/hello.txt)"

# sh as pid 1 ignores SIGTERM: stop waits, then kills.
strata_ stop -t 1 web >/dev/null
check_eq "stop: stopped" "stopped" "$(strata_ ps -a --json | jq -r '.[] | select(.name=="web") | .state')"
check_eq "stop: killed after the grace period" "137" "$(strata_ ps -a --json | jq -r '.[] | select(.name=="web") | .exit_code')"
check "stop: the process is gone" sh -c "! kill -0 $PID 2>/dev/null"
check_lacks "ps without -a hides stopped tasks" "$(strata_ ps)" "web"
check_has "ps -a shows the exit" "Exited (137)" "$(strata_ ps -a)"
check_eq "wait on a stopped task" "137" "$(strata_ wait web)"
check_has "logs of a stopped task" "started" "$(strata_ logs web)"
check_fails "exec in a stopped task fails" strata_ exec web true
BUNDLE=$(strata_ ps -a --json | jq -r '.[] | select(.name=="web") | .bundle')
strata_ rm web >/dev/null
check "rm: bundle gone" test ! -e "$BUNDLE"
check_lacks "rm: snapshot gone" "$(strata_ --snapshotter strata-images snapshot ls)" "strata-task/$ID"
check_eq "rm: no task left" "" "$(strata_ ps -a -q)"

# kill, wait, rm -f, -d --rm.
strata_ run -d -q --name k "$IMG" sh -c 'trap "exit 42" TERM; while true; do sleep 0.1; done' >/dev/null
sleep 0.3
strata_ kill -s TERM k >/dev/null
check_eq "kill -s TERM reaches the process's handler" "$(strata_ wait k)" "42"
strata_ rm k >/dev/null
strata_ run -d -q --name k "$IMG" sleep 1000 >/dev/null
strata_ kill k >/dev/null
check_eq "kill (default KILL): exit code 128+9" "$(strata_ wait k)" "137"
strata_ rm k >/dev/null
strata_ run -d -q --name f "$IMG" sleep 1000 >/dev/null
strata_ rm -f f >/dev/null
check_eq "rm -f removes a running task" "" "$(strata_ ps -a -q)"
strata_ run -d -q --rm --name auto "$IMG" true >/dev/null
wait_until 10 sh -c "[ -z \"\$('$STRATA' --address '$STRATAD_SOCK' ps -a -q)\" ]" || true
check_eq "run -d --rm: removed once it exits" "" "$(strata_ ps -a -q)"

# ---- user namespaces --------------------------------------------------------------------
strata_ image pull -q "$IMG" >/dev/null 2>&1 || strata_ image pull "$IMG" >/dev/null
run_out --userns auto "$IMG" sh -c 'echo $(id -u) $(stat -c %u /bin/busybox) $(stat -c %u /) $(stat -c %u /srv/hello.txt)'
check_eq "--userns=auto: root inside, files owned by root" "0 0 0 0" "$OUT"
ID=$(strata_ run -d -q --name u --userns auto "$IMG" sh -c 'touch /created; mkdir /made; sleep 1000')
UMAP=$(strata_ ps --json | jq -r '.[] | select(.name=="u") | .uid_map')
HOST_UID=$(cut -d: -f2 <<<"$UMAP")
check "--userns=auto: a mapping of 65536 ids was allocated" test "$(cut -d: -f3 <<<"$UMAP")" = 65536
check_eq "--userns=auto: the rootfs is idmapped" "idmapped" "$(strata_ ps --json | jq -r '.[] | select(.name=="u") | .rootfs_remap')"
UPID=$(strata_ ps --json | jq -r '.[] | select(.name=="u") | .pid')
check_eq "--userns=auto: on the host the process runs as the mapped uid" "$HOST_UID" "$(awk '/^Uid:/ {print $2}' "/proc/$UPID/status")"
wait_until 10 test -e "$STRATAD_ROOT/tasks/$ID/rootfs/made"
check_eq "--userns=auto: a created file belongs to the mapped uid on the host" "$HOST_UID" "$(stat -c %u "$STRATAD_ROOT/tasks/$ID/rootfs/created")"
UPPER=$(strata_ --snapshotter strata-images snapshot mounts "strata-task/$ID" /x | grep -o 'upperdir=[^,]*' | cut -d= -f2)
check_eq "--userns=auto: nothing of the image was chowned (upper holds only new files)" "created made" "$(ls "$UPPER" | tr '\n' ' ' | sed 's/ $//')"
run_out --userns auto "$IMG" sh -c 'id -u'
check_eq "a second --userns=auto task while u runs" "0" "$OUT"
strata_ run -d -q --name u2 --userns auto "$IMG" sleep 1000 >/dev/null
check_eq "two running auto tasks get different ranges" \
  "$(strata_ ps --json | jq -r '[.[] | select(.name == "u" or .name == "u2") | .uid_map] | unique | length')" 2
strata_ rm -f u2 >/dev/null
strata_ rm -f u >/dev/null
run_out --userns 0:300000:65536 "$IMG" sh -c 'echo $(id -u) $(stat -c %u /etc/passwd)'
check_eq "--userns=C:H:L" "0 0" "$OUT"
run_out --userns auto --rootfs-remap metacopy-chown "$IMG" sh -c 'echo $(id -u) $(stat -c %u /bin/busybox)'
check_eq "--rootfs-remap metacopy-chown fallback works" "0 0" "$OUT"
run_out --userns auto -u app "$IMG" sh -c 'touch /tmp/mine; echo $(id -u) $(stat -c %u /tmp/mine) $(stat -c %u /bin/busybox)'
check_eq "--userns with a non-root user" "$OUT" "1000 1000 0"
run_out --userns bogus "$IMG" true
check "bad --userns: refused" test "$RC" -ne 0
check_has "bad --userns: explained" "userns" "$ERR"

# ---- devices -------------------------------------------------------------------------
cat >"$E2E_DIR/cdi/test.yaml" <<'EOF'
cdiVersion: "0.6.0"
kind: strata.test/dev
devices:
  - name: null1
    containerEdits:
      env: ["STRATA_CDI=yes"]
      deviceNodes:
        - path: /dev/strata-null
          hostPath: /dev/null
containerEdits:
  env: ["STRATA_CDI_VENDOR=1"]
EOF
run_out --device strata.test/dev=null1 "$IMG" sh -c 'echo $STRATA_CDI $STRATA_CDI_VENDOR; echo x > /dev/strata-null && echo wrote'
check_eq "CDI: env and device node" "yes 1
wrote" "$OUT"
run_out --device strata.test/dev=nope "$IMG" true
check "CDI: unknown device refused" test "$RC" -ne 0
check_has "CDI: unknown device named" "strata.test/dev=nope" "$ERR"
run_out --device /dev/fuse "$IMG" sh -c 'test -c /dev/fuse && echo fuse'
check_eq "--device /dev/fuse" "fuse" "$OUT"
run_out --device /etc/passwd "$IMG" true
check "--device of a non-device refused" test "$RC" -ne 0

# ---- bad input and leftovers --------------------------------------------------------------
run_out --pull never "$REGISTRY_ADDR/strata/none:latest" true
check "--pull never of a missing image fails" test "$RC" -ne 0
run_out "$REGISTRY_ADDR/strata/none:latest" true
check "run of an image the registry lacks fails" test "$RC" -ne 0
run_out "$IMG" /no/such/command
check "missing command: non-zero exit" test "$RC" -ne 0
check_has "missing command: named" "/no/such/command" "$ERR"
run_out --runtime no-such-runtime "$IMG" true
check_has "unknown runtime: explained" "no-such-runtime" "$ERR"
run_out --net bridge "$IMG" true
check_has "unsupported --net: explained" "host or none" "$ERR"
run_out --name 'bad/name' "$IMG" true
check_has "bad name: explained" "invalid task name" "$ERR"
check_eq "failed runs leave no task" "" "$(strata_ ps -a -q)"
check_lacks "failed runs leave no snapshot" "$(strata_ --snapshotter strata-images snapshot ls)" "strata-task/"
check_eq "failed runs leave no bundle" "" "$(ls "$STRATAD_ROOT/tasks")"
check_lacks "failed runs leave no mount" "$(cat /proc/self/mountinfo)" "$STRATAD_ROOT/tasks"

e2e_finish
