# shellcheck shell=bash
# oci_layout_from_dirs LAYOUT IMAGE_NAME TAG DIR...: writes an OCI image layout at
# LAYOUT holding one image whose layers are the directories DIR... (in order; each a
# tar of it with numeric root ownership, gzip -6), a config running /bin/sh with PATH
# /usr/local/bin:/usr/bin:/bin, and an index entry annotated with IMAGE_NAME
# (io.containerd.image.name, what `ctr images import` calls it) and TAG
# (org.opencontainers.image.ref.name). Used by the e2e tests and the benchmarks.
# OCI_CONFIG_PATCH, when set, is a jq filter applied to the image's "config" object
# (e.g. '.User = "app" | .WorkingDir = "/srv"').
oci_layout_from_dirs() {
  local layout="$1" name="$2" tag="$3"
  shift 3
  local work
  work=$(mktemp -d "${TMPDIR:-/tmp}/oci-layout.XXXXXX")
  mkdir -p "$layout/blobs/sha256"
  # _put FILE: moves FILE into the layout; prints "digest size".
  _put() {
    local hex size
    hex=$(sha256sum "$1" | cut -d' ' -f1)
    size=$(stat -c %s "$1")
    mv "$1" "$layout/blobs/sha256/$hex"
    echo "sha256:$hex $size"
  }
  local dir layers="[]" diffs=() i=0 d s
  for dir in "$@"; do
    i=$((i + 1))
    tar --numeric-owner --owner=0 --group=0 -C "$dir" -cf "$work/l$i.tar" .
    diffs+=("sha256:$(sha256sum "$work/l$i.tar" | cut -d' ' -f1)")
    gzip -n -6 "$work/l$i.tar"
    read -r d s < <(_put "$work/l$i.tar.gz")
    layers=$(jq -c --arg d "$d" --argjson s "$s" \
      '. + [{mediaType: "application/vnd.oci.image.layer.v1.tar+gzip", digest: $d, size: $s}]' \
      <<<"$layers")
  done
  jq -n -c --arg arch "$(dpkg --print-architecture)" --args '{architecture: $arch, os: "linux",
      config: {Env: ["PATH=/usr/local/bin:/usr/bin:/bin"], Cmd: ["/bin/sh"], WorkingDir: "/"},
      rootfs: {type: "layers", diff_ids: $ARGS.positional}}' "${diffs[@]}" |
    jq -c ".config |= (${OCI_CONFIG_PATCH:-.})" >"$work/config.json"
  local cd cs md ms
  read -r cd cs < <(_put "$work/config.json")
  jq -n -c --arg cd "$cd" --argjson cs "$cs" --argjson layers "$layers" '{schemaVersion: 2,
      mediaType: "application/vnd.oci.image.manifest.v1+json",
      config: {mediaType: "application/vnd.oci.image.config.v1+json", digest: $cd, size: $cs},
      layers: $layers}' >"$work/manifest.json"
  read -r md ms < <(_put "$work/manifest.json")
  jq -n -c --arg md "$md" --argjson ms "$ms" --arg name "$name" --arg tag "$tag" '{schemaVersion: 2,
      manifests: [{mediaType: "application/vnd.oci.image.manifest.v1+json", digest: $md, size: $ms,
        annotations: {"io.containerd.image.name": $name,
                      "org.opencontainers.image.ref.name": $tag}}]}' >"$layout/index.json"
  echo '{"imageLayoutVersion":"1.0.0"}' >"$layout/oci-layout"
  rm -rf "$work"
}
