#include "lazy/stargz/tree.h"

#include <spdlog/spdlog.h>
#include <sys/stat.h>

#include <algorithm>
#include <cstring>
#include <unordered_set>

#include "core/digest.h"
#include "core/quote.h"
#include "transfer/byte_source.h"
#include "transfer/decompress.h"

namespace strata::lazy::stargz {

namespace {

constexpr std::string_view kWhiteoutPrefix = ".wh.";
constexpr std::string_view kWhiteoutMetaPrefix = ".wh..wh.";
constexpr std::string_view kOpaqueMarker = ".wh..wh..opq";
constexpr size_t kFollowUpReadBytes = 1 << 20;

bool StartsWith(std::string_view s, std::string_view prefix) {
  return s.substr(0, prefix.size()) == prefix;
}

// The compressed bytes [offset, end) of a blob as a stream. The first read fetches
// `first_read_bytes` (enough for the chunk in all but pathological cases), later
// ones 1 MiB, so that a chunk normally costs one ReadAt.
class BlobRangeSource : public transfer::ByteSource {
 public:
  BlobRangeSource(BlobReader& blob, uint64_t offset, uint64_t end, uint64_t first_read_bytes)
      : blob_(blob), next_(offset), end_(end), next_read_bytes_(first_read_bytes) {}

  Result<size_t> Read(char* buf, size_t n) override {
    if (pos_ == buffer_.size()) {
      if (next_ >= end_) return size_t{0};
      buffer_.resize(std::min<uint64_t>(end_ - next_, next_read_bytes_));
      RETURN_IF_ERROR(ReadFully(blob_, buffer_.data(), buffer_.size(), next_));
      next_ += buffer_.size();
      pos_ = 0;
      next_read_bytes_ = kFollowUpReadBytes;
    }
    size_t take = std::min(n, buffer_.size() - pos_);
    std::memcpy(buf, buffer_.data() + pos_, take);
    pos_ += take;
    return take;
  }

 private:
  BlobReader& blob_;
  uint64_t next_;
  const uint64_t end_;
  uint64_t next_read_bytes_;
  std::string buffer_;
  size_t pos_ = 0;
};

// Reads exactly `n` decompressed bytes (into `buf`, or dropped when it is null).
Status ReadExactly(transfer::ByteSource& in, char* buf, uint64_t n, const char* what) {
  char scratch[64 * 1024];
  uint64_t have = 0;
  while (have < n) {
    size_t want =
        static_cast<size_t>(std::min<uint64_t>(n - have, buf ? n - have : sizeof scratch));
    ASSIGN_OR_RETURN(size_t got, in.Read(buf ? buf + have : scratch, want));
    if (got == 0) {
      return Status::DataLoss(std::string("compressed data ends ") + what);
    }
    have += got;
  }
  return Status::Ok();
}

}  // namespace

StargzTree::StargzTree(std::shared_ptr<BlobReader> blob, Toc toc, TreeOptions options)
    : blob_(std::move(blob)),
      toc_(std::move(toc)),
      options_(std::move(options)),
      cache_(options_.chunk_cache_bytes) {
  PresentForOverlay();
}

Result<std::unique_ptr<StargzTree>> StargzTree::Open(std::shared_ptr<BlobReader> blob,
                                                     const OpenOptions& options) {
  ASSIGN_OR_RETURN(Toc toc, LoadToc(*blob, options.toc));
  return std::make_unique<StargzTree>(std::move(blob), std::move(toc), options.tree);
}

// Rewrites each directory's children into what overlayfs expects of a lower layer.
void StargzTree::PresentForOverlay() {
  const size_t listed = toc_.inodes.size();
  opaque_.assign(listed, false);
  for (size_t i = 0; i < listed; i++) {
    if (!S_ISDIR(toc_.inodes[i].mode)) continue;
    const fuse::Ino dir = i + 1;
    auto needs_rewrite = [&](const TocDirent& child) {
      return StartsWith(child.name, kWhiteoutPrefix) ||
             (dir == fuse::kRootIno &&
              (child.name == kPrefetchLandmark || child.name == kNoPrefetchLandmark));
    };
    // Most directories have nothing to rewrite, and a Toc's children come sorted.
    if (std::none_of(toc_.inodes[i].children.begin(), toc_.inodes[i].children.end(),
                     needs_rewrite)) {
      continue;
    }
    std::vector<TocDirent> children = std::move(toc_.inodes[i].children);
    std::unordered_set<std::string_view> real_names;
    for (const TocDirent& child : children) {
      if (!StartsWith(child.name, kWhiteoutPrefix)) real_names.insert(child.name);
    }
    std::vector<TocDirent> shown;
    for (TocDirent& child : children) {
      if (dir == fuse::kRootIno &&
          (child.name == kPrefetchLandmark || child.name == kNoPrefetchLandmark)) {
        continue;
      }
      if (child.name == kOpaqueMarker) {
        opaque_[i] = true;
        continue;
      }
      if (StartsWith(child.name, kWhiteoutMetaPrefix)) continue;
      if (!StartsWith(child.name, kWhiteoutPrefix)) {
        shown.push_back(std::move(child));
        continue;
      }
      std::string target = child.name.substr(kWhiteoutPrefix.size());
      if (target.empty() || real_names.count(target)) continue;
      TocInode whiteout;
      whiteout.mode = S_IFCHR;
      whiteout.rdev = 0;
      whiteout.mtime = toc_.inodes[child.ino - 1].mtime;
      toc_.inodes.push_back(std::move(whiteout));
      opaque_.push_back(false);
      shown.push_back(TocDirent{std::move(target), toc_.inodes.size()});
    }
    std::sort(shown.begin(), shown.end(),
              [](const TocDirent& a, const TocDirent& b) { return a.name < b.name; });
    toc_.inodes[i].children = std::move(shown);
  }
}

Result<const TocInode*> StargzTree::Find(fuse::Ino ino) const {
  const TocInode* inode = toc_.inode(ino);
  if (inode == nullptr) return Status::NotFound("no inode " + std::to_string(ino));
  return inode;
}

fuse::Attr StargzTree::AttrOf(fuse::Ino ino, const TocInode& inode) const {
  fuse::Attr attr;
  attr.ino = ino;
  attr.mode = inode.mode;
  attr.nlink = inode.nlink;
  attr.uid = inode.uid;
  attr.gid = inode.gid;
  attr.size = inode.size;
  attr.blocks_512 = S_ISREG(inode.mode) ? (inode.size + 511) / 512 : 0;
  attr.rdev = inode.rdev;
  attr.atime = attr.mtime = attr.ctime = inode.mtime;
  return attr;
}

Result<fuse::Attr> StargzTree::Lookup(fuse::Ino parent, std::string_view name) {
  ASSIGN_OR_RETURN(const TocInode* dir, Find(parent));
  if (!S_ISDIR(dir->mode)) {
    return Status::FailedPrecondition("inode " + std::to_string(parent) + " is not a directory");
  }
  if (name == ".") return AttrOf(parent, *dir);
  if (name == "..") return GetAttr(dir->parent);
  auto it = std::lower_bound(dir->children.begin(), dir->children.end(), name,
                             [](const TocDirent& d, std::string_view n) { return d.name < n; });
  if (it == dir->children.end() || it->name != name) {
    return Status::NotFound(Quote(name) + " not found in directory inode " +
                            std::to_string(parent));
  }
  return AttrOf(it->ino, toc_.inodes[it->ino - 1]);
}

Result<fuse::Attr> StargzTree::GetAttr(fuse::Ino ino) {
  ASSIGN_OR_RETURN(const TocInode* inode, Find(ino));
  return AttrOf(ino, *inode);
}

Status StargzTree::ReadDir(fuse::Ino dir, uint64_t offset,
                           const std::function<bool(const fuse::DirEntry&)>& emit) {
  ASSIGN_OR_RETURN(const TocInode* inode, Find(dir));
  if (!S_ISDIR(inode->mode)) {
    return Status::FailedPrecondition("inode " + std::to_string(dir) + " is not a directory");
  }
  const uint64_t total = inode->children.size() + 2;
  for (uint64_t i = offset; i < total; i++) {
    fuse::DirEntry entry;
    if (i == 0) {
      entry = {".", dir, S_IFDIR, 0};
    } else if (i == 1) {
      entry = {"..", inode->parent, S_IFDIR, 0};
    } else {
      const TocDirent& child = inode->children[i - 2];
      entry = {child.name, child.ino, toc_.inodes[child.ino - 1].mode & S_IFMT, 0};
    }
    entry.next_offset = i + 1;
    if (!emit(entry)) break;
  }
  return Status::Ok();
}

Result<std::string> StargzTree::ReadLink(fuse::Ino ino) {
  ASSIGN_OR_RETURN(const TocInode* inode, Find(ino));
  if (!S_ISLNK(inode->mode)) {
    return Status::InvalidArgument("inode " + std::to_string(ino) + " is not a symlink");
  }
  return inode->symlink_target;
}

Result<size_t> StargzTree::Read(fuse::Ino ino, char* buf, size_t n, uint64_t offset) {
  ASSIGN_OR_RETURN(const TocInode* inode, Find(ino));
  if (S_ISDIR(inode->mode)) {
    return Status::FailedPrecondition("inode " + std::to_string(ino) + " is a directory");
  }
  if (!S_ISREG(inode->mode)) {
    return Status::InvalidArgument("inode " + std::to_string(ino) + " is not a regular file");
  }
  if (offset >= inode->size) return size_t{0};
  n = static_cast<size_t>(std::min<uint64_t>(n, inode->size - offset));
  const std::vector<TocChunk>& chunks = inode->chunks;
  auto it = std::upper_bound(chunks.begin(), chunks.end(), offset,
                             [](uint64_t off, const TocChunk& c) { return off < c.file_offset; });
  size_t index = static_cast<size_t>(it - chunks.begin()) - 1;
  size_t copied = 0;
  while (copied < n) {
    const TocChunk& chunk = chunks[index++];
    const uint64_t within = offset + copied - chunk.file_offset;
    const size_t take = static_cast<size_t>(std::min<uint64_t>(chunk.size - within, n - copied));
    if (chunk.zeros) {
      std::memset(buf + copied, 0, take);
    } else {
      Result<ChunkCache::Data> data = LoadChunk(chunk);
      if (!data.ok()) return ReadError(data.status(), ino, offset + copied);
      std::memcpy(buf + copied, (*data)->data() + within, take);
    }
    copied += take;
  }
  return n;
}

// A failed read must reach the reader as EIO: codes that the FUSE adapter maps to
// other errnos (a removed blob's FailedPrecondition would read as EISDIR) become
// Unavailable.
Status StargzTree::ReadError(const Status& status, fuse::Ino ino, uint64_t offset) {
  Status out =
      status.WithContext("reading inode " + std::to_string(ino) + " at " + std::to_string(offset));
  switch (out.code()) {
    case Code::kDataLoss:
    case Code::kDeadlineExceeded:
    case Code::kUnavailable:
    case Code::kResourceExhausted:
    case Code::kInternal:
      return out;
    default:
      return Status::Unavailable(out.ToString());
  }
}

Result<ChunkCache::Data> StargzTree::LoadChunk(const TocChunk& chunk) {
  return cache_.GetOrLoad(ChunkKey{chunk.blob_offset, chunk.inner_offset, chunk.size},
                          [&] { return FetchVerified(chunk); });
}

Result<ChunkCache::Data> StargzTree::FetchVerified(const TocChunk& chunk) {
  Status last;
  for (int attempt = 0; attempt <= options_.verify_retries; attempt++) {
    Result<std::string> data = FetchChunk(chunk);
    if (data.ok()) {
      std::string got = Sha256Digest(*data);
      if (got == chunk.digest) return std::make_shared<const std::string>(std::move(*data));
      last =
          Status::DataLoss("chunk digest mismatch: got " + got + ", the TOC says " + chunk.digest);
    } else if (data.status().code() == Code::kDataLoss) {
      last = data.status();
    } else {
      return data.status();  // the fetch failed; nothing wrong was read
    }
    last = last.WithContext(
        "blob " + blob_->digest() + " chunk at offset " + std::to_string(chunk.blob_offset) + "+" +
        std::to_string(chunk.inner_offset) + " (" + std::to_string(chunk.size) + " bytes)");
    spdlog::error("stargz: {} (attempt {} of {}); invalidating [{}, {})", last.message(),
                  attempt + 1, options_.verify_retries + 1, chunk.blob_offset, chunk.blob_end);
    blob_->Invalidate(chunk.blob_offset, chunk.blob_end - chunk.blob_offset);
  }
  return last;
}

Result<std::string> StargzTree::FetchChunk(const TocChunk& chunk) {
  const uint64_t needed = chunk.inner_offset + chunk.size;
  // Compressed data is rarely larger than what it holds; allow an eighth and headers.
  const uint64_t first_read = needed + needed / 8 + uint64_t{64} * 1024;
  auto source =
      std::make_unique<BlobRangeSource>(*blob_, chunk.blob_offset, chunk.blob_end, first_read);
  const transfer::Compression compression = toc_.format == BlobFormat::kZstdChunked
                                                ? transfer::Compression::kZstd
                                                : transfer::Compression::kGzip;
  Result<std::unique_ptr<transfer::ByteSource>> decompressed =
      transfer::Decompress(std::move(source), compression);
  if (!decompressed.ok()) {
    if (decompressed.status().code() == Code::kInvalidArgument) {
      return Status::DataLoss(decompressed.status().message());
    }
    return decompressed.status();
  }
  RETURN_IF_ERROR(ReadExactly(**decompressed, nullptr, chunk.inner_offset, "before the chunk"));
  std::string data(static_cast<size_t>(chunk.size), '\0');
  RETURN_IF_ERROR(ReadExactly(**decompressed, data.data(), chunk.size, "inside the chunk"));
  return data;
}

Result<std::string> StargzTree::GetXattr(fuse::Ino ino, std::string_view name) {
  ASSIGN_OR_RETURN(const TocInode* inode, Find(ino));
  if (opaque_[ino - 1] && std::find(options_.opaque_xattrs.begin(), options_.opaque_xattrs.end(),
                                    name) != options_.opaque_xattrs.end()) {
    return std::string("y");
  }
  auto it = inode->xattrs.find(std::string(name));
  if (it == inode->xattrs.end()) {
    return Status::NotFound("inode " + std::to_string(ino) + " has no xattr " + Quote(name));
  }
  return it->second;
}

Result<std::vector<std::string>> StargzTree::ListXattr(fuse::Ino ino) {
  ASSIGN_OR_RETURN(const TocInode* inode, Find(ino));
  std::vector<std::string> names;
  for (const auto& [name, value] : inode->xattrs) names.push_back(name);
  if (opaque_[ino - 1]) {
    names.insert(names.end(), options_.opaque_xattrs.begin(), options_.opaque_xattrs.end());
  }
  return names;
}

fuse::FsStats StargzTree::StatFs() {
  fuse::FsStats stats;
  for (const TocInode& inode : toc_.inodes) {
    if (S_ISREG(inode.mode)) stats.blocks += (inode.size + stats.block_size - 1) / stats.block_size;
  }
  stats.files = toc_.inodes.size();
  return stats;
}

std::vector<registry::ByteRange> StargzTree::PrefetchRanges() const {
  if (toc_.prefetch != PrefetchHint::kLandmark || toc_.prefetch_end == 0) return {};
  return {registry::ByteRange{0, toc_.prefetch_end}};
}

}  // namespace strata::lazy::stargz
