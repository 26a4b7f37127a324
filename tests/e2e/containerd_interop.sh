#!/usr/bin/env bash
# containerd interop: Debian's containerd uses stratad as its proxy snapshotter
# "strata". The test builds a two-layer busybox OCI image itself, imports and
# unpacks it through containerd, runs a container on it with runc, drives the
# snapshot API through `ctr snapshots`, then removes the image and checks that
# containerd's garbage collector emptied stratad (Remove and Cleanup).
#
# usage: containerd_interop.sh STRATAD STRATA   (as root)
set -euo pipefail

if (($# != 2)); then
  echo "usage: $0 STRATAD STRATA" >&2
  exit 2
fi
STRATAD_BIN=$(realpath "$1")
STRATA_BIN=$(realpath "$2")
# shellcheck source=tests/e2e/lib.sh
source "$(dirname "$(realpath "$0")")/lib.sh"

if ((EUID != 0)); then
  echo "SKIP: containerd interop needs root"
  exit 0
fi
for tool in containerd ctr runc containerd-shim-runc-v2 busybox jq sha256sum gzip tar; do
  command -v "$tool" >/dev/null || { echo "FAIL: $tool is not installed"; exit 1; }
done
BUSYBOX=$(command -v busybox)
if [[ "$(ldd "$BUSYBOX" 2>&1 || true)" != *"not a dynamic executable"* ]]; then
  echo "FAIL: $BUSYBOX is not static; install busybox-static"
  exit 1
fi

case "$(uname -m)" in
  x86_64) ARCH=amd64 ;;
  aarch64) ARCH=arm64 ;;
  *) echo "SKIP: no OCI architecture name for $(uname -m)"; exit 0 ;;
esac
IMAGE="docker.io/strata-e2e/busybox:two-layers"
MARKER="MARKER-$RANDOM$RANDOM$RANDOM"
LAYER2_TEXT="written-by-layer-two-$RANDOM$RANDOM"

# ---- image -------------------------------------------------------------------

sha256_of() { sha256sum "$1" | cut -d' ' -f1; }
size_of() { stat -c %s "$1"; }

# make_layer DIR OUT_BASENAME: writes OUT.tar (deterministic) and OUT.tar.gz;
# sets LAYER_DIFF_ID, LAYER_DIGEST and LAYER_SIZE.
make_layer() {
  local dir="$1" out="$2"
  (cd "$dir" && tar --sort=name --owner=0 --group=0 --numeric-owner --mtime=@1700000000 \
    --format=posix --pax-option=exthdr.name=%d/PaxHeaders/%f,delete=atime,delete=ctime \
    -cf "$out.tar" -- *)
  gzip -n -9 -c "$out.tar" >"$out.tar.gz"
  LAYER_DIFF_ID="sha256:$(sha256_of "$out.tar")"
  LAYER_DIGEST="sha256:$(sha256_of "$out.tar.gz")"
  LAYER_SIZE=$(size_of "$out.tar.gz")
}

# put_blob LAYOUT FILE: moves FILE into the layout's blobs; prints its digest.
put_blob() {
  local hex
  hex=$(sha256_of "$2")
  mv "$2" "$1/blobs/sha256/$hex"
  echo "sha256:$hex"
}

# build_image OUT.tar: a two-layer OCI image archive made from static busybox.
#   layer 1: /bin/busybox and applets, /etc/{passwd,group,doomed}, /opq/old-a
#   layer 2: /layer2-file, a whiteout for /etc/doomed, an opaque /opq with new-b
build_image() {
  local work="$E2E_DIR/image" out="$1"
  local l1="$work/layer1" l2="$work/layer2" layout="$work/layout"
  mkdir -p "$l1/bin" "$l1/etc" "$l1/opq" "$l1/tmp" "$l2/etc" "$l2/opq" "$layout/blobs/sha256"
  cp "$BUSYBOX" "$l1/bin/busybox"
  local applet
  for applet in sh echo cat ls test true sleep; do ln -s busybox "$l1/bin/$applet"; done
  printf 'root:x:0:0:root:/root:/bin/sh\n' >"$l1/etc/passwd"
  printf 'root:x:0:\n' >"$l1/etc/group"
  printf 'layer one wrote this; layer two deletes it\n' >"$l1/etc/doomed"
  printf 'hidden by the opaque directory of layer two\n' >"$l1/opq/old-a"
  chmod 1777 "$l1/tmp"

  printf '%s\n' "$LAYER2_TEXT" >"$l2/layer2-file"
  : >"$l2/etc/.wh.doomed"
  : >"$l2/opq/.wh..wh..opq"
  printf 'new in layer two\n' >"$l2/opq/new-b"

  make_layer "$l1" "$work/l1"
  DIFF_ID1=$LAYER_DIFF_ID
  local digest1=$LAYER_DIGEST size1=$LAYER_SIZE
  make_layer "$l2" "$work/l2"
  DIFF_ID2=$LAYER_DIFF_ID
  local digest2=$LAYER_DIGEST size2=$LAYER_SIZE
  put_blob "$layout" "$work/l1.tar.gz" >/dev/null
  put_blob "$layout" "$work/l2.tar.gz" >/dev/null

  jq -n --arg d1 "$DIFF_ID1" --arg d2 "$DIFF_ID2" --arg arch "$ARCH" '{
      architecture: $arch, os: "linux",
      created: "2023-11-14T22:13:20Z",
      config: {Env: ["PATH=/bin"], Cmd: ["/bin/sh"], WorkingDir: "/"},
      rootfs: {type: "layers", diff_ids: [$d1, $d2]},
      history: [{created_by: "strata e2e: busybox"}, {created_by: "strata e2e: whiteouts"}]
    }' >"$work/config.json"
  local config_size config_digest
  config_size=$(size_of "$work/config.json")
  config_digest=$(put_blob "$layout" "$work/config.json")

  jq -n --arg cd "$config_digest" --argjson cs "$config_size" \
    --arg d1 "$digest1" --argjson s1 "$size1" --arg d2 "$digest2" --argjson s2 "$size2" '{
      schemaVersion: 2,
      mediaType: "application/vnd.oci.image.manifest.v1+json",
      config: {mediaType: "application/vnd.oci.image.config.v1+json", digest: $cd, size: $cs},
      layers: [
        {mediaType: "application/vnd.oci.image.layer.v1.tar+gzip", digest: $d1, size: $s1},
        {mediaType: "application/vnd.oci.image.layer.v1.tar+gzip", digest: $d2, size: $s2}
      ]
    }' >"$work/manifest.json"
  local manifest_size manifest_digest
  manifest_size=$(size_of "$work/manifest.json")
  manifest_digest=$(put_blob "$layout" "$work/manifest.json")

  jq -n --arg md "$manifest_digest" --argjson ms "$manifest_size" --arg name "$IMAGE" \
    --arg arch "$ARCH" '{
      schemaVersion: 2,
      mediaType: "application/vnd.oci.image.index.v1+json",
      manifests: [{
        mediaType: "application/vnd.oci.image.manifest.v1+json",
        digest: $md, size: $ms,
        platform: {architecture: $arch, os: "linux"},
        annotations: {
          "io.containerd.image.name": $name,
          "org.opencontainers.image.ref.name": "two-layers"
        }
      }]
    }' >"$layout/index.json"
  printf '{"imageLayoutVersion":"1.0.0"}' >"$layout/oci-layout"
  (cd "$layout" && tar --owner=0 --group=0 --numeric-owner -cf "$out" oci-layout index.json blobs)
}

# chain_id PARENT_CHAIN DIFF_ID: the OCI ChainID of a layer on PARENT_CHAIN.
chain_id() {
  if [[ -z "$1" ]]; then
    echo "$2"
  else
    echo "sha256:$(printf '%s %s' "$1" "$2" | sha256sum | cut -d' ' -f1)"
  fi
}

# strata_keys: stratad's snapshot keys, one a line.
strata_keys() { strata_ snapshot ls --json | jq -r '.[].name'; }

# ctr_run RM_FLAG ID SCRIPT: runs SCRIPT with /bin/sh in a new container on
# $IMAGE with the strata snapshotter; RM_FLAG is "--rm" or "".
ctr_run() {
  local flags=(--snapshotter strata --runc-root "$E2E_DIR/runc" --fifo-dir "$E2E_DIR/fifo"
    --cgroup "/$E2E_CGROUP_PARENT/$2")
  [[ -n "$1" ]] && flags+=("$1")
  timeout 120 ctr --address "$CONTAINERD_SOCK" --namespace "$CTR_NAMESPACE" run "${flags[@]}" \
    "$IMAGE" "$2" /bin/sh -c "$3" 2>&1
}

# snapshot_dirs: directories under stratad's snapshots/, one a line.
snapshot_dirs() { find "$STRATAD_ROOT/snapshots" -mindepth 1 -maxdepth 1 -printf '%f\n' 2>/dev/null | sort; }

# ---- the test ----------------------------------------------------------------

e2e_init strata-interop
T0=$SECONDS
# Without background cleanup the directories of removed snapshots stay until
# Cleanup: their disappearance proves that containerd called it.
start_stratad "$STRATAD_BIN" "$STRATA_BIN" --no-background-cleanup
start_containerd

# 1. image archive
ARCHIVE="$E2E_DIR/busybox-oci.tar"
build_image "$ARCHIVE"
CHAIN1=$(chain_id "" "$DIFF_ID1")
CHAIN2=$(chain_id "$CHAIN1" "$DIFF_ID2")
log "built $ARCHIVE; chain ids $CHAIN1 $CHAIN2"

# containerd must see stratad as a loaded snapshotter plugin.
plugins=$(ctr --address "$CONTAINERD_SOCK" plugins ls 2>&1 || true)
check "containerd loaded the proxy snapshotter plugin strata" \
  grep -qE '^io\.containerd\.snapshotter\.v1[[:space:]]+strata[[:space:]].*ok' <<<"$plugins"

# 2. import and unpack through strata
if out=$(ctr_ images import --snapshotter strata "$ARCHIVE" 2>&1); then
  pass "ctr images import --snapshotter strata succeeded"
else
  fail "ctr images import --snapshotter strata failed" "$out"
fi
check_contains "ctr lists the imported image $IMAGE" "$(ctr_ images ls -q 2>&1)" "$IMAGE"
# config and two layers present, unpacked for strata
check "ctr images check reports the image complete and unpacked" \
  grep -qE "^$IMAGE .* complete \(3/3\) .* true[[:space:]]*\$" \
  <<<"$(ctr_ images check --snapshotter strata 2>&1)"

# 3. the committed layers are in stratad, under containerd's namespaced keys
listing=$(strata_ snapshot ls --json)
key1=$(jq -r --arg c "$CHAIN1" '.[] | select(.kind == "committed" and (.name | endswith("/" + $c))) | .name' <<<"$listing")
key2=$(jq -r --arg c "$CHAIN2" '.[] | select(.kind == "committed" and (.name | endswith("/" + $c))) | .name' <<<"$listing")
check "stratad holds the committed layer 1 snapshot ($CHAIN1)" \
  grep -qE "^$CTR_NAMESPACE/[0-9]+/$CHAIN1\$" <<<"$key1"
check "stratad holds the committed layer 2 snapshot ($CHAIN2)" \
  grep -qE "^$CTR_NAMESPACE/[0-9]+/$CHAIN2\$" <<<"$key2"
check_eq "layer 2's parent in stratad is layer 1" \
  "$(jq -r --arg k "$key2" '.[] | select(.name == $k) | .parent' <<<"$listing")" "$key1"
check_eq "layer 1 has no parent in stratad" \
  "$(jq -r --arg k "$key1" '.[] | select(.name == $k) | .parent' <<<"$listing")" ""
check_eq "no active snapshot is left over from the unpack" \
  "$(jq '[.[] | select(.kind != "committed")] | length' <<<"$listing")" "0"

# 4. run containers on the image (runc through containerd's runc v2 shim)
RUN_ID="interop-$RANDOM$RANDOM"
run_script="echo $MARKER; cat /layer2-file"
run_script+="; if test -e /etc/doomed; then echo doomed-present; else echo doomed-absent; fi"
run_script+="; echo opq: \$(ls /opq); cat /etc/passwd"
if run_out=$(ctr_run --rm "$RUN_ID" "$run_script"); then
  pass "ctr run --rm --snapshotter strata exited 0"
else
  fail "ctr run --rm --snapshotter strata failed" "$run_out"
fi
check_contains "the container printed the marker" "$run_out" "$MARKER"
check_contains "the container reads layer 2's file" "$run_out" "$LAYER2_TEXT"
check_contains "the container reads layer 1's /etc/passwd" "$run_out" "root:x:0:0:root:/root:/bin/sh"
check_contains "layer 2's whiteout hides /etc/doomed" "$run_out" "doomed-absent"
check_contains "layer 2's opaque /opq shows only new-b" "$run_out" "opq: new-b"

# A container kept after its task exits: what it wrote is in its snapshot's
# upper directory in stratad, and removing the container removes the snapshot.
KEEP_ID="kept-$RANDOM$RANDOM"
WRITTEN="written-by-container-$RANDOM$RANDOM"
if run_out=$(ctr_run "" "$KEEP_ID" "echo $WRITTEN > /tmp/container-file"); then
  pass "ctr run (container kept) exited 0"
else
  fail "ctr run (container kept) failed" "$run_out"
fi
listing=$(strata_ snapshot ls --json)
keep_key=$(jq -r --arg id "$KEEP_ID" '.[] | select(.name | endswith("/" + $id)) | .name' <<<"$listing")
check "stratad holds the container's snapshot under a namespaced key" \
  grep -qE "^$CTR_NAMESPACE/[0-9]+/$KEEP_ID\$" <<<"$keep_key"
check_eq "the container's snapshot is active on layer 2" \
  "$(jq -r --arg k "$keep_key" '.[] | select(.name == $k) | "\(.kind) \(.parent)"' <<<"$listing")" \
  "active $key2"
upper=$(strata_ snapshot mounts --json "$keep_key" 2>/dev/null |
  jq -r '.[0].options[] | select(startswith("upperdir=")) | ltrimstr("upperdir=")' || true)
check_eq "the container's write landed in its snapshot's upper directory" \
  "$(cat "$upper/tmp/container-file" 2>&1)" "$WRITTEN"
check "ctr containers rm $KEEP_ID" ctr_ containers rm "$KEEP_ID"
if wait_until 30 bash -c "! '$STRATA_BIN' --address '$STRATAD_SOCK' snapshot ls --json | grep -qF '/$KEEP_ID\"'"; then
  pass "stratad no longer holds the removed container's snapshot"
else
  fail "stratad still holds the removed container's snapshot" "$(strata_ snapshot ls 2>&1)"
fi

# 5. ctr snapshots drives stratad directly
ctr_snaps=$(ctr_ snapshots --snapshotter strata ls 2>&1)
check "ctr snapshots ls shows layer 1 as committed" \
  grep -qE "^${CHAIN1}[[:space:]]+Committed" <<<"$ctr_snaps"
check "ctr snapshots ls shows layer 2 as committed on layer 1" \
  grep -qE "^${CHAIN2}[[:space:]]+${CHAIN1}[[:space:]]+Committed" <<<"$ctr_snaps"

PROBE="probe-$RANDOM$RANDOM"
check "ctr snapshots prepare $PROBE on layer 2" \
  ctr_ snapshots --snapshotter strata prepare "$PROBE" "$CHAIN2"
listing=$(strata_ snapshot ls --json)
probe_key=$(jq -r --arg p "$PROBE" '.[] | select(.name | endswith("/" + $p)) | .name' <<<"$listing")
check "stratad holds the prepared snapshot under a namespaced key" \
  grep -qE "^$CTR_NAMESPACE/[0-9]+/$PROBE\$" <<<"$probe_key"
check_eq "the prepared snapshot is active on layer 2 in stratad" \
  "$(jq -r --arg k "$probe_key" '.[] | select(.name == $k) | "\(.kind) \(.parent)"' <<<"$listing")" \
  "active $key2"
probe_mounts=$(ctr_ snapshots --snapshotter strata mounts /mnt/probe "$PROBE" 2>&1 || true)
check "ctr snapshots mounts gives an overlay over both layers" \
  grep -qE '^mount -t overlay overlay /mnt/probe -o .*lowerdir=[^,]+:[^,]+' <<<"$probe_mounts"
# containerd forwards only containerd.io/snapshot/ labels to a snapshotter.
check "ctr snapshots label $PROBE" \
  ctr_ snapshots --snapshotter strata label "$PROBE" containerd.io/snapshot/e2e=forwarded
check_eq "the forwarded label reached stratad (Update)" \
  "$(strata_ snapshot info "$probe_key" 2>&1 | jq -r '.labels["containerd.io/snapshot/e2e"]' 2>&1)" \
  "forwarded"
check "ctr snapshots commit $PROBE-committed $PROBE" \
  ctr_ snapshots --snapshotter strata commit "$PROBE-committed" "$PROBE"
listing=$(strata_ snapshot ls --json)
check_eq "the committed probe is committed on layer 2 in stratad" \
  "$(jq -r --arg p "$PROBE-committed" '.[] | select(.name | endswith("/" + $p)) | "\(.kind) \(.parent)"' <<<"$listing")" \
  "committed $key2"
check_eq "the committed probe's active key is gone from stratad" \
  "$(jq -r --arg k "$probe_key" '.[] | select(.name == $k) | .name' <<<"$listing")" ""
check "ctr snapshots rm $PROBE-committed" \
  ctr_ snapshots --snapshotter strata rm "$PROBE-committed"
check_lacks "ctr snapshots ls no longer lists $PROBE" \
  "$(ctr_ snapshots --snapshotter strata ls 2>&1)" "$PROBE"
# containerd removes backend snapshots in its garbage collector, which its
# scheduler starts soon after a removal; a lease deleted with --sync runs one
# at once.
lease=$(ctr_ leases create 2>/dev/null | awk '{print $1; exit}' || true)
if [[ -n "$lease" ]]; then ctr_ leases rm --sync "$lease" >/dev/null 2>&1 || true; fi
if wait_until 30 bash -c "! '$STRATA_BIN' --address '$STRATAD_SOCK' snapshot ls --json | grep -qF '/$PROBE'"; then
  pass "stratad no longer holds $PROBE"
else
  fail "stratad still holds $PROBE after containerd removed it" "$(strata_ snapshot ls 2>&1)"
fi

# 6. removing the image lets containerd's GC remove and clean up everything.
# An orphan directory made through strata's own CLI (stratad runs without
# background cleanup) shows that containerd's GC ends with Cleanup.
strata_ snapshot prepare e2e-orphan >/dev/null
orphan_dir=$(strata_ snapshot mounts --json e2e-orphan |
  jq -r '.[0].source, (.[0].options[] | select(startswith("upperdir=")) | ltrimstr("upperdir="))' |
  grep -m1 "^$STRATAD_ROOT/snapshots/" | sed -E "s|^($STRATAD_ROOT/snapshots/[^/]+).*|\\1|")
strata_ snapshot rm e2e-orphan
check "strata snapshot rm leaves its directory to Cleanup ($orphan_dir)" test -d "$orphan_dir"

check "ctr images rm --sync $IMAGE" ctr_ images rm --sync "$IMAGE"
check_eq "ctr no longer lists images" "$(ctr_ images ls -q 2>&1)" ""
if wait_until 30 bash -c "! '$STRATA_BIN' --address '$STRATAD_SOCK' snapshot ls --json | grep -qF '\"$CTR_NAMESPACE/'"; then
  pass "stratad holds no snapshot of namespace $CTR_NAMESPACE"
else
  fail "stratad still holds snapshots of namespace $CTR_NAMESPACE" "$(strata_ snapshot ls 2>&1)"
fi
if wait_until 30 bash -c "[[ -z \"\$(find '$STRATAD_ROOT/snapshots' -mindepth 1 -maxdepth 1)\" ]]"; then
  pass "Cleanup removed every snapshot directory, the orphan included"
else
  fail "snapshot directories remain after GC (Cleanup not called?)" "$(snapshot_dirs)"
fi
check_eq "ctr snapshots ls is empty" "$(ctr_ snapshots --snapshotter strata ls 2>&1 | tail -n +2)" ""
if check_out=$(strata_ snapshot check --json 2>&1) &&
  [[ "$(jq -r '.consistent' <<<"$check_out")" == true ]]; then
  pass "strata snapshot check reports consistent"
else
  fail "strata snapshot check reports problems" "$check_out"
fi

log "containerd interop took $((SECONDS - T0)) s"
e2e_finish
