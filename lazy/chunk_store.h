// lazy::ChunkStore — the disk cache of one blob, in one folder:
//
//   data     a sparse file of the blob's size; every cached byte at its blob offset
//   bitmap   which chunks of `data` hold the blob's bytes (header below, then one bit
//            per chunk)
//
// Crash safety comes from ordering, not from fsyncing every write:
//   - set: data is written, then fdatasync'ed, then the bitmap is written (Persist), so
//     a bit on disk always describes durable bytes. The bitmap write itself is not
//     synced: a crash may lose the newest bits and their chunks are fetched again.
//   - clear: the bitmap without the bits is written and fdatasync'ed before the bytes
//     are removed (hole punched), so a bit never outlives its bytes. Every bitmap write
//     follows an fdatasync of data written since the last one, so bits it carries for
//     other chunks are safe too.
//   - the bitmap carries the blob size, the chunk size and a SHA-256 of its bits; a
//     torn, truncated or corrupt bitmap, or a data file of the wrong size, loads as
//     empty.
//
// Bitmap file layout (integers little-endian):
//   0   8 bytes  magic "SLZBMAP1"
//   8   u64      blob size
//   16  u64      chunk size
//   24  64 bytes SHA-256 of the bit bytes, lowercase hex
//   88  ceil(chunks / 8) bytes; chunk c is bit (c % 8) of byte c / 8
//
// Thread safety: all methods may be called concurrently. Reads and writes of data run
// in parallel; Evict excludes them for the moment it punches holes.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <shared_mutex>
#include <string>
#include <string_view>
#include <vector>

#include "core/status.h"

namespace strata::lazy {

class ChunkStore {
 public:
  // Opens (creating when missing) the cache in folder `dir`. With `blob_size`, a cache
  // of another size is reset; without it, the size comes from the bitmap and NotFound
  // is returned when there is no valid bitmap to take it from. A damaged cache is reset
  // (the chunks are simply absent).
  static Result<std::unique_ptr<ChunkStore>> Open(const std::string& dir, uint64_t chunk_size,
                                                  std::optional<uint64_t> blob_size);
  ~ChunkStore();
  ChunkStore(const ChunkStore&) = delete;
  ChunkStore& operator=(const ChunkStore&) = delete;

  uint64_t blob_size() const { return blob_size_; }
  uint64_t chunk_size() const { return chunk_size_; }
  uint64_t chunk_count() const { return chunk_count_; }
  // Bytes of chunk `chunk` (the last chunk may be short).
  uint64_t ChunkLength(uint64_t chunk) const;
  const std::string& dir() const { return dir_; }

  bool IsPresent(uint64_t chunk) const;
  // The present chunks, ascending.
  std::vector<uint64_t> PresentChunks() const;
  uint64_t CachedBytes() const { return cached_bytes_.load(); }

  // Writes blob bytes at `offset` (chunk-aligned; whole chunks, or up to the blob's end)
  // into the data file. Does not mark them present. FailedPrecondition after Remove.
  Status Write(uint64_t offset, std::string_view bytes);
  // Marks `count` chunks from `first` present in memory (their bytes were written) and
  // returns how many bytes that added. Persist makes it durable.
  uint64_t MarkPresent(uint64_t first, uint64_t count);
  // Copies [offset, offset + n) of chunk `chunk` (offset relative to the chunk) into
  // `out` when the chunk is present: true. False when absent (e.g. just evicted).
  Result<bool> ReadIfPresent(uint64_t chunk, uint64_t offset, size_t n, char* out);

  // Makes every MarkPresent so far durable: fdatasync of data, then a bitmap write.
  // Concurrent callers share one write.
  Status Persist();
  // Clears `chunks` durably; with `punch_holes` also frees their disk blocks.
  // `*cleared_bytes` is set to the bytes no longer cached (also on error: the bits are
  // cleared in memory first, so they are gone either way).
  Status Clear(const std::vector<uint64_t>& chunks, bool punch_holes, uint64_t* cleared_bytes);

  // Deletes the folder; later writes fail and reads find nothing. `*dropped_bytes` is
  // set to the bytes that were cached.
  Status Remove(uint64_t* dropped_bytes);

 private:
  ChunkStore(std::string dir, uint64_t chunk_size, uint64_t blob_size);
  Status OpenFiles(bool blob_size_known);
  // Loads the bitmap if it is valid for this blob; false leaves every bit clear.
  bool LoadBitmap(const std::string& bytes);
  std::string EncodeBitmap(const std::vector<uint8_t>& bits) const;
  // Writes the current bits (with an fdatasync of data first when `sync_data`, of the
  // bitmap after when `sync_bitmap`). Caller holds persist_mu_.
  Status WriteBitmapLocked(bool sync_data, bool sync_bitmap);

  const std::string dir_;
  const uint64_t chunk_size_;
  uint64_t blob_size_;
  uint64_t chunk_count_ = 0;
  int data_fd_ = -1;
  int bitmap_fd_ = -1;

  // Shared by data reads and writes; exclusive while holes are punched or on Remove.
  std::shared_mutex data_mu_;
  bool removed_ = false;  // guarded by data_mu_

  // Serialises bitmap writes; taken before mu_.
  std::mutex persist_mu_;
  uint64_t persisted_generation_ = 0;  // guarded by persist_mu_

  mutable std::mutex mu_;
  std::vector<uint8_t> bits_;  // guarded by mu_
  uint64_t generation_ = 0;    // bumped on every bit change; guarded by mu_
  bool data_dirty_ = false;    // data written since the last fdatasync; guarded by mu_
  std::atomic<uint64_t> cached_bytes_{0};
};

}  // namespace strata::lazy
