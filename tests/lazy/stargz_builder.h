// Test-only writer of eStargz, legacy stargz and zstd:chunked layer blobs, written from
// the format description (lazy/stargz/footer.h, toc.h), not from any implementation:
// tar entries whose file data starts new gzip members / zstd frames at chunk
// boundaries, the TOC, the footer. Options make the odd and the hostile blobs too.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

namespace strata::lazy::stargz::testing {

// One tar entry of the layer.
struct LayerEntry {
  std::string name;     // as the tar names it ("./a/b", "dir/")
  char typeflag = '0';  // tar type: '0' file, '1' hard link, '2' symlink, '3' char,
                        // '4' block, '5' directory, '6' fifo
  std::string data;     // a regular file's content
  std::string link;     // symlink or hard link target
  uint32_t mode = 0644;
  uint32_t uid = 0;
  uint32_t gid = 0;
  int64_t mtime = 1700000000;
  uint32_t dev_major = 0;
  uint32_t dev_minor = 0;
  std::map<std::string, std::string> xattrs;
};

LayerEntry File(std::string name, std::string data, uint32_t mode = 0644);
LayerEntry Dir(std::string name, uint32_t mode = 0755);
LayerEntry Symlink(std::string name, std::string target);
LayerEntry Hardlink(std::string name, std::string target);
LayerEntry Device(std::string name, char typeflag, uint32_t major, uint32_t minor);
LayerEntry Fifo(std::string name);

enum class Layout {
  kEstargz,             // 51-byte footer
  kLegacyStargz,        // 47-byte footer
  kZstdChunked,         // stargz-snapshotter's 40-byte footer payload
  kZstdChunkedStorage,  // containers/storage's 64-byte footer payload, tar-split frame
};

struct BuildOptions {
  Layout layout = Layout::kEstargz;
  size_t chunk_size = 4 << 20;
  // Regular files smaller than this share the member of the entries before them and
  // are addressed with innerOffset. 0: every file's data starts a new member.
  size_t min_chunk_size = 0;
  // A .prefetch.landmark after this many entries (-1: none).
  int prefetch_landmark_after = -1;
  // A .no.prefetch.landmark as the first entry.
  bool no_prefetch_landmark = false;
  // Writes endOffset on each chunk (as containers/storage does).
  bool end_offsets = false;
  // Changes the TOC before it is written: hostile and broken TOCs.
  std::function<void(nlohmann::json&)> edit_toc;
};

struct BuiltLayer {
  std::string blob;
  std::string tar;  // the uncompressed tar the entries make (landmarks included, no TOC)
  std::string toc_json;
  std::string toc_digest;             // sha256 of toc_json
  std::string compressed_toc_digest;  // sha256 of the compressed TOC bytes
  uint64_t toc_offset = 0;
  uint64_t landmark_offset = 0;  // where .prefetch.landmark's data member starts
};

BuiltLayer BuildLayer(const std::vector<LayerEntry>& entries, const BuildOptions& options = {});

// gzip (one member) and zstd (one frame) of `data`.
std::string Gzip(std::string_view data);
std::string Zstd(std::string_view data);

}  // namespace strata::lazy::stargz::testing
