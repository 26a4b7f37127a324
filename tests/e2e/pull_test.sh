#!/usr/bin/env bash
# `strata image pull` end to end with real components: Debian's docker-registry
# (plain, htpasswd, bearer token), skopeo pushing a test image built from scratch, the
# fault-injecting proxy, umoci as the reference unpacker, and stratad itself.
#
#   pull_test.sh STRATAD STRATA TOKEN_SERVER FAULT_PROXY
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
source "$HERE/lib.sh"
source "$HERE/registry_lib.sh"

STRATAD=$(realpath "$1")
STRATA=$(realpath "$2")
TOKEN_SERVER_BIN=$(realpath "$3")
FAULT_PROXY_BIN=$(realpath "$4")

e2e_init strata-pull
SNAP=strata-images

# The daemon reads this config; tests rewrite it and restart when they need to.
CONFIG="$E2E_DIR/stratad.toml"
write_config() {
  cat >"$CONFIG" <<EOF
[registry]
config_path = "$E2E_DIR/certs.d"
docker_config = "$E2E_DIR/docker/config.json"
max_attempts = 4
$*
EOF
}
restart_stratad() {
  if [[ -n $STRATAD_PID ]]; then stop_pid "$STRATAD_PID" stratad; fi
  start_stratad "$STRATAD" "$STRATA" --config "$CONFIG"
}

# Mounts the snapshot chain of image $1 read-only at $2 through a View.
mount_image() {
  local image="$1" target="$2" top key mounts
  top=$(strata_ image inspect "$image" | jq -r '.layers[-1].chainID')
  key="view-$RANDOM-$RANDOM"
  strata_ --snapshotter "$SNAP" snapshot view "$key" "$top" >/dev/null
  E2E_VIEWS+=("$key")
  mkdir -p "$target"
  mounts=$(strata_ --snapshotter "$SNAP" snapshot mounts "$key" "$target")
  eval "$mounts"
  E2E_MOUNTS+=("$target")
}
E2E_MOUNTS=()
E2E_VIEWS=()
umount_all() {
  local m
  for m in "${E2E_MOUNTS[@]}"; do umount -l "$m" 2>/dev/null || true; done
  for m in "${E2E_VIEWS[@]}"; do strata_ --snapshotter "$SNAP" snapshot rm "$m" >/dev/null; done
  E2E_MOUNTS=()
  E2E_VIEWS=()
}

# Lists a tree as one line per entry: path, type, mode, owner, size (files), link
# target, xattrs (overlay's own excepted) and a content hash, sorted.
describe_tree() {
  local root="$1"
  (cd "$root" && find . -mindepth 1 -printf '%P\t%y\t%m\t%U:%G\t%l\n' | sort) |
    while IFS=$'\t' read -r path type mode owner link; do
      local extra=""
      if [[ $type == f ]]; then extra=$(sha256sum <"$root/$path" | cut -c1-16); fi
      local xattrs
      xattrs=$(getfattr -h -d -m - --absolute-names "$root/$path" 2>/dev/null |
        grep -v '^#' | grep -v 'overlay\.' | grep -v '^$' | sort | tr '\n' ' ' || true)
      printf '%s %s %s %s %s %s %s\n' "$path" "$type" "$mode" "$owner" "$link" "$extra" "$xattrs"
    done
}

log "building the test image and pushing it"
make_test_image "$E2E_DIR/image"
start_registry
PLAIN="$REGISTRY_ADDR"
push_oci_layout "$E2E_DIR/image" "$PLAIN/strata/test:latest"
mkdir -p "$E2E_DIR/certs.d" "$E2E_DIR/docker"
echo '{}' >"$E2E_DIR/docker/config.json"
write_config
restart_stratad

# ---- a plain pull --------------------------------------------------------------
out=$(strata_ image pull "$PLAIN/strata/test:latest" 2>&1) || fail "pull from a plain registry" "$out"
check_contains "pull prints the image and its digest" "$out" "$PLAIN/strata/test:latest $TEST_IMAGE_MANIFEST_DIGEST"
check "non-terminal progress prints one line per layer state" grep -q ': done ' <<<"$out"
check_eq "image ls lists the image" "$(strata_ image ls -q)" "$PLAIN/strata/test:latest"
inspect=$(strata_ image inspect "$PLAIN/strata/test:latest")
check_eq "inspect: every layer's snapshot is present" \
  "$(jq '[.layers[].snapshotPresent] | all' <<<"$inspect")" true
check_eq "inspect: diff ids match the config" \
  "$(jq -r '[.layers[].diffID] | join(" ")' <<<"$inspect")" "$TEST_IMAGE_DIFF_IDS"

mount_image "$PLAIN/strata/test:latest" "$E2E_DIR/mnt/strata"
check_test_image_rootfs "$E2E_DIR/mnt/strata"

log "comparing with umoci's unpack of the same image"
pull_oci_layout "$PLAIN/strata/test:latest" "$E2E_DIR/umoci-layout:latest"
umoci unpack --image "$E2E_DIR/umoci-layout:latest" "$E2E_DIR/umoci-bundle" >/dev/null
ours=$(describe_tree "$E2E_DIR/mnt/strata")
theirs=$(describe_tree "$E2E_DIR/umoci-bundle/rootfs")
if [[ "$ours" == "$theirs" ]]; then
  pass "rootfs equals umoci's file by file (content, type, mode, owner, links, xattrs)"
else
  fail "rootfs equals umoci's file by file" "$(diff <(echo "$theirs") <(echo "$ours") | head -40)"
fi
umount_all

log "strata's own push, checked with skopeo"
out=$(strata_ image push "$PLAIN/strata/test:latest" "$PLAIN/strata/pushed:v1" 2>&1) ||
  fail "strata image push" "$out"
check_eq "the pushed image has the same manifest digest (skopeo inspect)" \
  "$(skopeo_ inspect --tls-verify=false "docker://$PLAIN/strata/pushed:v1" | jq -r .Digest)" \
  "$TEST_IMAGE_MANIFEST_DIGEST"
pull_oci_layout "$PLAIN/strata/pushed:v1" "$E2E_DIR/pushed-layout:v1"
umoci unpack --image "$E2E_DIR/pushed-layout:v1" "$E2E_DIR/pushed-bundle" >/dev/null
check_eq "umoci unpacks what strata pushed into the same tree" \
  "$(describe_tree "$E2E_DIR/pushed-bundle/rootfs")" "$theirs"

# ---- re-pull and garbage collection -----------------------------------------
out=$(strata_ image pull "$PLAIN/strata/test:latest" 2>&1)
check "a re-pull reports every layer as already present" \
  test "$(grep -c 'already exists' <<<"$out")" -ge 3
strata_ image tag "$PLAIN/strata/test:latest" "$PLAIN/strata/copy:v1" >/dev/null
check_eq "tag adds a name" "$(strata_ image ls -q | wc -l)" 2
out=$(strata_ image rm "$PLAIN/strata/test:latest")
check_contains "removing one of two names collects nothing" "$out" \
  "collected 0 blobs, 0 snapshots (0 B of content)"
out=$(strata_ image rm "$PLAIN/strata/copy:v1")
check "removing the last name collects blobs and snapshots" grep -q 'collected [1-9]' <<<"$out"
check_eq "no content left" "$(strata_ content ls --json | jq length)" 0
check_eq "no snapshots left" "$(strata_ --snapshotter "$SNAP" snapshot ls --json | jq length)" 0

# ---- faults ------------------------------------------------------------------
log "pulling through the fault proxy"
start_fault_proxy "$PLAIN"
set_fault_rules 'GET /v2/.*/blobs/sha256:.* status=500 times=2' \
  'GET /v2/.*/blobs/sha256:.* status=429 retry-after=1 times=1 skip=2' \
  'GET /v2/.*/blobs/sha256:.* truncate=20000 times=1 skip=3'
out=$(strata_ image pull "$PROXY_ADDR/strata/test:latest" 2>&1) || true
check_contains "pull succeeds through 500s, a 429 and a truncated body" "$out" \
  "$PROXY_ADDR/strata/test:latest $TEST_IMAGE_MANIFEST_DIGEST"
check "the proxy injected 4 faults" test "$(grep -c 'fault=status=\|fault=truncate' "$PROXY_LOG")" -ge 4
mount_image "$PROXY_ADDR/strata/test:latest" "$E2E_DIR/mnt/faults"
check_test_image_rootfs "$E2E_DIR/mnt/faults"
umount_all
strata_ image rm "$PROXY_ADDR/strata/test:latest" >/dev/null

set_fault_rules 'GET /v2/.*/blobs/sha256:.* status=503'
if out=$(strata_ image pull "$PROXY_ADDR/strata/test:latest" 2>&1); then
  fail "a registry that keeps failing fails the pull" "$out"
else
  check "the error names the status" grep -q 'HTTP 503 Service Unavailable' <<<"$out"
  check "the error names the repository and the attempts" grep -q 'repository strata/test\] after 4 attempts' <<<"$out"
fi
check_eq "a failed pull records no image" "$(strata_ image ls -q)" ""

set_fault_rules 'GET /v2/.*/blobs/sha256:.* corrupt'
if out=$(strata_ image pull "$PROXY_ADDR/strata/test:latest" 2>&1); then
  fail "corrupted blobs fail the pull" "$out"
else
  check "corruption is reported as data loss" grep -qi 'does not match\|mismatch\|corrupt' <<<"$out"
fi
check_eq "a corrupt pull records no image" "$(strata_ image ls -q)" ""

log "a daemon killed mid-download resumes where it stopped"
set_fault_rules '* .* rate=400000'
blob=$(jq -r '.layers[0].digest' <<<"$inspect")
blob_size=$(jq -r '.layers[0].size' <<<"$inspect")
( strata_ image pull "$PROXY_ADDR/strata/test:latest" >/dev/null 2>&1 || true ) &
client_pid=$!
sleep 1.5
kill -9 "$STRATAD_PID"
wait "$STRATAD_PID" 2>/dev/null || true
STRATAD_PID=""
wait "$client_pid" 2>/dev/null || true
set_fault_rules
restart_stratad
check "partial downloads survived the crash in the ingest area" \
  test -n "$(ls -A "$STRATAD_ROOT/content/ingest" 2>/dev/null)"
curl -fsS -X POST "http://$PROXY_ADDR/__fault/stats" >/dev/null
out=$(strata_ image pull "$PROXY_ADDR/strata/test:latest" 2>&1) || fail "pull after a crash" "$out"
resumed=$(fault_stats | jq '.bytes_sent')
total=$(jq '[.layers[].size] | add' <<<"$inspect")
log "image layers $total bytes; the pull after the crash fetched $resumed bytes"
check "the daemon resumed from the ingest" grep -q 'resuming download of sha256:' "$E2E_DIR/stratad.log"
check "the pull after the crash fetched less than the image" test "$resumed" -lt "$total"
mount_image "$PROXY_ADDR/strata/test:latest" "$E2E_DIR/mnt/resumed"
check_test_image_rootfs "$E2E_DIR/mnt/resumed"
umount_all

# ---- authentication ----------------------------------------------------------
log "basic auth"
start_registry --htpasswd alice:s3cret
BASIC="$REGISTRY_ADDR"
push_oci_layout "$E2E_DIR/image" "$BASIC/private/test:latest" alice:s3cret
if out=$(strata_ image pull "$BASIC/private/test:latest" 2>&1); then
  fail "a private registry without credentials refuses the pull" "$out"
else
  check "missing credentials are reported as such" grep -qi 'unauthenticated\|requires a username' <<<"$out"
fi
printf '{"auths":{"%s":{"auth":"%s"}}}\n' "$BASIC" "$(printf alice:s3cret | base64 -w0)" \
  >"$E2E_DIR/docker/config.json"
out=$(strata_ image pull "$BASIC/private/test:latest" 2>&1) || true
check_contains "basic auth with config.json credentials pulls" "$out" \
  "$BASIC/private/test:latest $TEST_IMAGE_MANIFEST_DIGEST"
check_lacks "the password never reaches the daemon log" "$(cat "$E2E_DIR/stratad.log")" "s3cret"

log "bearer tokens"
start_token_server --user bob:t0ken --expires-in 2
start_registry --token
TOKEN_REG="$REGISTRY_ADDR"
push_oci_layout "$E2E_DIR/image" "$TOKEN_REG/tokens/test:latest" bob:t0ken
printf '{"auths":{"%s":{"auth":"%s"}}}\n' "$TOKEN_REG" "$(printf bob:t0ken | base64 -w0)" \
  >"$E2E_DIR/docker/config.json"
out=$(strata_ image pull "$TOKEN_REG/tokens/test:latest" 2>&1) || true
check_contains "bearer-token auth pulls" "$out" "$TOKEN_REG/tokens/test:latest $TEST_IMAGE_MANIFEST_DIGEST"
check "the token server was asked for the pull scope" grep -q 'repository:tokens/test:pull' "$TOKEN_LOG"
sleep 3  # the 2 s token expires
strata_ image rm "$TOKEN_REG/tokens/test:latest" >/dev/null
out=$(strata_ image pull "$TOKEN_REG/tokens/test:latest" 2>&1) || true
check_contains "an expired token is replaced" "$out" "$TOKEN_REG/tokens/test:latest $TEST_IMAGE_MANIFEST_DIGEST"
echo '{}' >"$E2E_DIR/docker/config.json"

# ---- verifiers and concurrency ----------------------------------------------
log "image verifier plugins"
mkdir -p "$E2E_DIR/verifiers"
cat >"$E2E_DIR/verifiers/allow-strata-repos" <<'EOF'
#!/bin/sh
while [ $# -gt 0 ]; do [ "$1" = -name ] && name=$2; [ "$1" = -digest ] && digest=$2; shift; done
desc=$(cat)
case "$desc" in *"$digest"*) ;; *) echo "descriptor on stdin lacks the digest"; exit 1;; esac
case "$name" in */strata/*) exit 0;; esac
echo "repository of $name is not on the allow list"; exit 1
EOF
chmod 0755 "$E2E_DIR/verifiers/allow-strata-repos"
write_config "[image_verifier]
bin_dir = \"$E2E_DIR/verifiers\"
per_verifier_timeout = \"5s\""
restart_stratad
push_oci_layout "$E2E_DIR/image" "$PLAIN/other/test:latest"
if out=$(strata_ image pull "$PLAIN/other/test:latest" 2>&1); then
  fail "a verifier rejects a repository off its list" "$out"
else
  check "the rejection carries the verifier's reason" grep -q 'is not on the allow list' <<<"$out"
fi
out=$(strata_ image pull "$PLAIN/strata/test:latest" 2>&1) || true
check_contains "the verifier accepts an allowed repository" "$out" \
  "$PLAIN/strata/test:latest $TEST_IMAGE_MANIFEST_DIGEST"
write_config
restart_stratad
strata_ image rm "$PLAIN/strata/test:latest" >/dev/null

log "two concurrent pulls sharing layers download each blob once"
for i in $(strata_ image ls -q); do strata_ image rm "$i" >/dev/null; done
check_eq "a clean slate: no content" "$(strata_ content ls --json | jq length)" 0
set_fault_rules '* .* rate=2000000'
push_oci_layout "$E2E_DIR/image" "$PLAIN/strata/twin:latest"
before=$(grep -c 'GET /v2/strata/.*/blobs/' "$PROXY_LOG" || true)
strata_ image pull -q "$PROXY_ADDR/strata/test:latest" >"$E2E_DIR/pull-a.out" 2>&1 &
pa=$!
strata_ image pull -q "$PROXY_ADDR/strata/twin:latest" >"$E2E_DIR/pull-b.out" 2>&1 &
pb=$!
wait "$pa" && wait "$pb" && pass "both concurrent pulls succeed" ||
  fail "both concurrent pulls succeed" "$(cat "$E2E_DIR/pull-a.out" "$E2E_DIR/pull-b.out")"
after=$(grep -c 'GET /v2/strata/.*/blobs/' "$PROXY_LOG" || true)
layers=$(jq '.layers | length' <<<"$inspect")
check_eq "blob GETs: each layer and the config once" "$((after - before))" "$((layers + 1))"
set_fault_rules

print_summary
