# shellcheck shell=bash
# The variables set here are for the scripts that source this file:
# shellcheck disable=SC2034
# Registry fixtures for strata's shell end-to-end tests: Debian's docker-registry on
# loopback (plain, htpasswd or token auth), strata-test-token-server,
# strata-test-fault-proxy, and a test image built from scratch as an OCI layout.
# Source it after lib.sh and call e2e_init first; everything started here lives in
# $E2E_DIR and is stopped by pid when the script exits (before lib.sh's own cleanup).
# Call the start_* functions directly, never inside $(...): they set variables. The
# variables are shell globals, deliberately not exported: docker-registry would take an
# exported REGISTRY_* variable as a configuration override.
#
#   source "$HERE/lib.sh"; source "$HERE/registry_lib.sh"
#   TOKEN_SERVER_BIN=... FAULT_PROXY_BIN=...
#   e2e_init my-test
#   make_test_image "$E2E_DIR/image"
#   start_registry                                  # plain HTTP, delete enabled
#   push_oci_layout "$E2E_DIR/image" "$REGISTRY_ADDR/strata/test:latest"
#   start_fault_proxy "$REGISTRY_ADDR" 'GET /v2/.*/blobs/.* status=500 times=1'
#   curl "http://$PROXY_ADDR/v2/..."
#
# Functions (each documented where it is defined):
#   start_token_server [FLAG...]     TOKEN_ADDR TOKEN_PID TOKEN_REALM TOKEN_LOG TOKEN_KEY
#                                    TOKEN_CERT TOKEN_SERVICE TOKEN_ISSUER
#   start_registry [--htpasswd U:P]... [--token [--token-bundle FILE]]
#                                    REGISTRY_ADDR REGISTRY_PID REGISTRY_DIR REGISTRY_LOG
#   start_fault_proxy UPSTREAM [RULE...]
#                                    PROXY_ADDR PROXY_PID PROXY_BACKEND_ADDR PROXY_LOG
#                                    PROXY_RULES_FILE
#   set_fault_rules [RULE...]        replace the proxy's rules (none: clear them)
#   fault_stats                      the proxy's JSON counters on stdout
#   make_test_image DIR [TAG]        TEST_IMAGE_MANIFEST_DIGEST TEST_IMAGE_CONFIG_DIGEST
#                                    TEST_IMAGE_LAYER_DIGESTS TEST_IMAGE_DIFF_IDS
#   check_test_image_rootfs DIR      lib.sh checks of an unpacked test image
#   push_oci_layout DIR[:TAG] REF [USER:PASS]
#   pull_oci_layout REF DIR[:TAG] [USER:PASS]
#   skopeo_ ARGS...                  skopeo with a private policy and auth file
#   check_fails DESCRIPTION COMMAND...  passes when COMMAND exits non-zero

TOKEN_SERVER_BIN="${TOKEN_SERVER_BIN:-}"
FAULT_PROXY_BIN="${FAULT_PROXY_BIN:-}"
TOKEN_ADDR=""
TOKEN_PID=""
TOKEN_REALM=""
TOKEN_LOG=""
TOKEN_KEY=""
TOKEN_CERT=""
TOKEN_SERVICE="strata-test-registry"
TOKEN_ISSUER="strata-test-token-server"
REGISTRY_ADDR=""
REGISTRY_PID=""
REGISTRY_DIR=""
REGISTRY_LOG=""
PROXY_ADDR=""
PROXY_PID=""
PROXY_BACKEND_ADDR=""
PROXY_LOG=""
PROXY_RULES_FILE=""
TEST_IMAGE_MANIFEST_DIGEST=""
TEST_IMAGE_CONFIG_DIGEST=""
TEST_IMAGE_LAYER_DIGESTS=""
TEST_IMAGE_DIFF_IDS=""
# A directory and a file name long enough to need pax "path" records (> 100 bytes).
TEST_IMAGE_LONG_DIR="data/dir-$(printf 'd%.0s' {1..110})"
TEST_IMAGE_LONG_FILE="file-$(printf 'f%.0s' {1..150}).txt"

REGISTRY_LIB_PIDS=()  # "pid name", in start order
REGISTRY_LIB_SEQ=0
REGISTRY_LIB_TRAP=""

# ---- lifecycle ---------------------------------------------------------------

# lib.sh has no hook for extra processes, so the first start_* call wraps its EXIT
# trap: our processes are stopped (newest first), then e2e_cleanup runs as before
# with the script's exit status.
_registry_lib_cleanup() {
  local rc=$?
  trap - ERR
  set +e
  local i entry
  for ((i = ${#REGISTRY_LIB_PIDS[@]} - 1; i >= 0; i--)); do
    entry="${REGISTRY_LIB_PIDS[i]}"
    stop_pid "${entry%% *}" "${entry#* }"
  done
  (exit "$rc")
  e2e_cleanup
}

_registry_lib_track() {
  REGISTRY_LIB_PIDS+=("$1 $2")
  if [[ -z "$REGISTRY_LIB_TRAP" ]]; then
    trap _registry_lib_cleanup EXIT
    REGISTRY_LIB_TRAP=1
  fi
}

_registry_lib_need_init() {
  [[ -n "$E2E_DIR" && -d "$E2E_DIR" ]] || {
    echo "registry_lib: call e2e_init before $1" >&2
    exit 1
  }
}

# A loopback port nothing listens on, below the usual ephemeral range so that
# outgoing connections do not take it meanwhile. Racy by nature; start_registry
# retries when the port is taken after all.
registry_free_port() {
  local port _
  for _ in {1..200}; do
    port=$((20000 + RANDOM % 12000))
    if ! (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
      echo "$port"
      return 0
    fi
  done
  return 1
}

# _registry_lib_wait_listening PID STDOUT_FILE NAME: waits for the fixture's
# "listening HOST:PORT" line and prints HOST:PORT.
_registry_lib_wait_listening() {
  local pid="$1" out="$2" name="$3"
  if ! wait_while_alive "$pid" 20 grep -q '^listening ' "$out"; then
    kill -0 "$pid" 2>/dev/null || die "$name exited during startup: $(cat "${out%.out}.err" 2>/dev/null)"
    die "$name did not report its address within 20 s"
  fi
  sed -n 's/^listening //p' "$out" | head -n 1
}

# ---- token server ------------------------------------------------------------

# start_token_server [FLAG...]: starts $TOKEN_SERVER_BIN on a free loopback port.
# FLAGs go to the server as given (e.g. --user alice:secret, --expires-in 60,
# --anonymous-pull, --backdate 3600, --no-oauth). Unless given there, --key and
# --cert default to $E2E_DIR/token/signer-{key,cert}.pem (generated by the first
# server, shared by later ones, so every server signs with the same key), and
# --issuer/--service to $TOKEN_ISSUER/$TOKEN_SERVICE. Sets TOKEN_ADDR (host:port),
# TOKEN_PID, TOKEN_REALM (http://TOKEN_ADDR/token), TOKEN_LOG (one line per request),
# TOKEN_KEY, TOKEN_CERT (the bundle a registry trusts), TOKEN_SERVICE, TOKEN_ISSUER.
# shellcheck disable=SC2120  # flags are optional
start_token_server() {
  _registry_lib_need_init start_token_server
  [[ -x "$TOKEN_SERVER_BIN" ]] || die "start_token_server: TOKEN_SERVER_BIN ($TOKEN_SERVER_BIN) is not executable"
  local -A given=([--key]="$E2E_DIR/token/signer-key.pem" [--cert]="$E2E_DIR/token/signer-cert.pem"
    [--issuer]="$TOKEN_ISSUER" [--service]="$TOKEN_SERVICE")
  local args=("$@") defaults=() i flag
  for ((i = 0; i < ${#args[@]}; i++)); do
    [[ -z "${given[${args[i]}]+set}" ]] || given[${args[i]}]="${args[i + 1]}"
  done
  for flag in --key --cert --issuer --service; do
    printf '%s\n' "${args[@]}" | grep -qxF -- "$flag" || defaults+=("$flag" "${given[$flag]}")
  done
  mkdir -p "$E2E_DIR/token"
  local n=$((++REGISTRY_LIB_SEQ))
  local base="$E2E_DIR/token/server$n"
  "$TOKEN_SERVER_BIN" --listen 127.0.0.1:0 --log "$base.log" "${defaults[@]}" "$@" \
    >"$base.out" 2>"$base.err" &
  local pid=$!
  _registry_lib_track "$pid" "token-server$n"
  TOKEN_ADDR=$(_registry_lib_wait_listening "$pid" "$base.out" "token server")
  TOKEN_PID="$pid"
  TOKEN_REALM="http://$TOKEN_ADDR/token"
  TOKEN_LOG="$base.log"
  TOKEN_KEY="${given[--key]}"
  TOKEN_CERT="${given[--cert]}"
  TOKEN_SERVICE="${given[--service]}"
  TOKEN_ISSUER="${given[--issuer]}"
  log "token server pid $pid at $TOKEN_ADDR (log $TOKEN_LOG)"
}

# ---- registry ----------------------------------------------------------------

# start_registry [--htpasswd USER:PASS]... [--token [--token-bundle FILE]]:
# starts Debian's docker-registry on a free 127.0.0.1 port with its storage,
# config and log in $E2E_DIR/registryN, deletes enabled, and waits until /v2/
# answers. --htpasswd (repeatable) turns on basic auth with a bcrypt file made by
# htpasswd -Bbn. --token turns on bearer-token auth against the latest
# start_token_server (one is started with default flags when none runs):
# realm $TOKEN_REALM, service $TOKEN_SERVICE, issuer $TOKEN_ISSUER, and as
# rootcertbundle --token-bundle FILE or else $TOKEN_CERT. Sets REGISTRY_ADDR
# (127.0.0.1:PORT), REGISTRY_PID, REGISTRY_DIR, REGISTRY_LOG.
start_registry() {
  _registry_lib_need_init start_registry
  local users=() token="" bundle=""
  while (($# > 0)); do
    case "$1" in
      --htpasswd) users+=("$2"); shift 2 ;;
      --token) token=1; shift ;;
      --token-bundle) bundle="$2"; shift 2 ;;
      *) die "start_registry: unknown argument $1" ;;
    esac
  done
  local n=$((++REGISTRY_LIB_SEQ))
  local dir="$E2E_DIR/registry$n"
  mkdir -p "$dir/storage"

  local auth=""
  if ((${#users[@]} > 0)); then
    : >"$dir/htpasswd"
    local user
    for user in "${users[@]}"; do
      htpasswd -Bbn "${user%%:*}" "${user#*:}" | sed '/^$/d' >>"$dir/htpasswd"
    done
    auth="auth:
  htpasswd:
    realm: strata-test
    path: $dir/htpasswd"
  elif [[ -n "$token" ]]; then
    # shellcheck disable=SC2119  # default flags
    [[ -n "$TOKEN_ADDR" ]] || start_token_server
    auth="auth:
  token:
    realm: $TOKEN_REALM
    service: $TOKEN_SERVICE
    issuer: $TOKEN_ISSUER
    rootcertbundle: ${bundle:-$TOKEN_CERT}"
  fi

  local attempt port pid
  for attempt in 1 2 3 4 5; do
    port=$(registry_free_port) || die "start_registry: no free port"
    cat >"$dir/config.yml" <<EOF
version: 0.1
log:
  level: info
  formatter: text
storage:
  filesystem:
    rootdirectory: $dir/storage
  delete:
    enabled: true
  maintenance:
    uploadpurging:
      enabled: false
http:
  addr: 127.0.0.1:$port
  secret: strata-test-$RANDOM$RANDOM$RANDOM
$auth
EOF
    # docker-registry reads REGISTRY_* variables as configuration overrides (our own
    # REGISTRY_LOG would become its "log" section), so it gets none of them.
    local hidden=() var
    for var in $(compgen -v -X '!REGISTRY_*'); do hidden+=(-u "$var"); done
    env "${hidden[@]}" docker-registry serve "$dir/config.yml" >"$dir/registry.log" 2>&1 &
    pid=$!
    if wait_while_alive "$pid" 30 curl -s -o /dev/null --max-time 2 "http://127.0.0.1:$port/v2/"; then
      break
    fi
    if kill -0 "$pid" 2>/dev/null; then
      stop_pid "$pid" docker-registry
      die "docker-registry did not answer on 127.0.0.1:$port within 30 s"
    fi
    wait "$pid" 2>/dev/null || true
    if ! grep -q 'address already in use' "$dir/registry.log"; then
      tail -n 20 "$dir/registry.log" >&2
      die "docker-registry exited during startup (config $dir/config.yml)"
    fi
    log "port $port was taken; trying another (attempt $attempt)"
    pid=""
  done
  [[ -n "$pid" ]] || die "start_registry: no port could be bound"
  _registry_lib_track "$pid" "docker-registry$n"
  REGISTRY_ADDR="127.0.0.1:$port"
  REGISTRY_PID="$pid"
  REGISTRY_DIR="$dir"
  REGISTRY_LOG="$dir/registry.log"
  local mode=plain
  ((${#users[@]} == 0)) || mode=htpasswd
  [[ -z "$token" || -n "${users[*]}" ]] || mode="token from $TOKEN_REALM"
  log "docker-registry pid $pid at $REGISTRY_ADDR ($mode)"
}

# ---- fault proxy -------------------------------------------------------------

# start_fault_proxy UPSTREAM [RULE...]: starts $FAULT_PROXY_BIN in front of
# UPSTREAM (host:port) with the given rules (syntax in tests/tools/fault_rules.h).
# Sets PROXY_ADDR (clients talk to this), PROXY_PID, PROXY_BACKEND_ADDR (where
# `redirect` sends clients), PROXY_LOG (one line per request) and PROXY_RULES_FILE:
# the proxy re-reads that file whenever its content changes and then uses its rules
# (write it with a rename; it does not exist at first).
start_fault_proxy() {
  _registry_lib_need_init start_fault_proxy
  [[ -x "$FAULT_PROXY_BIN" ]] || die "start_fault_proxy: FAULT_PROXY_BIN ($FAULT_PROXY_BIN) is not executable"
  local upstream="$1"
  shift
  local n=$((++REGISTRY_LIB_SEQ))
  local base="$E2E_DIR/fault-proxy$n" rule args=()
  for rule in "$@"; do args+=(--rule "$rule"); done
  "$FAULT_PROXY_BIN" --upstream "$upstream" --listen 127.0.0.1:0 --backend-listen 127.0.0.1:0 \
    --rules-file "$base.rules" --log "$base.log" "${args[@]}" >"$base.out" 2>"$base.err" &
  local pid=$!
  _registry_lib_track "$pid" "fault-proxy$n"
  PROXY_ADDR=$(_registry_lib_wait_listening "$pid" "$base.out" "fault proxy")
  wait_until 5 grep -q '^backend ' "$base.out" || die "fault proxy did not report its backend address"
  PROXY_BACKEND_ADDR=$(sed -n 's/^backend //p' "$base.out")
  PROXY_PID="$pid"
  PROXY_LOG="$base.log"
  PROXY_RULES_FILE="$base.rules"
  log "fault proxy pid $pid at $PROXY_ADDR -> $upstream (backend $PROXY_BACKEND_ADDR)"
}

# set_fault_rules [RULE...]: replaces the rules of the proxy at $PROXY_ADDR through
# its control endpoint; no RULE clears them. Fails on a rule the proxy rejects.
set_fault_rules() {
  local text=""
  (($# == 0)) || text=$(printf '%s\n' "$@")
  curl -sS --fail-with-body -X POST --data-binary "$text" "http://$PROXY_ADDR/__fault/rules" >/dev/null
}

# fault_stats: the JSON counters of the proxy at $PROXY_ADDR.
fault_stats() { curl -sS --fail "http://$PROXY_ADDR/__fault/stats"; }

# ---- test image --------------------------------------------------------------

# _registry_lib_blob LAYOUT FILE: moves FILE into LAYOUT's blob store, prints its
# sha256 digest.
_registry_lib_blob() {
  local hex
  hex=$(sha256sum "$2" | cut -d' ' -f1)
  mv "$2" "$1/blobs/sha256/$hex"
  echo "sha256:$hex"
}

# _registry_lib_tar STAGE OUT [XATTR_ENTRY XATTR_RECORD]: a reproducible pax tar of
# everything under STAGE. XATTR_ENTRY (a path inside STAGE) is appended last with the
# pax record XATTR_RECORD ("SCHILY.xattr.NAME=VALUE"), so the layer carries an xattr
# without needing setfattr on this machine.
_registry_lib_tar() {
  local stage="$1" out="$2" xattr_entry="${3:-}" xattr_record="${4:-}"
  local common=(--format=pax --xattrs --xattrs-include='user.*' --numeric-owner --owner=0
    --group=0 --mtime=@1700000000 --sort=name)
  local entries=() exclude=()
  mapfile -t entries < <(cd "$stage" && LC_ALL=C ls -A)
  [[ -z "$xattr_entry" ]] || exclude=(--exclude="$xattr_entry")
  tar -C "$stage" "${common[@]}" --pax-option=delete=atime,delete=ctime "${exclude[@]}" \
    -cf "$out" "${entries[@]}"
  if [[ -n "$xattr_entry" ]]; then
    # Fixed atime/ctime rather than delete=: GNU tar 1.34 drops user records from an
    # extended header that delete= left otherwise empty. And a separate archive joined
    # with -A, because appending with -r loses them too.
    tar -C "$stage" "${common[@]}" --no-recursion \
      --pax-option="atime:=1700000000,ctime:=1700000000,${xattr_record/=/:=}" \
      -cf "$out.xattr" "$xattr_entry"
    tar -A -f "$out" "$out.xattr"
    rm -f "$out.xattr"
  fi
}

# make_test_image DIR [TAG]: writes an OCI image layout to DIR (tag default
# "latest") holding a three-layer linux image built here from scratch:
#   layer 1: /bin/busybox (busybox-static) with sh, ls, cat, echo, true as symlinks;
#            /etc/passwd, /etc/group; /tmp (1777); /data/hello.txt;
#            /data/hardlink-a and /data/hardlink-b (one inode); /data/fifo;
#            /data/setuid (4755); /data/xattr-file (xattr user.strata.test=hello);
#            $TEST_IMAGE_LONG_DIR/$TEST_IMAGE_LONG_FILE (names > 100 bytes);
#            /gone.txt, /removed/file.txt, /opaque/old-a.txt, /opaque/old-b.txt
#   layer 2: whiteouts .wh.gone.txt and .wh.removed, /opaque/.wh..wh..opq with
#            /opaque/new.txt, /data/hello.txt rewritten ("hello from layer 2")
#   layer 3: /etc/layer3 ("third layer"), /bin/true -> busybox replaced by a hard
#            link to /bin/busybox
# Layers are gzip'd pax tars (GNU tar), config and manifest are OCI media types,
# digests are sha256sum's. Sets TEST_IMAGE_MANIFEST_DIGEST,
# TEST_IMAGE_CONFIG_DIGEST, TEST_IMAGE_LAYER_DIGESTS and TEST_IMAGE_DIFF_IDS (space
# separated, bottom layer first). check_test_image_rootfs checks an unpacked copy.
make_test_image() {
  local dir="$1" tag="${2:-latest}"
  _registry_lib_need_init make_test_image
  local work
  work=$(mktemp -d "$E2E_DIR/image-build.XXXXXX")
  mkdir -p "$dir/blobs/sha256"
  printf '{"imageLayoutVersion":"1.0.0"}' >"$dir/oci-layout"

  # Layer 1: the base.
  local s="$work/layer1"
  mkdir -p "$s/bin" "$s/etc" "$s/tmp" "$s/data" "$s/removed" "$s/opaque" "$s/$TEST_IMAGE_LONG_DIR"
  cp /bin/busybox "$s/bin/busybox"
  chmod 0755 "$s/bin/busybox"
  local applet
  for applet in sh ls cat echo true; do ln -s busybox "$s/bin/$applet"; done
  printf 'root:x:0:0:root:/root:/bin/sh\n' >"$s/etc/passwd"
  printf 'root:x:0:\n' >"$s/etc/group"
  chmod 1777 "$s/tmp"
  printf 'hello from layer 1\n' >"$s/data/hello.txt"
  printf 'one inode, two names\n' >"$s/data/hardlink-a"
  ln "$s/data/hardlink-a" "$s/data/hardlink-b"
  mkfifo "$s/data/fifo"
  printf '#!/bin/sh\necho setuid\n' >"$s/data/setuid"
  chmod 4755 "$s/data/setuid"
  printf 'this file carries an xattr\n' >"$s/data/xattr-file"
  printf 'a long name\n' >"$s/$TEST_IMAGE_LONG_DIR/$TEST_IMAGE_LONG_FILE"
  printf 'deleted by a whiteout in layer 2\n' >"$s/gone.txt"
  printf 'deleted with its directory in layer 2\n' >"$s/removed/file.txt"
  printf 'hidden by the opaque directory in layer 2\n' >"$s/opaque/old-a.txt"
  printf 'hidden by the opaque directory in layer 2\n' >"$s/opaque/old-b.txt"
  chmod -R u+rwX,go+rX,go-w "$s/etc" "$s/data/hello.txt" "$s/opaque" "$s/removed"
  _registry_lib_tar "$s" "$work/layer1.tar" data/xattr-file 'SCHILY.xattr.user.strata.test=hello'

  # Layer 2: deletions, an opaque directory, a changed file.
  s="$work/layer2"
  mkdir -p "$s/opaque" "$s/data"
  : >"$s/.wh.gone.txt"
  : >"$s/.wh.removed"
  : >"$s/opaque/.wh..wh..opq"
  printf 'the only file left in /opaque\n' >"$s/opaque/new.txt"
  printf 'hello from layer 2\n' >"$s/data/hello.txt"
  _registry_lib_tar "$s" "$work/layer2.tar"

  # Layer 3: a new file, and a symlink replaced by a hard link to a lower file.
  s="$work/layer3"
  mkdir -p "$s/etc" "$s/bin"
  printf 'third layer\n' >"$s/etc/layer3"
  cp /bin/busybox "$s/bin/busybox"
  chmod 0755 "$s/bin/busybox"
  ln "$s/bin/busybox" "$s/bin/true"
  _registry_lib_tar "$s" "$work/layer3.tar"

  local i diff_ids=() layer_digests=() layers_json="[]" size digest
  for i in 1 2 3; do
    diff_ids+=("sha256:$(sha256sum "$work/layer$i.tar" | cut -d' ' -f1)")
    gzip -n -6 "$work/layer$i.tar"
    size=$(stat -c %s "$work/layer$i.tar.gz")
    digest=$(_registry_lib_blob "$dir" "$work/layer$i.tar.gz")
    layer_digests+=("$digest")
    layers_json=$(jq -c --arg d "$digest" --argjson s "$size" \
      '. + [{mediaType: "application/vnd.oci.image.layer.v1.tar+gzip", digest: $d, size: $s}]' \
      <<<"$layers_json")
  done

  local arch
  arch=$(dpkg --print-architecture 2>/dev/null || echo amd64)
  jq -n -c --arg arch "$arch" --args '{
      created: "2023-11-14T22:13:20Z",
      architecture: $arch,
      os: "linux",
      config: {Env: ["PATH=/bin"], Cmd: ["/bin/sh"], WorkingDir: "/"},
      rootfs: {type: "layers", diff_ids: $ARGS.positional},
      history: [range(0; $ARGS.positional | length) |
                {created: "2023-11-14T22:13:20Z", created_by: "make_test_image layer \(. + 1)"}]
    }' "${diff_ids[@]}" >"$work/config.json"
  size=$(stat -c %s "$work/config.json")
  TEST_IMAGE_CONFIG_DIGEST=$(_registry_lib_blob "$dir" "$work/config.json")

  jq -n -c --arg cd "$TEST_IMAGE_CONFIG_DIGEST" --argjson cs "$size" --argjson layers "$layers_json" '{
      schemaVersion: 2,
      mediaType: "application/vnd.oci.image.manifest.v1+json",
      config: {mediaType: "application/vnd.oci.image.config.v1+json", digest: $cd, size: $cs},
      layers: $layers
    }' >"$work/manifest.json"
  size=$(stat -c %s "$work/manifest.json")
  TEST_IMAGE_MANIFEST_DIGEST=$(_registry_lib_blob "$dir" "$work/manifest.json")

  jq -n -c --arg md "$TEST_IMAGE_MANIFEST_DIGEST" --argjson ms "$size" --arg tag "$tag" \
    --arg arch "$arch" '{
      schemaVersion: 2,
      mediaType: "application/vnd.oci.image.index.v1+json",
      manifests: [{mediaType: "application/vnd.oci.image.manifest.v1+json", digest: $md,
                   size: $ms, platform: {architecture: $arch, os: "linux"},
                   annotations: {"org.opencontainers.image.ref.name": $tag}}]
    }' >"$dir/index.json"
  rm -rf "$work"

  TEST_IMAGE_LAYER_DIGESTS="${layer_digests[*]}"
  TEST_IMAGE_DIFF_IDS="${diff_ids[*]}"
  log "test image in $dir:$tag, manifest $TEST_IMAGE_MANIFEST_DIGEST"
}

# _registry_lib_xattr FILE NAME VALUE: succeeds when FILE has xattr NAME=VALUE.
# GNU tar reads xattrs from the file system, so its pax record shows them without
# getfattr.
_registry_lib_xattr() {
  tar -C "$(dirname "$1")" --format=pax --xattrs --xattrs-include='*' --no-recursion \
    -cf - "$(basename "$1")" | grep -aqF "SCHILY.xattr.$2=$3"
}

# check_test_image_rootfs DIR: lib.sh checks that DIR holds make_test_image's
# image with all three layers applied (whiteouts honoured, no .wh. files left).
check_test_image_rootfs() {
  local r="$1"
  check "rootfs: /bin/busybox is an executable regular file" test -f "$r/bin/busybox" -a -x "$r/bin/busybox"
  check_eq "rootfs: /bin/busybox runs" "$("$r/bin/busybox" echo busybox runs 2>&1)" "busybox runs"
  check_eq "rootfs: /bin/sh is a symlink to busybox" "$(readlink "$r/bin/sh")" "busybox"
  check_eq "rootfs: /bin/true became a hard link to /bin/busybox" \
    "$(stat -c '%F %i' "$r/bin/true" 2>&1)" "$(stat -c '%F %i' "$r/bin/busybox" 2>&1)"
  check_eq "rootfs: /data/hardlink-a and -b share an inode" \
    "$(stat -c '%i %h' "$r/data/hardlink-a" 2>&1)" "$(stat -c '%i %h' "$r/data/hardlink-b" 2>&1)"
  check_eq "rootfs: /data/hardlink-a has two links" "$(stat -c %h "$r/data/hardlink-a" 2>&1)" 2
  check_eq "rootfs: /data/setuid is mode 4755" "$(stat -c %a "$r/data/setuid" 2>&1)" 4755
  check_eq "rootfs: /tmp is mode 1777" "$(stat -c %a "$r/tmp" 2>&1)" 1777
  check_eq "rootfs: /data/fifo is a fifo" "$(stat -c %F "$r/data/fifo" 2>&1)" "fifo"
  check "rootfs: /data/xattr-file has user.strata.test=hello" \
    _registry_lib_xattr "$r/data/xattr-file" user.strata.test hello
  check "rootfs: the file with a long name exists" test -f "$r/$TEST_IMAGE_LONG_DIR/$TEST_IMAGE_LONG_FILE"
  check_eq "rootfs: /data/hello.txt comes from layer 2" "$(cat "$r/data/hello.txt" 2>&1)" "hello from layer 2"
  check "rootfs: whiteout removed /gone.txt" test ! -e "$r/gone.txt"
  check "rootfs: whiteout removed /removed" test ! -e "$r/removed"
  check_eq "rootfs: opaque /opaque holds only new.txt" "$(ls -A "$r/opaque" 2>&1)" "new.txt"
  check_eq "rootfs: /etc/layer3 comes from layer 3" "$(cat "$r/etc/layer3" 2>&1)" "third layer"
  check_eq "rootfs: no .wh. entries left" "$(find "$r" -name '.wh.*' 2>&1)" ""
  check_eq "rootfs: files are owned by root" "$(stat -c %u:%g "$r/bin/busybox" "$r/data/setuid" | sort -u)" "0:0"
}

# ---- skopeo ------------------------------------------------------------------

# skopeo_ ARGS...: skopeo with a policy that accepts anything and an auth file in
# $E2E_DIR, so neither the host's policy nor its stored credentials matter.
skopeo_() {
  _registry_lib_need_init skopeo_
  local policy="$E2E_DIR/skopeo-policy.json"
  [[ -f "$policy" ]] || printf '{"default":[{"type":"insecureAcceptAnything"}]}\n' >"$policy"
  REGISTRY_AUTH_FILE="$E2E_DIR/skopeo-auth.json" skopeo --policy "$policy" "$@"
}

# _registry_lib_layout_ref DIR[:TAG]: "oci:DIR:TAG", TAG defaulting to latest.
_registry_lib_layout_ref() {
  if [[ "$1" == *:* ]]; then echo "oci:$1"; else echo "oci:$1:latest"; fi
}

# push_oci_layout DIR[:TAG] REF [USER:PASS]: copies the layout's image (tag default
# latest) to docker://REF over plain HTTP, with credentials when given.
push_oci_layout() {
  local creds=()
  [[ -z "${3:-}" ]] || creds=(--dest-creds "$3")
  skopeo_ copy --quiet --dest-tls-verify=false "${creds[@]}" "$(_registry_lib_layout_ref "$1")" \
    "docker://$2"
}

# pull_oci_layout REF DIR[:TAG] [USER:PASS]: copies docker://REF into an OCI layout.
pull_oci_layout() {
  local creds=()
  [[ -z "${3:-}" ]] || creds=(--src-creds "$3")
  skopeo_ copy --quiet --src-tls-verify=false "${creds[@]}" "docker://$1" \
    "$(_registry_lib_layout_ref "$2")"
}

# check_fails DESCRIPTION COMMAND...: passes when COMMAND exits non-zero.
check_fails() {
  local what="$1"
  shift
  local out
  if out=$("$@" 2>&1); then
    fail "$what" "command succeeded but should have failed: $*" "${out:0:2000}"
  else
    pass "$what"
  fi
}
