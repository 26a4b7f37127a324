#!/usr/bin/env bash
# Interop: layers converted by stargz-snapshotter's ctr-remote (eStargz and
# zstd:chunked, default and small chunks, with and without a prefetch landmark) are
# read by strata's lazy/stargz reader and must equal the original layer tar, byte for
# byte, attribute for attribute. Uses a private containerd (tests/e2e/lib.sh).
#
#   stargz_interop.sh STARGZ_INTEROP_CHECK
#
# Exits 77 (skipped) when ctr-remote is not installed or not running as root.
set -euo pipefail

CHECK="$1"
if ! command -v ctr-remote >/dev/null || [[ $(id -u) -ne 0 ]]; then
  echo "SKIP: needs root and ctr-remote (Debian package stargz-snapshotter)"
  exit 77
fi

source "$(dirname "$0")/../e2e/lib.sh"
e2e_init strata-stargz-interop
start_containerd

ctr_remote_() { ctr-remote --address "$CONTAINERD_SOCK" --namespace "$CTR_NAMESPACE" "$@"; }
sha256_of() { sha256sum "$1" | cut -d' ' -f1; }
# refused_with TEXT COMMAND...: COMMAND fails and says TEXT.
refused_with() {
  local want="$1" out
  shift
  if out=$("$@" 2>&1); then
    echo "accepted: $out"
    return 1
  fi
  grep -qF -- "$want" <<<"$out" || { echo "$out"; return 1; }
}

# ---- a root filesystem with every kind of entry ----------------------------------
R="$E2E_DIR/rootfs"
mkdir -p "$R"/{etc,bin,usr/lib,var,dev,opaque,deep/a/b/c}
echo "hello, lazy world" >"$R/etc/hello"
: >"$R/etc/empty"
head -c 511 /dev/urandom >"$R/etc/odd"
head -c 3000000 /dev/urandom >"$R/usr/lib/random.bin"
seq 1 300000 >"$R/usr/lib/numbers.txt"
ln "$R/usr/lib/random.bin" "$R/usr/lib/random.link"
ln -s ../usr/lib/numbers.txt "$R/bin/numbers"
ln -s /etc/hello "$R/bin/abs-link"
mknod "$R/dev/null" c 1 3
mknod "$R/dev/sda" b 8 0
mkfifo "$R/dev/fifo"
echo "#!/bin/sh" >"$R/bin/setuid"
chmod 4755 "$R/bin/setuid"
chmod 1777 "$R/var"
chown 1000:1001 "$R/etc/hello"
setfattr -n user.comment -v "a comment" "$R/etc/hello"
setfattr -n user.dir -v yes "$R/deep/a"
: >"$R/var/.wh.removed"
: >"$R/opaque/.wh..wh..opq"
echo kept >"$R/opaque/kept"
echo deep >"$R/deep/a/b/c/file"
find "$R" -exec touch -h -d @1600000000 {} +

LAYER_TAR="$E2E_DIR/layer.tar"
tar --format=posix --pax-option=delete=atime,delete=ctime --xattrs --xattrs-include='*' \
  --numeric-owner -C "$R" -cf "$LAYER_TAR" .
gzip -n -c "$LAYER_TAR" >"$E2E_DIR/layer.tar.gz"

# ---- an OCI image of it, imported into containerd --------------------------------
L="$E2E_DIR/oci"
mkdir -p "$L/blobs/sha256"
put_blob() { # FILE -> prints "digest size"
  local d
  d=$(sha256_of "$1")
  cp "$1" "$L/blobs/sha256/$d"
  echo "sha256:$d $(stat -c %s "$1")"
}
read -r layer_digest layer_size < <(put_blob "$E2E_DIR/layer.tar.gz")
arch=$(dpkg --print-architecture)
jq -n --arg diff "sha256:$(sha256_of "$LAYER_TAR")" --arg arch "$arch" \
  '{architecture: $arch, os: "linux", config: {}, rootfs: {type: "layers", diff_ids: [$diff]}}' \
  >"$E2E_DIR/config.json"
read -r config_digest config_size < <(put_blob "$E2E_DIR/config.json")
jq -n --arg cd "$config_digest" --argjson cs "$config_size" \
  --arg ld "$layer_digest" --argjson ls "$layer_size" '{
    schemaVersion: 2, mediaType: "application/vnd.oci.image.manifest.v1+json",
    config: {mediaType: "application/vnd.oci.image.config.v1+json", digest: $cd, size: $cs},
    layers: [{mediaType: "application/vnd.oci.image.layer.v1.tar+gzip", digest: $ld, size: $ls}]
  }' >"$E2E_DIR/manifest.json"
read -r manifest_digest manifest_size < <(put_blob "$E2E_DIR/manifest.json")
jq -n --arg md "$manifest_digest" --argjson ms "$manifest_size" '{
    schemaVersion: 2,
    manifests: [{mediaType: "application/vnd.oci.image.manifest.v1+json", digest: $md, size: $ms,
      annotations: {"io.containerd.image.name": "docker.io/library/stargz-src:latest",
                    "org.opencontainers.image.ref.name": "latest"}}]
  }' >"$L/index.json"
echo '{"imageLayoutVersion":"1.0.0"}' >"$L/oci-layout"
tar -C "$L" -cf "$E2E_DIR/image.tar" .
check "OCI image imported" ctr_ images import "$E2E_DIR/image.tar"
SRC=docker.io/library/stargz-src:latest

# convert NAME CTR_REMOTE_FLAGS... : converts SRC and exports the result; sets
# BLOB (the layer file), TOC_DIGEST, MANIFEST_CHECKSUM and MEDIA_TYPE.
convert() {
  local name="$1"
  shift
  local dst="docker.io/library/stargz-$name:latest" out="$E2E_DIR/out-$name"
  ctr_remote_ images convert --oci "$@" "$SRC" "$dst" >/dev/null
  mkdir -p "$out"
  ctr_ images export "$out.tar" "$dst"
  tar -C "$out" -xf "$out.tar"
  local m
  m=$(jq -r '.manifests[0].digest' "$out/index.json")
  m="$out/blobs/sha256/${m#sha256:}"
  if [[ $(jq -r '.mediaType // ""' "$m") == *index* ]]; then
    m=$(jq -r '.manifests[0].digest' "$m")
    m="$out/blobs/sha256/${m#sha256:}"
  fi
  local layer
  layer=$(jq -r '.layers[0].digest' "$m")
  BLOB="$out/blobs/sha256/${layer#sha256:}"
  MEDIA_TYPE=$(jq -r '.layers[0].mediaType' "$m")
  TOC_DIGEST=$(jq -r '.layers[0].annotations["containerd.io/snapshot/stargz/toc.digest"] // ""' "$m")
  MANIFEST_CHECKSUM=$(jq -r '.layers[0].annotations["io.containers.zstd-chunked.manifest-checksum"] // ""' "$m")
}

convert estargz --estargz
check_eq "eStargz layer media type" "$MEDIA_TYPE" "application/vnd.oci.image.layer.v1.tar+gzip"
check "eStargz (4 MiB chunks) equals the tar" \
  "$CHECK" --blob "$BLOB" --tar "$LAYER_TAR" --toc-digest "$TOC_DIGEST" --format estargz \
  --prefetch none
check "eStargz with a wrong TOC digest is refused" refused_with "TOC digest mismatch" \
  "$CHECK" --blob "$BLOB" --tar "$LAYER_TAR" --toc-digest "sha256:$(printf '0%.0s' {1..64})"

printf '{"path":"etc/hello"}\n{"path":"usr/lib/numbers.txt"}\n' >"$E2E_DIR/record.json"
convert estargz-small --estargz --estargz-chunk-size 65536 --estargz-record-in "$E2E_DIR/record.json"
check "eStargz (64 KiB chunks, prefetch landmark) equals the tar" \
  "$CHECK" --blob "$BLOB" --tar "$LAYER_TAR" --toc-digest "$TOC_DIGEST" --format estargz \
  --prefetch landmark --prefetched etc/hello --prefetched usr/lib/numbers.txt \
  --not-prefetched usr/lib/random.bin

convert zstd --zstdchunked --estargz-chunk-size 100000
check_eq "zstd:chunked layer media type" "$MEDIA_TYPE" "application/vnd.oci.image.layer.v1.tar+zstd"
check "zstd:chunked verified by its TOC digest equals the tar" \
  "$CHECK" --blob "$BLOB" --tar "$LAYER_TAR" --toc-digest "$TOC_DIGEST" --format zstd
check "zstd:chunked verified by its manifest checksum equals the tar" \
  "$CHECK" --blob "$BLOB" --tar "$LAYER_TAR" --manifest-checksum "$MANIFEST_CHECKSUM" --format zstd

e2e_finish
