// Writing tar archives: the header blocks that put a TarEntry back into an archive,
// POSIX pax over ustar, so that TarReader (and GNU tar, Go's archive/tar, libarchive)
// read the entry back as it was.
#pragma once

#include <cstddef>
#include <string>

#include "core/status.h"
#include "transfer/tar_format.h"
#include "transfer/tar_reader.h"

namespace strata::transfer {

// The end-of-archive marker: this many zero bytes (two blocks).
inline constexpr size_t kTarEndOfArchiveBytes = 2 * tar::kBlockSize;

// Returns the blocks that precede `entry`'s content in an archive: one ustar header,
// preceded by a pax extended header ('x') when the entry has what ustar cannot hold:
//   path or link target over 100 bytes ("path", "linkpath"); uname or gname of 32
//   bytes or more; uid or gid over 07777777; size over 077777777777; an mtime before
//   1970, past 077777777777 or with nanoseconds ("mtime" with a fraction); an atime
//   ("atime"); xattrs ("SCHILY.xattr.<name>", the value's bytes as they are).
// Device numbers over 07777777 are written in GNU base-256.
//
// The typeflag follows entry.type ('0' for all regular files: a sparse entry is
// written as an ordinary file, the caller writing its whole content, holes as
// zeros). The size field is entry.size for regular files and 0 for every other type.
// Path and link target are written as they are: cleaning them is the caller's
// business (directories conventionally end in '/'). The caller writes the content
// after the header and pads it to whole blocks (tar::PaddingOf).
//
// Errors, all InvalidArgument: an entry of type kOther; an empty path; a path or link
// target holding a NUL byte; a negative size, uid or gid; an xattr name that is empty
// or holds '=' or a NUL byte; a pax header over tar::kMaxPaxHeaderBytes.
Result<std::string> EncodeTarHeader(const TarEntry& entry);

}  // namespace strata::transfer
