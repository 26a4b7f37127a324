#!/usr/bin/env bash
# Rootfs preparation for user-namespaced containers (issue 5): how long
# runtime::MountRemapped takes with each method (chown, metacopy chown, idmapped)
# against image trees of about 3,500, 33,000 and 37,000 inodes, beside the figures
# containerd's developers published for overlayfs at those sizes.
#
#   sudo bench/run_userns_bench.sh BUILD_DIR        (needs BUILD_DIR/bench/userns_bench)
#
# 1. Builds, once, in BENCH_CACHE, image trees from this machine's installed Debian
#    packages, as debootstrap-like images of growing size: packages in the order
#    required, important, standard, optional, extra (by name within each), each
#    package's files from its dpkg file list (paths through the /bin, /lib, ...
#    symlinks of merged /usr resolved to /usr), copied with their ownership and modes
#    (GNU tar). A tree takes whole packages while they fit and then files of the next
#    one, so that it has exactly TARGETS entries (find DIR | wc -l), counting the /bin,
#    /sbin, /lib and /lib64 symlinks of an image's root. The largest target is also
#    built as LAYERS layers (its packages split in order into layers of about equal
#    size, each with the directories its files need), whose merged view is that tree.
# 2. Runs userns_bench on the trees (single layer each, and the layered one), with the
#    upper and work directories in BENCH_CACHE/work, on the trees' file system.
#
# Environment: TARGETS ("3500 33000 37000"), LAYERS (5), RUNS (5), BENCH_CACHE
# (/var/tmp/strata-userns-bench), BENCH_ARGS (more userns_bench flags, e.g. --no-warm).
set -euo pipefail

if [[ $# -ne 1 ]]; then
  echo "usage: $0 BUILD_DIR" >&2
  exit 2
fi
build_dir=$(realpath "$1")
bench="$build_dir/bench/userns_bench"
[[ -x $bench ]] || { echo "missing executable: $bench (ninja userns_bench)" >&2; exit 2; }
[[ $(id -u) -eq 0 ]] || { echo "$0: mounts and user namespaces need root" >&2; exit 2; }
targets=${TARGETS:-"3500 33000 37000"}
layers=${LAYERS:-5}
runs=${RUNS:-5}
cache=${BENCH_CACHE:-/var/tmp/strata-userns-bench}

log() { printf '[%(%H:%M:%S)T] %s\n' -1 "$*" >&2; }

# build_tree TARGET LAYERS: writes $cache/tree-TARGET (and, with LAYERS > 1,
# $cache/tree-TARGET-layers/1..LAYERS, top layer 1) from the package file lists.
build_tree() {
  local target=$1 nlayers=$2 out="$cache/tree-$1"
  local lists="$cache/lists-$1"
  rm -rf "$out" "$out.tmp" "$lists"
  mkdir -p "$lists"
  python3 - "$target" "$nlayers" "$lists" <<'EOF'
import os, subprocess, sys
target, nlayers, lists = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
order = {"required": 0, "important": 1, "standard": 2, "optional": 3, "extra": 4}
rows = subprocess.run(["dpkg-query", "-W", "-f", "${Priority}\t${Package}:${Architecture}\t${db:Status-Status}\n"],
                      capture_output=True, text=True, check=True).stdout.splitlines()
pkgs = sorted((order.get(p, 5), name) for p, name, st in (r.split("\t") for r in rows) if st == "installed")
# An image's root: the merged-/usr symlinks (counted as entries of every tree).
root_links = [l for l in ("bin", "sbin", "lib", "lib64") if os.path.islink("/" + l)]

def canonical(path):
    parent, base = os.path.split(path)
    return os.path.join(os.path.realpath(parent), base)

def with_parents(path, seen):
    out = []
    while path not in ("/", "") and path not in seen:
        out.append(path)
        path = os.path.dirname(path)
    return out

def files_of(pkg):
    name, arch = pkg.split(":")
    for cand in (f"/var/lib/dpkg/info/{name}:{arch}.list", f"/var/lib/dpkg/info/{name}.list"):
        if os.path.exists(cand):
            break
    else:
        return []
    paths = set()
    for line in open(cand, encoding="utf-8", errors="surrogateescape"):
        p = line.rstrip("\n")
        if p in ("", "/.") or not os.path.lexists(p):
            continue
        c = canonical(p)
        if c.split("/")[1] in ("proc", "sys", "dev", "run", "tmp") or not os.path.lexists(c):
            continue
        paths.add(c)
    return sorted(paths)

seen = set()
owner = []  # (path, package index) in the order they were taken
taken = []  # packages taken, fully or in part
need = target - 1 - len(root_links)  # the tree's root and its root symlinks
for _, pkg in pkgs:
    files = files_of(pkg)
    new = []
    for f in files:
        new.extend(reversed(with_parents(f, seen | set(new))))
    if not new:
        continue
    if len(seen) + len(new) <= need:
        seen.update(new)
        owner.extend((p, len(taken)) for p in new)
        taken.append(pkg)
        continue
    # Part of this package: its files in order, with their parents, up to the target.
    part = []
    for f in files:
        add = list(reversed(with_parents(f, seen)))
        if len(seen) + len(add) > need:
            break
        seen.update(add)
        part.extend(add)
    if part:
        owner.extend((p, len(taken)) for p in part)
        taken.append(pkg + " (part)")
    break
with open(os.path.join(lists, "all"), "w") as f:
    for p, _ in owner:
        f.write(p.lstrip("/") + "\0")
with open(os.path.join(lists, "packages"), "w") as f:
    f.write("\n".join(taken) + "\n")
with open(os.path.join(lists, "root-links"), "w") as f:
    f.write("\n".join(root_links) + "\n")
if nlayers > 1:
    # Packages split in order into layers of about equal entry counts; layer 1 (the
    # top) holds the last packages, as an image's later instructions add layers on top.
    per = len(owner) / nlayers
    groups = [[] for _ in range(nlayers)]
    start = 0
    bounds = []
    for i in range(1, nlayers):
        k = int(i * per)
        # Move the cut to the next package boundary.
        while 0 < k < len(owner) and owner[k][1] == owner[k - 1][1]:
            k += 1
        bounds.append(k)
    cuts = [0] + bounds + [len(owner)]
    for i in range(nlayers):
        layer = [p for p, _ in owner[cuts[i]:cuts[i + 1]]]
        need_dirs = set()
        for p in layer:
            d = os.path.dirname(p)
            while d not in ("/", ""):
                need_dirs.add(d)
                d = os.path.dirname(d)
        paths = sorted(need_dirs | set(layer))
        with open(os.path.join(lists, f"layer{nlayers - i}"), "w") as f:
            for p in paths:
                f.write(p.lstrip("/") + "\0")
EOF
  copy_list() {  # LIST DEST
    mkdir -p "$2"
    tar -C / --no-recursion --null -T "$1" -cf - | tar -C "$2" -xpf - --numeric-owner
    local l
    while read -r l; do [[ -n $l ]] && ln -s "usr/$l" "$2/$l"; done <"$lists/root-links"
  }
  copy_list "$lists/all" "$out.tmp"
  if ((nlayers > 1)); then
    rm -rf "$out-layers"
    local i
    for ((i = 1; i <= nlayers; i++)); do
      mkdir -p "$out-layers/$i"
      tar -C / --no-recursion --null -T "$lists/layer$i" -cf - |
        tar -C "$out-layers/$i" -xpf - --numeric-owner
    done
    # The root symlinks belong to the bottom layer.
    while read -r l; do [[ -n $l ]] && ln -s "usr/$l" "$out-layers/$nlayers/$l"; done <"$lists/root-links"
  fi
  mv "$out.tmp" "$out"
  log "tree-$target: $(find "$out" | wc -l) entries (target $target), $(du -sm "$out" | cut -f1) MB," \
    "$(grep -vc part "$lists/packages") whole packages + $(grep -c part "$lists/packages" || true) in part"
}

mkdir -p "$cache"
largest=0
for t in $targets; do ((t > largest)) && largest=$t; done
for t in $targets; do
  n=1
  ((t == largest)) && n=$layers
  if [[ ! -d $cache/tree-$t ]] || { ((n > 1)) && [[ ! -d $cache/tree-$t-layers ]]; }; then
    log "building tree-$t from Debian package file lists"
    build_tree "$t" "$n"
  fi
done

specs=()
for t in $targets; do specs+=("$t=$cache/tree-$t"); done
if ((layers > 1)); then
  layer_dirs=$(seq -f "$cache/tree-$largest-layers/%g" 1 "$layers" | paste -sd:)
  specs+=("$largest in $layers layers=$layer_dirs")
fi
for t in $targets; do log "tree-$t: $(find "$cache/tree-$t" | wc -l) entries (find | wc -l)"; done

cleanup() {
  # userns_bench unmounts what it mounts; this catches an interrupted run.
  awk -v dir="$cache/work" '{ if ($5 == dir || index($5, dir "/") == 1) print length($5) "\t" $5 }' \
    /proc/self/mountinfo | sort -rn | cut -f2- | while read -r m; do umount -l "$m" 2>/dev/null || true; done
  rm -rf --one-file-system "$cache/work"
}
trap cleanup EXIT
# shellcheck disable=SC2086  # BENCH_ARGS is a list of flags
"$bench" --work "$cache/work" --runs "$runs" ${BENCH_ARGS:-} "${specs[@]}"
