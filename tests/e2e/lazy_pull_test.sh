#!/usr/bin/env bash
# Lazy pulling end to end, with real components: Debian's containerd (1.6) loads
# stratad as proxy snapshotter "strata"; an image converted to eStargz by Debian's
# ctr-remote sits in Debian's docker-registry (behind strata's fault proxy);
# `ctr-remote image rpull --snapshotter strata` pulls it lazily and `ctr run` reads
# files from it while most of the image was never fetched.
#
#   lazy_pull_test.sh STRATAD STRATA FAULT_PROXY
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
source "$HERE/lib.sh"
source "$HERE/registry_lib.sh"
source "$HERE/oci_lib.sh"

STRATAD=$(realpath "$1")
STRATA=$(realpath "$2")
FAULT_PROXY_BIN=$(realpath "$3")
for tool in containerd ctr ctr-remote runc containerd-shim-runc-v2 busybox jq curl; do
  command -v "$tool" >/dev/null || { echo "FAIL: $tool is not installed (scripts/install-deps.sh)"; exit 1; }
done

e2e_init strata-lazy-pull
start_registry
start_fault_proxy "$REGISTRY_ADDR"
REG="$PROXY_ADDR"

METRICS_PORT=$(registry_free_port)
CONFIG="$E2E_DIR/stratad.toml"
cat >"$CONFIG" <<EOF
[registry]
config_path = "$E2E_DIR/certs.d"
max_attempts = 3

[lazy]
background_fetch = false
read_deadline = "4s"
restart_grace = "30s"
metrics_address = "127.0.0.1:$METRICS_PORT"

[runtime]
cgroup_parent = "$E2E_CGROUP_PARENT"
EOF
mkdir -p "$E2E_DIR/certs.d"
start_stratad "$STRATAD" "$STRATA" --config "$CONFIG"
start_containerd

# Sum of a metric's series on stratad's metrics endpoint (0 when absent).
metric() {
  curl -sS --fail "http://127.0.0.1:$METRICS_PORT/metrics" |
    awk -v name="$1" '$1 == name || index($1, name "{") == 1 { s += $2 } END { printf "%d\n", s }'
}
fetched() { metric strata_lazy_fetched_bytes_total; }
ns_ctr() { ctr --address "$CONTAINERD_SOCK" --namespace "$1" "${@:2}"; }
lazy_mounts() { grep -c ' fuse.strata-stargz ' /proc/self/mountinfo || true; }
sha256_of() { sha256sum "$1" | cut -d' ' -f1; }
# run_in NAME COMMAND: runs COMMAND with sh in a new container of the lazily pulled image.
run_in() {
  ctr_ run --rm --snapshotter strata "$LAZY_REF" "$1" sh -c "$2"
}

# ---- the image: busybox, then a layer of incompressible data ---------------------
B="$E2E_DIR/build"
mkdir -p "$B/l1/bin" "$B/l1/etc" "$B/l1/tmp" "$B/l2/data/sub"
cp "$(command -v busybox)" "$B/l1/bin/busybox"
for applet in sh cat sha256sum ls wc head true sleep; do ln -s busybox "$B/l1/bin/$applet"; done
printf 'root:x:0:0:root:/root:/bin/sh\n' >"$B/l1/etc/passwd"
chmod 1777 "$B/l1/tmp"
printf 'lazy hello\n' >"$B/l2/data/small.txt"
for i in 1 2 3 4 5 6 7 8; do head -c $((4 << 20)) /dev/urandom >"$B/l2/data/big-$i.bin"; done
seq 1 20000 >"$B/l2/data/sub/numbers.txt"
ln "$B/l2/data/small.txt" "$B/l2/data/small.link"
ln -s big-1.bin "$B/l2/data/big.symlink"

OCI="$E2E_DIR/oci"
SRC="$REG/strata/lazy:gzip"
oci_layout_from_dirs "$OCI" "$SRC" gzip "$B/l1" "$B/l2"
tar -C "$OCI" -cf "$E2E_DIR/image.tar" .

# Convert in a namespace of its own and push both images to the registry.
check "image imported" ns_ctr build images import "$E2E_DIR/image.tar"
printf '{"path":"data/small.txt"}\n{"path":"bin/busybox"}\n' >"$E2E_DIR/record.json"
LAZY_REF="$REG/strata/lazy:estargz"
check "ctr-remote converts the image to eStargz" \
  ctr-remote --address "$CONTAINERD_SOCK" --namespace build images convert --oci --estargz \
  --estargz-record-in "$E2E_DIR/record.json" "$SRC" "$LAZY_REF"
check "eStargz image pushed" ns_ctr build images push --plain-http "$LAZY_REF"
check "gzip image pushed" ns_ctr build images push --plain-http "$SRC"
manifest=$(curl -sS -H 'Accept: application/vnd.oci.image.manifest.v1+json' \
  "http://$REG/v2/strata/lazy/manifests/estargz")
IMAGE_BYTES=$(jq '[.layers[].size] | add' <<<"$manifest")
TOC_DIGESTS=$(jq -r '[.layers[].annotations["containerd.io/snapshot/stargz/toc.digest"] // empty] | length' <<<"$manifest")
check_eq "both eStargz layers carry a TOC digest" "$TOC_DIGESTS" 2
log "eStargz image: $IMAGE_BYTES bytes of layers"

# ---- rpull: containerd skips every layer, strata mounts them lazily --------------
before=$(fetched)
out=$(ctr-remote --address "$CONTAINERD_SOCK" --namespace "$CTR_NAMESPACE" image rpull --plain-http \
  --snapshotter strata "$LAZY_REF" 2>&1) || fail "ctr-remote rpull --snapshotter strata" "$out"
pass "ctr-remote rpull --snapshotter strata"
check_eq "both layers are lazy FUSE mounts" "$(lazy_mounts)" 2
check_has "stratad served the layers lazily" "served lazily by stargz" "$(cat "$E2E_DIR/stratad.log")"
snaps=$(ctr_ snapshots --snapshotter strata ls)
check_has "the layer snapshots are committed" "Committed" "$snaps"
after_pull=$(fetched)
log "fetched by the pull: $((after_pull - before)) bytes"
check "the pull fetched under a quarter of the image" test $((after_pull - before)) -lt $((IMAGE_BYTES / 4))
wait_until 20 test "$(metric 'strata_lazy_fetched_bytes_total{priority="prefetch"}')" -gt 0 || true
check "the landmark's files were prefetched" \
  test "$(metric 'strata_lazy_fetched_bytes_total{priority="prefetch"}')" -gt 0

# ---- run: content is right, most of the image is never fetched --------------------
out=$(run_in lazy-read-1 'cat /data/small.txt /data/small.link; sha256sum /data/big-3.bin; wc -l < /data/sub/numbers.txt; cat /data/big.symlink | sha256sum' 2>&1) ||
  fail "ctr run on the lazy snapshot" "$out"
check_has "small file read through the lazy layer" "lazy hello" "$out"
check_eq "hard link reads the same" "$(grep -c 'lazy hello' <<<"$out")" 2
check_has "4 MiB file byte-identical" "$(sha256_of "$B/l2/data/big-3.bin")" "$out"
check_has "symlink followed" "$(sha256_of "$B/l2/data/big-1.bin")" "$out"
check_has "numbers file complete" "20000" "$out"
after_run=$(fetched)
log "fetched after the run: $after_run of $IMAGE_BYTES bytes"
check "most of the image was never fetched" test "$after_run" -lt $((IMAGE_BYTES / 2))
check "the bytes read were fetched" test "$after_run" -gt $((8 << 20))
check "metrics: FUSE read latency recorded" \
  grep -q 'strata_fuse_operation_duration_seconds_count{op="read"}' \
  <(curl -sS "http://127.0.0.1:$METRICS_PORT/metrics")

# ---- a registry fault: reads of uncached data fail with EIO within the deadline --
set_fault_rules 'GET /v2/.*/blobs/.* reset'
start_s=$(date +%s)
out=$(run_in lazy-fault 'cat /data/big-7.bin >/dev/null; echo "rc=$?"' 2>&1) || true
elapsed=$(($(date +%s) - start_s))
check_has "a read while the registry fails reports an I/O error" "Input/output error" "$out"
check "the failing read did not hang ($elapsed s)" test "$elapsed" -lt 30
out=$(run_in lazy-cached 'cat /data/small.txt' 2>&1) || true
check_has "cached files still read while the registry fails" "lazy hello" "$out"
set_fault_rules
out=$(run_in lazy-recovered 'sha256sum /data/big-7.bin' 2>&1) || true
check_has "reads recover when the registry returns" "$(sha256_of "$B/l2/data/big-7.bin")" "$out"

# ---- corrupt data from the registry: detected, never returned ----------------------
set_fault_rules 'GET /v2/.*/blobs/.* corrupt'
out=$(run_in lazy-corrupt 'cat /data/big-8.bin | sha256sum' 2>&1) || true
check_has "a corrupted chunk reads as an I/O error" "Input/output error" "$out"
check_lacks "no wrong bytes reach the reader" "$out" "$(sha256_of "$B/l2/data/big-8.bin")"
check_has "the mismatch is logged" "invalidating" "$(cat "$E2E_DIR/stratad.log")"
set_fault_rules
out=$(run_in lazy-uncorrupted 'sha256sum /data/big-8.bin' 2>&1) || true
check_has "the chunk reads right once the registry sends good bytes" \
  "$(sha256_of "$B/l2/data/big-8.bin")" "$out"

# ---- restart: running containers keep their lazy layers ---------------------------
# A detached container on the lazy image; it has read a file before the restart.
check "detached container started" ctr_ run -d --snapshotter strata "$LAZY_REF" lazy-long sleep 3600
in_long() { ctr_ tasks exec --exec-id "e$RANDOM$RANDOM" lazy-long sh -c "$1"; }
check_eq "the container reads before the restart" "$(in_long 'cat /data/small.txt' 2>&1)" "lazy hello"
stop_pid "$STRATAD_PID" stratad
check_eq "the lazy layers stay mounted while stratad is down" "$(lazy_mounts)" 2
check_has "stratad handed its sessions over" "stay mounted for the next start" "$(cat "$E2E_DIR/stratad.log")"
mv "$E2E_DIR/stratad.log" "$E2E_DIR/stratad-1.log"
start_stratad "$STRATAD" "$STRATA" --config "$CONFIG"
check_has "the new stratad serves the sessions again" "serving 2 lazy layers of the last run again" \
  "$(cat "$E2E_DIR/stratad.log")"
check_eq "still two lazy mounts, no new ones" "$(lazy_mounts)" 2
out=$(in_long 'sha256sum /data/big-4.bin' 2>&1) || true
check_has "the running container reads an uncached file after the restart" \
  "$(sha256_of "$B/l2/data/big-4.bin")" "$out"
f0=$(fetched)
out=$(run_in lazy-restarted 'sha256sum /data/big-3.bin' 2>&1) || fail "ctr run after restart" "$out"
check_has "a new container after the restart" "$(sha256_of "$B/l2/data/big-3.bin")" "$out"
check_eq "bytes cached before the restart were not fetched again" "$(fetched)" "$f0"

# A crash: kill -9 while the container runs; a read waits for the next stratad.
kill -KILL "$STRATAD_PID"
wait "$STRATAD_PID" 2>/dev/null || true
check_eq "the lazy layers survive a crash" "$(lazy_mounts)" 2
in_long 'sha256sum /data/big-6.bin' >"$E2E_DIR/read-during-crash.out" 2>&1 &
reader=$!
sleep 1
check "the read waits (not fails) while no stratad runs" kill -0 "$reader"
mv "$E2E_DIR/stratad.log" "$E2E_DIR/stratad-2.log"
start_stratad "$STRATAD" "$STRATA" --config "$CONFIG"
wait_until 30 bash -c "! kill -0 $reader 2>/dev/null" || true
wait "$reader" 2>/dev/null || true
check_has "the read made during the crash completes with the right bytes" \
  "$(sha256_of "$B/l2/data/big-6.bin")" "$(cat "$E2E_DIR/read-during-crash.out")"
ctr_ tasks kill --signal SIGKILL lazy-long >/dev/null 2>&1 || true
wait_until 10 bash -c "! ctr --address '$CONTAINERD_SOCK' -n '$CTR_NAMESPACE' tasks ls -q | grep -qx lazy-long" || true
ctr_ tasks delete lazy-long >/dev/null 2>&1 || true
check "detached container removed" ctr_ containers delete lazy-long

# ---- zstd:chunked: served lazily too, verified by its TOC digest ---------------------
ZSTD_REF="$REG/strata/lazy:zstdchunked"
check "ctr-remote converts the image to zstd:chunked" \
  ctr-remote --address "$CONTAINERD_SOCK" --namespace build images convert --oci --zstdchunked \
  "$SRC" "$ZSTD_REF"
check "zstd:chunked image pushed" ns_ctr build images push --plain-http "$ZSTD_REF"
mounts_before=$(lazy_mounts)
out=$(ctr-remote --address "$CONTAINERD_SOCK" --namespace "$CTR_NAMESPACE" image rpull --plain-http \
  --snapshotter strata "$ZSTD_REF" 2>&1) || fail "rpull of the zstd:chunked image" "$out"
check_eq "zstd:chunked layers are lazy mounts" "$(lazy_mounts)" $((mounts_before + 2))
out=$(ctr_ run --rm --snapshotter strata "$ZSTD_REF" zstd-read sh -c 'cat /data/small.txt; sha256sum /data/big-6.bin' 2>&1) ||
  fail "ctr run of the zstd:chunked image" "$out"
check_has "zstd:chunked content: small file" "lazy hello" "$out"
check_has "zstd:chunked content: big file" "$(sha256_of "$B/l2/data/big-6.bin")" "$out"
check "zstd:chunked image removed" ctr_ images rm --sync "$ZSTD_REF"
check_eq "its lazy mounts went with it" "$(lazy_mounts)" "$mounts_before"

# ---- fallback: a plain gzip image is unpacked the normal way -----------------------
out=$(ctr-remote --address "$CONTAINERD_SOCK" --namespace "$CTR_NAMESPACE" image rpull --plain-http \
  --snapshotter strata "$SRC" 2>&1) || fail "rpull of a gzip image" "$out"
check_eq "no FUSE mount for the gzip image" "$(lazy_mounts)" 2
out=$(ctr_ run --rm --snapshotter strata "$SRC" plain-read sh -c 'sha256sum /data/big-2.bin' 2>&1) ||
  fail "ctr run of the gzip image" "$out"
check_has "gzip image content" "$(sha256_of "$B/l2/data/big-2.bin")" "$out"

# ---- removal: containerd's GC removes the snapshots, their mounts and caches -----
check "eStargz image removed" ctr_ images rm --sync "$LAZY_REF"
check "gzip image removed" ctr_ images rm --sync "$SRC"
wait_until 20 bash -c "! grep -q ' fuse.strata-stargz ' /proc/self/mountinfo" || true
check_eq "no lazy mount left after GC" "$(lazy_mounts)" 0
check_eq "no snapshot left" "$(ctr_ snapshots --snapshotter strata ls | tail -n +2 | wc -l)" 0
check_eq "the layer caches were deleted" "$(find "$STRATAD_ROOT/cache" -mindepth 1 -maxdepth 1 -type d | wc -l)" 0

# ---- strata mount: an eStargz image is mounted lazily at once ---------------------
M="$E2E_DIR/mnt"
mkdir -p "$M"
before=$(fetched)
out=$(strata_ mount -q "$LAZY_REF" "$M" 2>&1) || fail "strata mount of the eStargz image" "$out"
check_has "strata mount says the layers are lazy" "2 of 2 layers served lazily" "$out"
check "strata mount fetched under a quarter of the image" \
  test $(($(fetched) - before)) -lt $((IMAGE_BYTES / 4))
check_eq "mounted file content" "$(cat "$M/data/small.txt")" "lazy hello"
check_eq "mounted 4 MiB file" "$(sha256_of "$M/data/big-5.bin")" "$(sha256_of "$B/l2/data/big-5.bin")"
check_eq "busybox from the lower layer" "$(sha256_of "$M/bin/busybox")" "$(sha256_of "$B/l1/bin/busybox")"
check "the mount is read-only" bash -c "! touch '$M/new-file' 2>/dev/null"
check_fails "a second strata mount at the same directory is refused" strata_ mount -q "$LAZY_REF" "$M"
check "strata umount" strata_ umount "$M"
check "the directory is no longer a mount point" bash -c "! mountpoint -q '$M'"
check_fails "strata umount of a directory it did not mount" strata_ umount "$M"
check "strata image rm of the mounted image" strata_ image rm "$LAZY_REF"
check_eq "its lazy mounts went with it" "$(lazy_mounts)" 0

# ---- strata image pull: lazy by default, --lazy=false downloads everything -------
out=$(strata_ image pull "$LAZY_REF" 2>&1) || fail "strata image pull of the eStargz image" "$out"
check_eq "strata image pull reports both layers lazy" "$(grep -c ': lazy' <<<"$out")" 2
check_eq "the pull mounted both layers" "$(lazy_mounts)" 2
# strata run on the lazy layers, also user-namespaced: FUSE layers that cannot be
# idmapped fall back to a metadata-only chown; the content stays right either way.
out=$(strata_ run --rm -q "$LAZY_REF" cat /data/small.txt 2>&1) || true
check_eq "strata run reads a lazy layer" "$out" "lazy hello"
T=$(strata_ run -d -q --userns auto "$LAZY_REF" sh -c 'echo $(id -u) $(stat -c %u /data/small.txt); sleep 1000' 2>&1) ||
  fail "strata run --userns auto on lazy layers" "$T"
wait_until 10 sh -c "'$STRATA' --address '$STRATAD_SOCK' logs $T | grep -q ' '" || true
check_eq "user-namespaced run on lazy layers: root owns the image's files" "$(strata_ logs "$T")" "0 0"
check_has "the rootfs method for FUSE layers is reported" "$(strata_ ps --json | jq -r '.[0].rootfs_remap')" \
  "idmapped metacopy-chown chown"
check_eq "and reads lazy content right" "$(strata_ exec "$T" sha256sum /data/big-3.bin | cut -d' ' -f1)" \
  "$(sha256_of "$B/l2/data/big-3.bin")"
strata_ rm -f "$T" >/dev/null
P="$E2E_DIR/mnt-plain"
mkdir -p "$P"
out=$(strata_ mount -q --lazy=false "$SRC" "$P" 2>&1) || fail "strata mount --lazy=false" "$out"
check_lacks "a full pull serves nothing lazily" "$out" "lazily"
check_eq "fully pulled content" "$(sha256_of "$P/data/big-6.bin")" "$(sha256_of "$B/l2/data/big-6.bin")"
check "strata umount of the full pull" strata_ umount "$P"
check "strata image rm removes both images" strata_ image rm "$LAZY_REF" "$SRC"
check_eq "no lazy mount left after strata's GC" "$(lazy_mounts)" 0
check_eq "no layer cache left after strata's GC" \
  "$(find "$STRATAD_ROOT/cache" -mindepth 1 -maxdepth 1 -type d | wc -l)" 0

# ---- strata image convert --estargz: from the registry and between OCI layouts ----
printf '/data/small.txt\n{"path": "bin/busybox"}\n' >"$E2E_DIR/prioritized.txt"
CONV_REF="$REG/strata/lazy:strata-estargz"
out=$(strata_ image convert --estargz --estargz-record-in "$E2E_DIR/prioritized.txt" --push \
  "$SRC" "$CONV_REF" 2>&1) || fail "strata image convert --estargz --push" "$out"
check_has "convert reports the converted layers" "2 layers converted" "$out"
conv_manifest=$(curl -sS -H 'Accept: application/vnd.oci.image.manifest.v1+json' \
  "http://$REG/v2/strata/lazy/manifests/strata-estargz")
check_eq "every converted layer has a TOC digest" \
  "$(jq '[.layers[].annotations["containerd.io/snapshot/stargz/toc.digest"] // empty] | length' <<<"$conv_manifest")" 2
check_eq "and its uncompressed size" \
  "$(jq '[.layers[].annotations["io.containers.estargz.uncompressed-size"] // empty] | length' <<<"$conv_manifest")" 2
layer2=$(jq -r '.layers[1].digest' <<<"$conv_manifest")
listing=$(curl -sS "http://$REG/v2/strata/lazy/blobs/$layer2" | tar -tzf - 2>&1) || fail "tar -tzf of a converted layer" "$listing"
check_has "plain tar reads a converted layer" "data/big-1.bin" "$listing"
check_has "the TOC is in the tar" "stargz.index.json" "$listing"
check_has "the prioritized file is marked" ".prefetch.landmark" "$listing"
out=$(ctr-remote --address "$CONTAINERD_SOCK" --namespace "$CTR_NAMESPACE" image rpull --plain-http \
  --snapshotter strata "$CONV_REF" 2>&1) || fail "ctr-remote rpull of strata's eStargz" "$out"
check_eq "strata's eStargz layers mount lazily" "$(lazy_mounts)" 2
out=$(ctr_ run --rm --snapshotter strata "$CONV_REF" conv-read sh -c \
  'cat /data/small.txt; sha256sum /data/big-2.bin; readlink /data/big.symlink' 2>&1) ||
  fail "ctr run of strata's eStargz" "$out"
check_has "converted content: small file" "lazy hello" "$out"
check_has "converted content: big file" "$(sha256_of "$B/l2/data/big-2.bin")" "$out"
check_has "converted content: symlink" "big-1.bin" "$out"
check "converted image removed" ctr_ images rm --sync "$CONV_REF"

OUT_LAYOUT="$E2E_DIR/oci-estargz"
out=$(strata_ image convert --estargz "oci:$OCI:gzip" "oci:$OUT_LAYOUT:estargz" 2>&1) ||
  fail "strata image convert between OCI layouts" "$out"
check_eq "the output layout is tagged" \
  "$(jq -r '.manifests[0].annotations["org.opencontainers.image.ref.name"]' "$OUT_LAYOUT/index.json")" estargz
check "skopeo pushes the converted layout" \
  skopeo copy --dest-tls-verify=false "oci:$OUT_LAYOUT:estargz" "docker://$REG/strata/lazy:from-layout"
out=$(ctr-remote --address "$CONTAINERD_SOCK" --namespace "$CTR_NAMESPACE" image rpull --plain-http \
  --snapshotter strata "$REG/strata/lazy:from-layout" 2>&1) || fail "rpull of the converted layout" "$out"
out=$(ctr_ run --rm --snapshotter strata "$REG/strata/lazy:from-layout" layout-read sh -c \
  'sha256sum /data/big-5.bin' 2>&1) || fail "ctr run of the converted layout" "$out"
check_has "layout conversion content" "$(sha256_of "$B/l2/data/big-5.bin")" "$out"
check "layout image removed" ctr_ images rm --sync "$REG/strata/lazy:from-layout"
check_fails "convert without a format is refused" strata_ image convert "$SRC" "$REG/strata/lazy:x"
check_fails "convert of a missing layout tag is refused" \
  strata_ image convert --estargz "oci:$OCI:nope" "oci:$E2E_DIR/never"

e2e_finish
