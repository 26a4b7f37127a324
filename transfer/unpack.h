// Applying one OCI image layer to a snapshot directory.
//
// Layers are unpacked the way containerd 2.x unpacks them in parallel: each layer
// literally, into its own empty directory, without its parents; overlayfs stacks the
// directories later. Two things of a layer can only be settled once its parents are
// known, and are finished afterwards by FinishLayer:
//
//   - a parent directory the archive does not list ("usr/bin/tool" without "usr/" or
//     "usr/bin/": layer tools omit unchanged directories) is created 0755 root:root
//     here and takes its attributes from the parent layers in FinishLayer;
//   - a hard link to a file of a parent layer cannot be a hard link across layers; as
//     overlayfs copy-up would, FinishLayer copies that file to the link's path.
//
//   snapshot of layer N (empty)          UnpackLayer(blob, dir)     -> UnpackResult
//   parents' directories, nearest first  FinishLayer(dir, lowers, result)
//
// How entries map to files (root:root, numeric uid/gid from the headers, names ignored):
//   regular files (sparse ones keep their holes), directories, symlinks, hard links,
//   fifos, and char/block devices when UnpackOptions::allow_devices; owner, mode with
//   setuid/setgid/sticky, xattrs (security.capability included), atime and mtime with
//   nanoseconds. Directory times are set last, deepest first, since filling a directory
//   changes its mtime.
//   "<dir>/.wh.<name>"     -> "<dir>/<name>" as an overlayfs whiteout (char device 0:0)
//   "<dir>/.wh..wh..opq"   -> xattr trusted.overlay.opaque=y on <dir> (user.overlay.
//                             opaque with UnpackOptions::userxattr)
//   "<dir>/.wh..wh.<other>" (aufs hard-link bookkeeping) -> ignored
//   "./" (the root itself) -> ignored, as containerd does
//   a later entry with the path of an earlier one replaces it, except that a directory
//   over a directory keeps its contents and takes the new attributes.
//
// What is refused (the call fails and writes nothing outside dest_dir; what it wrote
// inside is left for the caller to delete):
//   - absolute paths, and ".." that climbs above the root ("a/../b" is fine and means
//     "b"): InvalidArgument;
//   - a path through a symlink, including one made earlier in this archive or one that
//     replaced a directory mid-archive: PermissionDenied. Paths are resolved with
//     openat2(RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS) (or an O_NOFOLLOW walk), never
//     followed: a layer as a layer tool writes it never puts entries below its own
//     symlinks, so refusing costs nothing legitimate and removes every escape;
//   - hard links whose target is absolute, escapes or goes through a symlink; hard
//     links to directories;
//   - device entries without allow_devices (PermissionDenied); entry types other than
//     the ones above (InvalidArgument);
//   - uid or gid outside 0..4294967294;
//   - everything TarReader refuses (tar_reader.h): NUL in names, oversize headers,
//     truncated archives, bad checksums, contents shorter than the size says;
//   - a stream whose SHA-256 is not UnpackOptions::expected_diff_id: DataLoss "layer
//     diff id mismatch: expected X, got Y" (checked at the end: the files are written).
//
// overlayfs's own xattrs (trusted.overlay.*, user.overlay.*) in an archive are ignored.
// Nothing is fsynced: the caller syncs the whole snapshot once (syncfs) before
// committing it. Needs root (chown, mknod, trusted.* xattrs).
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "core/status.h"
#include "transfer/byte_source.h"
#include "transfer/decompress.h"

namespace strata::transfer {

struct UnpackOptions {
  // Format of the blob; unset: detected from its first bytes (decompress.h).
  std::optional<Compression> compression;
  // Create char and block device entries. When false such an entry fails the unpack
  // with PermissionDenied: a device node in an image grants access to hardware.
  bool allow_devices = false;
  // Mark opaque directories with user.overlay.opaque, for overlayfs mounted with
  // "userxattr", instead of trusted.overlay.opaque.
  bool userxattr = false;
  // "sha256:<hex>" that the uncompressed stream must hash to (the layer's diff id from
  // the image config); empty: not checked.
  std::string expected_diff_id;
  // Decompression and hashing run on a second thread and hand the tar stream over
  // through a Pipe of this many bytes, so that they overlap with writing files. 0 does
  // all of it on the calling thread.
  size_t pipeline_bytes = 4 << 20;
};

// A hard link whose target is not in the layer: FinishLayer copies the target from a
// parent layer to `path`.
struct DeferredHardlink {
  std::string path;    // the link, relative to the layer root, cleaned
  std::string target;  // the file it links to, relative to the root, cleaned
  bool operator==(const DeferredHardlink&) const = default;
};

struct UnpackResult {
  std::string diff_id;              // "sha256:<hex>" of the uncompressed tar stream
  uint64_t compressed_bytes = 0;    // bytes read from the blob
  uint64_t uncompressed_bytes = 0;  // bytes of the tar stream (diff_id's input)
  uint64_t entries = 0;             // archive members, whiteouts included
  // Directories created because entries below them had no entry of their own, sorted
  // (parents before children), relative to the layer root.
  std::vector<std::string> implicit_dirs;
  // Sorted by path.
  std::vector<DeferredHardlink> deferred_hardlinks;
};

// Reads the layer blob `layer` (gzip, zstd or plain tar) to its end and applies it to
// the existing directory `dest_dir`, which should be empty (an entry that finds
// something at its path replaces it). Returns what FinishLayer needs and the layer's
// diff id. Errors name the entry; see above for what is refused. `layer` is read from
// a second thread when options.pipeline_bytes > 0 (never by two threads at once).
// Thread-safe: any number of layers may be unpacked at once into different directories.
Result<UnpackResult> UnpackLayer(ByteSource& layer, const std::string& dest_dir,
                                 const UnpackOptions& options = {});

// Settles what UnpackLayer left open, given the parent layers' directories,
// `lower_dirs`, nearest parent first:
//   - each implicit directory takes owner, mode, xattrs (overlay ones excepted) and
//     times from the same path in the nearest lower that has something at that path,
//     if that is a directory; otherwise (nothing, or a file or whiteout hides it) it
//     stays 0755 root:root;
//   - each deferred hard link becomes a copy (data with holes, owner, mode, xattrs,
//     times) of its target from the nearest lower that has it, as overlayfs copy-up
//     would make it; links of one target in this layer share one copy (hard links to
//     each other). NotFound when no lower has the target (or a nearer lower has a
//     whiteout there).
// Paths in the lowers are resolved without following symlinks (a lower whose path to
// the entry goes through a symlink hides the entry: overlayfs would not find it
// there either). Opaque directories in the lowers are not taken into account. The
// parent directory times of the copies are preserved.
Status FinishLayer(const std::string& dest_dir, const std::vector<std::string>& lower_dirs,
                   const UnpackResult& result);

}  // namespace strata::transfer
