// ConvertLayerToEstargz: rewrites an uncompressed layer tar as an eStargz blob, the
// layout stargz-snapshotter's estargz package (and ctr-remote) writes and that
// LoadToc / StargzTree read lazily. The blob is still an ordinary tar+gzip layer:
// gunzip gives a tar, so runtimes without lazy pulling use it as any other layer.
//
// The blob, front to back (every "member" is a gzip member, see gzip_members.h):
//
//   landmark  With no prioritized files, first of all a regular file
//             ".no.prefetch.landmark" (one byte, 0x0f): "nothing to prefetch".
//   entries   The input's entries, each as tar header blocks (pax over ustar, see
//             transfer/tar_writer.h) followed, for a regular file, by its content.
//             Headers go into the member that is open; the content is cut into
//             pieces of chunk_size bytes and every piece starts a new member, so a
//             reader that fetches one piece's member can decompress it alone.
//             With prioritized files, the entries that make them up come first,
//             then a regular file ".prefetch.landmark" (one byte, 0x0f) whose
//             member starts where "prefetch this much" ends, then the rest.
//   TOC       One member: a tar entry "stargz.index.json" holding the TOC JSON
//             (toc.h describes its fields), then the tar end-of-archive blocks.
//   footer    The 51-byte eStargz footer (footer.h) with the TOC member's offset.
//
// The TOC lists, in blob order, an entry per tar entry: "dir", "reg", "symlink"
// (linkName), "hardlink" (linkName: the name it links to), "char", "block"
// (devMajor, devMinor), "fifo"; with mode, uid, gid, userName, groupName, modtime
// (RFC 3339, seconds), xattrs (base64 values). A regular file's entry has its size
// and digest (sha256 of the whole content) and describes its first piece; each
// further piece has an entry of type "chunk". Every piece records offset (the start
// of its member), chunkOffset, chunkSize and chunkDigest (sha256 of the piece).
//
// Names are cleaned as the unpacker cleans them (transfer::CleanArchivePath):
// "./a//b/" is written "a/b" ("a/b/" in the tar header of a directory, "./" for the
// root), and names that are absolute or climb above the root are refused. Where the
// input names one path twice the later entry wins, as when the tar is unpacked:
// the earlier one's bytes stay in the blob but the TOC lists only the later one (and,
// when a directory is replaced by something else, nothing that was under it).
// Whiteouts (".wh.NAME", ".wh..wh..opq") are ordinary entries here.
//
// Left out of the blob (and counted in EstargzResult::dropped_entries): entries named
// "stargz.index.json", ".prefetch.landmark" or ".no.prefetch.landmark", or under
// them (a layer converted a second time), and a root entry that is not a directory.
// Sparse files are written as ordinary files, their holes as zeros. Other entry types
// (kOther) are refused.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "core/status.h"
#include "lazy/stargz/gzip_members.h"
#include "transfer/byte_source.h"

namespace strata::lazy::stargz {

// The layer descriptor annotation with EstargzResult::uncompressed_size (decimal);
// the TOC digest goes into kTocDigestAnnotation (toc.h).
inline constexpr std::string_view kUncompressedSizeAnnotation =
    "io.containers.estargz.uncompressed-size";

struct EstargzWriterOptions {
  // Bytes of content per piece (ctr-remote's default). At least 1 and at most 64 MiB
  // (TocLimits::max_chunk_bytes: readers refuse larger pieces).
  uint64_t chunk_size = 4 << 20;
  // zlib's compression level: -1 (zlib's default, 6) or 0 to 9.
  int gzip_level = -1;
  // Paths in the layer ("etc/passwd", "/bin/sh" and "./bin/sh" alike) whose entries go
  // first, followed by ".prefetch.landmark": what a lazy puller fetches before anyone
  // asks. Each brings along the directories above it and, for a hard link, what it
  // links to, where the layer has entries for them. The entries keep the order the
  // input has them in (directories before their contents, as the input had it).
  // Paths the layer does not have are reported in missing_prioritized_files.
  // Empty: ".no.prefetch.landmark" goes first instead.
  std::vector<std::string> prioritized_files;
  // Where the input is spooled (an unlinked temporary file) when prioritized_files is
  // set, as the prioritized entries may come last in the input. "": $TMPDIR, else
  // /var/tmp. Needs room for the whole uncompressed layer.
  std::string spool_dir;
};

struct EstargzResult {
  std::string toc_digest;  // "sha256:<hex>" of the TOC JSON: kTocDigestAnnotation
  // "sha256:<hex>" of the blob decompressed (the tar with the TOC entry in it): the
  // layer's diff id for the image config's rootfs.diff_ids.
  std::string diff_id;
  uint64_t uncompressed_size = 0;  // bytes of that tar: kUncompressedSizeAnnotation
  std::string blob_digest;         // "sha256:<hex>" of the blob
  uint64_t blob_size = 0;
  uint64_t toc_offset = 0;  // where the TOC member starts in the blob
  // prioritized_files entries (as given) that name nothing in the layer.
  std::vector<std::string> missing_prioritized_files;
  uint64_t dropped_entries = 0;  // input entries left out (see the top of this file)
};

// Reads the uncompressed layer tar `input` (to its end-of-archive marker) and hands
// the eStargz blob to `sink`, front to back. Memory stays bounded by the TOC (the
// JSON of each TOC entry and an index of names) plus about a megabyte of buffers,
// whatever the layer's size; with prioritized files the input is spooled to disk.
//
// Errors (on error the sink has been given part of a blob, which the caller drops):
//   InvalidArgument for options out of range, and for input the unpacker or a TOC
//     reader would refuse: names that are absolute or climb above the root, name
//     components over 255 bytes, names, link targets or xattr names that are not
//     UTF-8 (JSON cannot carry them), xattr names over 255 bytes or values over
//     64 KiB, kOther entries, uid or gid out of range, a symlink without a target,
//     an entry under a non-directory, a hard link to a name the layer lacks, to a
//     directory, to the root or in a cycle, and a name replaced after an earlier
//     hard link pointed to it (the TOC could not tell the two apart); the message
//     names the entry;
//   ResourceExhausted when the TOC would exceed what readers accept (TocLimits: 2^22
//     entries, 128 MiB of JSON), or the spool's file system is full;
//   the TarReader's errors for a malformed or truncated tar, and `input`'s errors;
//   `sink`'s errors as it returns them; errno-derived errors for the spool file.
//
// Thread-safe in the sense that independent calls may run at once.
Result<EstargzResult> ConvertLayerToEstargz(transfer::ByteSource& input,
                                            const registry::BlobSink& sink,
                                            const EstargzWriterOptions& options = {});

}  // namespace strata::lazy::stargz
