#include "tests/lazy/stargz_builder.h"

#include <zlib.h>
#include <zstd.h>

#include <cstdio>
#include <ctime>
#include <stdexcept>

#include "core/digest.h"
#include "tests/transfer/tar_builder.h"

namespace strata::lazy::stargz::testing {

namespace {

using Json = nlohmann::json;
using transfer::testing::TarBuilder;
using transfer::testing::TarHeader;

std::string Base64(std::string_view data) {
  static const char kTable[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  std::string out;
  size_t i = 0;
  for (; i + 2 < data.size(); i += 3) {
    uint32_t v = static_cast<unsigned char>(data[i]) << 16 |
                 static_cast<unsigned char>(data[i + 1]) << 8 |
                 static_cast<unsigned char>(data[i + 2]);
    for (int s = 18; s >= 0; s -= 6) out += kTable[(v >> s) & 63];
  }
  if (i + 1 == data.size()) {
    uint32_t v = static_cast<unsigned char>(data[i]) << 16;
    out += kTable[(v >> 18) & 63];
    out += kTable[(v >> 12) & 63];
    out += "==";
  } else if (i + 2 == data.size()) {
    uint32_t v = static_cast<unsigned char>(data[i]) << 16 | static_cast<unsigned char>(data[i + 1])
                                                                 << 8;
    out += kTable[(v >> 18) & 63];
    out += kTable[(v >> 12) & 63];
    out += kTable[(v >> 6) & 63];
    out += '=';
  }
  return out;
}

std::string Rfc3339(int64_t seconds) {
  time_t t = static_cast<time_t>(seconds);
  tm utc{};
  gmtime_r(&t, &utc);
  char text[32];
  std::strftime(text, sizeof text, "%Y-%m-%dT%H:%M:%SZ", &utc);
  return text;
}

void PutLe32(std::string* out, uint32_t v) {
  for (int i = 0; i < 4; i++) out->push_back(static_cast<char>(v >> (8 * i)));
}

void PutLe64(std::string* out, uint64_t v) {
  for (int i = 0; i < 8; i++) out->push_back(static_cast<char>(v >> (8 * i)));
}

std::string SkippableFrame(std::string_view payload) {
  std::string out("\x50\x2a\x4d\x18", 4);
  PutLe32(&out, static_cast<uint32_t>(payload.size()));
  out += payload;
  return out;
}

// An empty gzip member whose header has only FEXTRA and `extra` (the stargz footer).
std::string GzipFooter(std::string_view extra) {
  std::string out("\x1f\x8b\x08\x04\x00\x00\x00\x00\x00\xff", 10);
  out.push_back(static_cast<char>(extra.size() & 0xff));
  out.push_back(static_cast<char>(extra.size() >> 8));
  out += extra;
  out += std::string("\x01\x00\x00\xff\xff", 5);  // final stored block, empty
  out += std::string(8, '\0');                    // CRC-32 and length of nothing
  return out;
}

std::string Hex16(uint64_t v) {
  char text[17];
  std::snprintf(text, sizeof text, "%016llx", static_cast<unsigned long long>(v));
  return text;
}

// The layer being written: a tar stream cut into compressed members.
class Writer {
 public:
  explicit Writer(const BuildOptions& options) : options_(options) {}

  void AddEntry(const LayerEntry& e) {
    std::vector<std::pair<std::string, std::string>> pax;
    for (const auto& [name, value] : e.xattrs) pax.emplace_back("SCHILY.xattr." + name, value);
    if (e.name.size() > 100) pax.emplace_back("path", e.name);
    if (e.link.size() > 100) pax.emplace_back("linkpath", e.link);
    TarBuilder header;
    if (!pax.empty()) header.Pax(pax);
    TarHeader h;
    h.name = e.name.substr(0, 100);
    h.typeflag = e.typeflag;
    h.mode = e.mode;
    h.uid = e.uid;
    h.gid = e.gid;
    h.mtime = e.mtime;
    h.linkname = e.link.substr(0, 100);
    h.dev_major = e.dev_major;
    h.dev_minor = e.dev_minor;
    h.size = e.typeflag == '0' ? static_cast<int64_t>(e.data.size()) : 0;
    header.Header(h);
    Append(header.str());

    Json entry = {{"name", e.name}};
    switch (e.typeflag) {
      case '0':
        entry["type"] = "reg";
        break;
      case '1':
        entry["type"] = "hardlink";
        break;
      case '2':
        entry["type"] = "symlink";
        break;
      case '3':
        entry["type"] = "char";
        break;
      case '4':
        entry["type"] = "block";
        break;
      case '5':
        entry["type"] = "dir";
        break;
      case '6':
        entry["type"] = "fifo";
        break;
      default:
        throw std::invalid_argument("unsupported typeflag");
    }
    if (e.mode != 0) entry["mode"] = e.mode;
    if (e.uid != 0) entry["uid"] = e.uid;
    if (e.gid != 0) entry["gid"] = e.gid;
    if (e.mtime != 0) entry["modtime"] = Rfc3339(e.mtime);
    if (!e.link.empty()) entry["linkName"] = e.link;
    if (e.dev_major != 0) entry["devMajor"] = e.dev_major;
    if (e.dev_minor != 0) entry["devMinor"] = e.dev_minor;
    if (!e.xattrs.empty()) {
      Json xattrs = Json::object();
      for (const auto& [name, value] : e.xattrs) xattrs[name] = Base64(value);
      entry["xattrs"] = xattrs;
    }
    if (e.typeflag != '0') {
      toc_.push_back(entry);
      return;
    }
    entry["size"] = e.data.size();
    entry["digest"] = Sha256Digest(e.data);
    for (size_t off = 0; off < e.data.size(); off += options_.chunk_size) {
      std::string_view chunk = std::string_view(e.data).substr(off, options_.chunk_size);
      Json c = off == 0 ? entry : Json{{"name", e.name}, {"type", "chunk"}};
      uint64_t inner = 0;
      if (e.data.size() < options_.min_chunk_size) {
        inner = member_.size();
      } else {
        Flush();
      }
      uint64_t offset = member_.empty() ? blob_.size() : member_start_;
      c["offset"] = offset;
      if (inner != 0) c["innerOffset"] = inner;
      if (off != 0) c["chunkOffset"] = off;
      // Like estargz: chunkSize on every full chunk; a short last chunk "runs to the end".
      if (chunk.size() == options_.chunk_size) c["chunkSize"] = chunk.size();
      c["chunkDigest"] = Sha256Digest(chunk);
      Append(chunk);
      if (options_.end_offsets) {
        // Only exact when each chunk has its own member; tests use it that way.
        end_offset_fixups_.push_back(toc_.size());
      }
      if (e.name == ".prefetch.landmark") landmark_offset_ = offset;
      toc_.push_back(c);
    }
    if (e.data.empty()) toc_.push_back(entry);
    Append(std::string((512 - e.data.size() % 512) % 512, '\0'));
  }

  BuiltLayer Finish() {
    Append(std::string(1024, '\0'));
    Flush();
    BuiltLayer out;
    out.tar = tar_;
    out.landmark_offset = landmark_offset_;
    // endOffset: where the next member starts.
    for (size_t i : end_offset_fixups_) {
      uint64_t offset = toc_[i]["offset"].get<uint64_t>();
      toc_[i]["endOffset"] = NextMemberAfter(offset);
    }
    Json toc = {{"version", 1}, {"entries", toc_}};
    if (options_.edit_toc) options_.edit_toc(toc);
    out.toc_json = toc.dump(1, '\t');
    out.toc_digest = Sha256Digest(out.toc_json);
    const Layout layout = options_.layout;
    if (layout == Layout::kEstargz || layout == Layout::kLegacyStargz) {
      out.toc_offset = blob_.size();
      TarBuilder toc_tar;
      TarHeader h;
      h.name = "stargz.index.json";
      toc_tar.Entry(h, out.toc_json).End();
      std::string compressed = Gzip(toc_tar.str());
      out.compressed_toc_digest = Sha256Digest(compressed);
      blob_ += compressed;
      blob_ += layout == Layout::kEstargz
                   ? GzipFooter(std::string("SG\x16\x00", 4) + Hex16(out.toc_offset) + "STARGZ")
                   : GzipFooter(Hex16(out.toc_offset) + "STARGZ");
    } else {
      std::string compressed = Zstd(out.toc_json);
      out.compressed_toc_digest = Sha256Digest(compressed);
      out.toc_offset = blob_.size() + 8;
      blob_ += SkippableFrame(compressed);
      std::string payload;
      PutLe64(&payload, out.toc_offset);
      PutLe64(&payload, compressed.size());
      PutLe64(&payload, out.toc_json.size());
      PutLe64(&payload, 1);
      if (layout == Layout::kZstdChunked) {
        payload += "GnUlInUx";
      } else {
        std::string tar_split = Zstd("{\"type\":1}\n");
        uint64_t tar_split_offset = blob_.size() + 8;
        blob_ += SkippableFrame(tar_split);
        PutLe64(&payload, tar_split_offset);
        PutLe64(&payload, tar_split.size());
        PutLe64(&payload, 11);
        payload += "GNUlInUx";
      }
      blob_ += SkippableFrame(payload);
    }
    out.blob = std::move(blob_);
    return out;
  }

 private:
  void Append(std::string_view bytes) {
    if (bytes.empty()) return;
    if (member_.empty()) member_start_ = blob_.size();
    member_ += bytes;
    tar_ += bytes;
  }

  void Flush() {
    if (member_.empty()) return;
    bool zstd =
        options_.layout == Layout::kZstdChunked || options_.layout == Layout::kZstdChunkedStorage;
    member_starts_.push_back(blob_.size());
    blob_ += zstd ? Zstd(member_) : Gzip(member_);
    member_.clear();
  }

  uint64_t NextMemberAfter(uint64_t offset) const {
    for (uint64_t start : member_starts_) {
      if (start > offset) return start;
    }
    return blob_.size();
  }

  const BuildOptions& options_;
  std::string blob_;
  std::string tar_;
  std::string member_;  // uncompressed bytes of the member being written
  uint64_t member_start_ = 0;
  std::vector<uint64_t> member_starts_;
  std::vector<Json> toc_;
  std::vector<size_t> end_offset_fixups_;
  uint64_t landmark_offset_ = 0;
};

}  // namespace

LayerEntry File(std::string name, std::string data, uint32_t mode) {
  LayerEntry e;
  e.name = std::move(name);
  e.data = std::move(data);
  e.mode = mode;
  return e;
}

LayerEntry Dir(std::string name, uint32_t mode) {
  LayerEntry e;
  e.name = std::move(name);
  e.typeflag = '5';
  e.mode = mode;
  return e;
}

LayerEntry Symlink(std::string name, std::string target) {
  LayerEntry e;
  e.name = std::move(name);
  e.typeflag = '2';
  e.link = std::move(target);
  e.mode = 0777;
  return e;
}

LayerEntry Hardlink(std::string name, std::string target) {
  LayerEntry e;
  e.name = std::move(name);
  e.typeflag = '1';
  e.link = std::move(target);
  return e;
}

LayerEntry Device(std::string name, char typeflag, uint32_t major, uint32_t minor) {
  LayerEntry e;
  e.name = std::move(name);
  e.typeflag = typeflag;
  e.dev_major = major;
  e.dev_minor = minor;
  e.mode = 0600;
  return e;
}

LayerEntry Fifo(std::string name) {
  LayerEntry e;
  e.name = std::move(name);
  e.typeflag = '6';
  return e;
}

BuiltLayer BuildLayer(const std::vector<LayerEntry>& entries, const BuildOptions& options) {
  Writer writer(options);
  std::vector<LayerEntry> all;
  if (options.no_prefetch_landmark) all.push_back(File(".no.prefetch.landmark", "\x0f"));
  for (size_t i = 0; i <= entries.size(); i++) {
    if (options.prefetch_landmark_after == static_cast<int>(i)) {
      all.push_back(File(".prefetch.landmark", "\x0f"));
    }
    if (i < entries.size()) all.push_back(entries[i]);
  }
  for (const LayerEntry& e : all) writer.AddEntry(e);
  return writer.Finish();
}

std::string Gzip(std::string_view data) {
  z_stream z{};
  if (deflateInit2(&z, 6, Z_DEFLATED, 31, 8, Z_DEFAULT_STRATEGY) != Z_OK) {
    throw std::runtime_error("deflateInit2");
  }
  std::string out(deflateBound(&z, data.size()) + 64, '\0');
  z.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(data.data()));
  z.avail_in = static_cast<uInt>(data.size());
  z.next_out = reinterpret_cast<Bytef*>(out.data());
  z.avail_out = static_cast<uInt>(out.size());
  if (deflate(&z, Z_FINISH) != Z_STREAM_END) throw std::runtime_error("deflate");
  out.resize(z.total_out);
  deflateEnd(&z);
  return out;
}

std::string Zstd(std::string_view data) {
  std::string out(ZSTD_compressBound(data.size()), '\0');
  size_t n = ZSTD_compress(out.data(), out.size(), data.data(), data.size(), 3);
  if (ZSTD_isError(n)) throw std::runtime_error("ZSTD_compress");
  out.resize(n);
  return out;
}

}  // namespace strata::lazy::stargz::testing
