#include "lazy/chunk_store.h"

#include <fcntl.h>
#include <linux/falloc.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "core/digest.h"
#include "core/fs.h"

namespace strata::lazy {
namespace {

constexpr char kMagic[8] = {'S', 'L', 'Z', 'B', 'M', 'A', 'P', '1'};
constexpr size_t kHeaderBytes = 8 + 8 + 8 + 64;
constexpr size_t kDigestHexBytes = 64;

void PutU64(std::string* out, uint64_t v) {
  for (int i = 0; i < 8; i++) out->push_back(static_cast<char>((v >> (8 * i)) & 0xff));
}

uint64_t GetU64(const std::string& in, size_t at) {
  uint64_t v = 0;
  for (int i = 0; i < 8; i++)
    v |= static_cast<uint64_t>(static_cast<uint8_t>(in[at + i])) << (8 * i);
  return v;
}

// The 64 hex digits of the SHA-256 of `bits`.
std::string BitsChecksum(const std::vector<uint8_t>& bits) {
  std::string digest =
      Sha256Digest(std::string_view(reinterpret_cast<const char*>(bits.data()), bits.size()));
  return digest.substr(digest.size() - kDigestHexBytes);
}

Status PwriteAll(int fd, const char* data, size_t n, uint64_t offset, const std::string& what) {
  while (n > 0) {
    ssize_t w = ::pwrite(fd, data, n, static_cast<off_t>(offset));
    if (w < 0) {
      if (errno == EINTR) continue;
      return Status::FromErrno(errno, "write " + what);
    }
    data += w;
    n -= static_cast<size_t>(w);
    offset += static_cast<uint64_t>(w);
  }
  return Status::Ok();
}

}  // namespace

ChunkStore::ChunkStore(std::string dir, uint64_t chunk_size, uint64_t blob_size)
    : dir_(std::move(dir)), chunk_size_(chunk_size), blob_size_(blob_size) {}

ChunkStore::~ChunkStore() {
  if (data_fd_ >= 0) ::close(data_fd_);
  if (bitmap_fd_ >= 0) ::close(bitmap_fd_);
}

Result<std::unique_ptr<ChunkStore>> ChunkStore::Open(const std::string& dir, uint64_t chunk_size,
                                                     std::optional<uint64_t> blob_size) {
  std::unique_ptr<ChunkStore> store(new ChunkStore(dir, chunk_size, blob_size.value_or(0)));
  RETURN_IF_ERROR(store->OpenFiles(blob_size.has_value()));
  return store;
}

Status ChunkStore::OpenFiles(bool blob_size_known) {
  const std::string bitmap_path = dir_ + "/bitmap";
  const std::string data_path = dir_ + "/data";
  std::string bitmap_bytes;
  if (fs::Exists(bitmap_path)) {
    ASSIGN_OR_RETURN(bitmap_bytes, fs::ReadFile(bitmap_path));
  }
  if (!blob_size_known) {
    if (bitmap_bytes.size() < kHeaderBytes || std::memcmp(bitmap_bytes.data(), kMagic, 8) != 0) {
      return Status::NotFound("no valid chunk bitmap in " + dir_);
    }
    blob_size_ = GetU64(bitmap_bytes, 8);
  }
  chunk_count_ = (blob_size_ + chunk_size_ - 1) / chunk_size_;
  bits_.assign((chunk_count_ + 7) / 8, 0);

  RETURN_IF_ERROR(fs::MakeDirs(dir_, 0700));
  data_fd_ = ::open(data_path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600);
  if (data_fd_ < 0) return Status::FromErrno(errno, "open " + data_path);
  struct stat st;
  if (::fstat(data_fd_, &st) != 0) return Status::FromErrno(errno, "stat " + data_path);
  // A data file of another size did not come from this bitmap: trust neither.
  bool data_matches = static_cast<uint64_t>(st.st_size) == blob_size_;
  if (!data_matches && ::ftruncate(data_fd_, static_cast<off_t>(blob_size_)) != 0) {
    return Status::FromErrno(errno, "truncate " + data_path);
  }
  bool loaded = data_matches && LoadBitmap(bitmap_bytes);
  if (!loaded && !blob_size_known) {
    return Status::NotFound("chunk cache in " + dir_ + " is damaged");
  }

  bitmap_fd_ = ::open(bitmap_path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600);
  if (bitmap_fd_ < 0) return Status::FromErrno(errno, "open " + bitmap_path);
  if (!loaded) {
    // Start clean: an empty, valid bitmap of the right length, durable with its folder.
    if (::ftruncate(bitmap_fd_, 0) != 0) return Status::FromErrno(errno, "truncate " + bitmap_path);
    std::lock_guard<std::mutex> persist(persist_mu_);
    RETURN_IF_ERROR(WriteBitmapLocked(false, true));
    RETURN_IF_ERROR(fs::SyncDir(dir_));
  }
  return Status::Ok();
}

bool ChunkStore::LoadBitmap(const std::string& bytes) {
  if (bytes.size() != kHeaderBytes + bits_.size()) return false;
  if (std::memcmp(bytes.data(), kMagic, 8) != 0) return false;
  if (GetU64(bytes, 8) != blob_size_ || GetU64(bytes, 16) != chunk_size_) return false;
  std::vector<uint8_t> bits(bytes.begin() + kHeaderBytes, bytes.end());
  if (bytes.compare(24, kDigestHexBytes, BitsChecksum(bits)) != 0) return false;
  // Bits past the last chunk must be clear.
  if (chunk_count_ % 8 != 0 && !bits.empty() && (bits.back() >> (chunk_count_ % 8)) != 0) {
    return false;
  }
  bits_ = std::move(bits);
  uint64_t cached = 0;
  for (uint64_t c = 0; c < chunk_count_; c++) {
    if (bits_[c / 8] & (1u << (c % 8))) cached += ChunkLength(c);
  }
  cached_bytes_ = cached;
  return true;
}

std::string ChunkStore::EncodeBitmap(const std::vector<uint8_t>& bits) const {
  std::string out(kMagic, sizeof(kMagic));
  PutU64(&out, blob_size_);
  PutU64(&out, chunk_size_);
  out += BitsChecksum(bits);
  out.append(reinterpret_cast<const char*>(bits.data()), bits.size());
  return out;
}

uint64_t ChunkStore::ChunkLength(uint64_t chunk) const {
  uint64_t start = chunk * chunk_size_;
  return std::min(chunk_size_, blob_size_ - start);
}

bool ChunkStore::IsPresent(uint64_t chunk) const {
  std::lock_guard<std::mutex> lock(mu_);
  return chunk < chunk_count_ && (bits_[chunk / 8] & (1u << (chunk % 8)));
}

std::vector<uint64_t> ChunkStore::PresentChunks() const {
  std::vector<uint64_t> out;
  std::lock_guard<std::mutex> lock(mu_);
  for (uint64_t c = 0; c < chunk_count_; c++) {
    if (bits_[c / 8] & (1u << (c % 8))) out.push_back(c);
  }
  return out;
}

Status ChunkStore::Write(uint64_t offset, std::string_view bytes) {
  std::shared_lock<std::shared_mutex> data(data_mu_);
  if (removed_) return Status::FailedPrecondition("chunk cache " + dir_ + " was removed");
  RETURN_IF_ERROR(PwriteAll(data_fd_, bytes.data(), bytes.size(), offset, dir_ + "/data"));
  std::lock_guard<std::mutex> lock(mu_);
  data_dirty_ = true;
  return Status::Ok();
}

uint64_t ChunkStore::MarkPresent(uint64_t first, uint64_t count) {
  std::lock_guard<std::mutex> lock(mu_);
  uint64_t added = 0;
  for (uint64_t c = first; c < first + count && c < chunk_count_; c++) {
    uint8_t mask = static_cast<uint8_t>(1u << (c % 8));
    if (!(bits_[c / 8] & mask)) {
      bits_[c / 8] |= mask;
      added += ChunkLength(c);
    }
  }
  if (added > 0) {
    generation_++;
    cached_bytes_ += added;
  }
  return added;
}

Result<bool> ChunkStore::ReadIfPresent(uint64_t chunk, uint64_t offset, size_t n, char* out) {
  // Holding data_mu_ shared keeps Clear from punching the chunk between the check and
  // the read.
  std::shared_lock<std::shared_mutex> data(data_mu_);
  if (removed_ || !IsPresent(chunk)) return false;
  uint64_t position = chunk * chunk_size_ + offset;
  while (n > 0) {
    ssize_t r = ::pread(data_fd_, out, n, static_cast<off_t>(position));
    if (r < 0) {
      if (errno == EINTR) continue;
      return Status::FromErrno(errno, "read " + dir_ + "/data");
    }
    if (r == 0) return Status::DataLoss("chunk cache " + dir_ + "/data is shorter than the blob");
    out += r;
    n -= static_cast<size_t>(r);
    position += static_cast<uint64_t>(r);
  }
  return true;
}

Status ChunkStore::Persist() {
  std::lock_guard<std::mutex> persist(persist_mu_);
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (generation_ == persisted_generation_) return Status::Ok();  // a racing call wrote it
  }
  return WriteBitmapLocked(true, false);
}

Status ChunkStore::WriteBitmapLocked(bool sync_data, bool sync_bitmap) {
  std::vector<uint8_t> bits;
  uint64_t generation;
  bool data_dirty;
  {
    std::lock_guard<std::mutex> lock(mu_);
    bits = bits_;
    generation = generation_;
    data_dirty = data_dirty_;
    data_dirty_ = false;
  }
  // Every bit in `bits` was set after its bytes were written, so syncing now covers
  // them all before the bitmap names them.
  if (sync_data && data_dirty && ::fdatasync(data_fd_) != 0) {
    std::lock_guard<std::mutex> lock(mu_);
    data_dirty_ = true;
    return Status::FromErrno(errno, "fdatasync " + dir_ + "/data");
  }
  std::string encoded = EncodeBitmap(bits);
  RETURN_IF_ERROR(PwriteAll(bitmap_fd_, encoded.data(), encoded.size(), 0, dir_ + "/bitmap"));
  if (sync_bitmap && ::fdatasync(bitmap_fd_) != 0) {
    return Status::FromErrno(errno, "fdatasync " + dir_ + "/bitmap");
  }
  persisted_generation_ = generation;
  return Status::Ok();
}

Status ChunkStore::Clear(const std::vector<uint64_t>& chunks, bool punch_holes,
                         uint64_t* cleared_bytes) {
  *cleared_bytes = 0;
  std::unique_lock<std::shared_mutex> data(data_mu_);
  if (removed_) return Status::Ok();
  std::vector<uint64_t> cleared;
  uint64_t freed = 0;
  {
    std::lock_guard<std::mutex> lock(mu_);
    for (uint64_t c : chunks) {
      if (c >= chunk_count_) continue;
      uint8_t mask = static_cast<uint8_t>(1u << (c % 8));
      if (bits_[c / 8] & mask) {
        bits_[c / 8] &= static_cast<uint8_t>(~mask);
        freed += ChunkLength(c);
        cleared.push_back(c);
      }
    }
    if (cleared.empty()) return Status::Ok();
    generation_++;
    cached_bytes_ -= freed;
    *cleared_bytes = freed;
  }
  {
    // The cleared bitmap must be on disk before the bytes go. It also carries bits set
    // since the last Persist, so their data is synced first, as in Persist.
    std::lock_guard<std::mutex> persist(persist_mu_);
    RETURN_IF_ERROR(WriteBitmapLocked(true, true));
  }
  if (punch_holes) {
    for (uint64_t c : cleared) {
      if (::fallocate(data_fd_, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
                      static_cast<off_t>(c * chunk_size_),
                      static_cast<off_t>(ChunkLength(c))) != 0) {
        return Status::FromErrno(errno, "punch hole in " + dir_ + "/data");
      }
    }
  }
  return Status::Ok();
}

Status ChunkStore::Remove(uint64_t* dropped_bytes) {
  *dropped_bytes = 0;
  std::unique_lock<std::shared_mutex> data(data_mu_);
  if (removed_) return Status::Ok();
  removed_ = true;
  {
    std::lock_guard<std::mutex> lock(mu_);
    std::fill(bits_.begin(), bits_.end(), 0);
    generation_++;
    *dropped_bytes = cached_bytes_.exchange(0);
  }
  return fs::RemoveAll(dir_);
}

}  // namespace strata::lazy
