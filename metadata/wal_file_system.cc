#include "metadata/wal_file_system.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstring>
#include <string>
#include <string_view>

namespace strata::metadata {
namespace {

rocksdb::IOStatus IoError(const std::string& what, const std::string& path, int err) {
  return rocksdb::IOStatus::IOError(what + " " + path, std::strerror(err));
}

// RocksDB names its write-ahead logs "<number>.log" (the info log is "LOG").
bool IsWriteAheadLog(std::string_view path) {
  size_t slash = path.rfind('/');
  std::string_view name = slash == std::string_view::npos ? path : path.substr(slash + 1);
  constexpr std::string_view kSuffix = ".log";
  if (name.size() <= kSuffix.size() || !name.ends_with(kSuffix)) return false;
  name.remove_suffix(kSuffix.size());
  return name.find_first_not_of("0123456789") == std::string_view::npos;
}

class ZeroFilledLogFile final : public rocksdb::FSWritableFile {
 public:
  ZeroFilledLogFile(int fd, std::string path, uint64_t chunk_bytes,
                    const rocksdb::FileOptions& options)
      : rocksdb::FSWritableFile(options), fd_(fd), path_(std::move(path)), chunk_(chunk_bytes) {}
  ZeroFilledLogFile(const ZeroFilledLogFile&) = delete;
  ZeroFilledLogFile& operator=(const ZeroFilledLogFile&) = delete;

  ~ZeroFilledLogFile() override {
    if (fd_ >= 0) Close(rocksdb::IOOptions(), nullptr).PermitUncheckedError();
  }

  rocksdb::IOStatus Append(const rocksdb::Slice& data, const rocksdb::IOOptions&,
                           rocksdb::IODebugContext*) override {
    const uint64_t end = size_.load(std::memory_order_relaxed);
    if (end + data.size() > allocated_) {
      rocksdb::IOStatus s = Reserve(end + data.size());
      if (!s.ok()) return s;
    }
    rocksdb::IOStatus s = WriteAt(data.data(), data.size(), end);
    if (s.ok()) size_.store(end + data.size(), std::memory_order_relaxed);
    return s;
  }

  // Cuts the file itself: records beyond the new end must not survive to be read back
  // by a recovery. Later appends zero-fill from here again.
  rocksdb::IOStatus Truncate(uint64_t size, const rocksdb::IOOptions&,
                             rocksdb::IODebugContext*) override {
    if (::ftruncate(fd_, static_cast<off_t>(size)) != 0) return IoError("truncate", path_, errno);
    size_.store(size, std::memory_order_relaxed);
    allocated_ = size;
    return rocksdb::IOStatus::OK();
  }

  // A closed log no longer grows: drop its unused tail.
  rocksdb::IOStatus Close(const rocksdb::IOOptions&, rocksdb::IODebugContext*) override {
    if (fd_ < 0) return rocksdb::IOStatus::OK();
    rocksdb::IOStatus s;
    if (::ftruncate(fd_, static_cast<off_t>(size_.load())) != 0) {
      s = IoError("truncate", path_, errno);
    }
    if (::close(fd_) != 0 && s.ok()) s = IoError("close", path_, errno);
    fd_ = -1;
    return s;
  }

  // Appends go straight to the file: nothing is buffered here.
  rocksdb::IOStatus Flush(const rocksdb::IOOptions&, rocksdb::IODebugContext*) override {
    return rocksdb::IOStatus::OK();
  }

  rocksdb::IOStatus Sync(const rocksdb::IOOptions&, rocksdb::IODebugContext*) override {
    if (::fdatasync(fd_) != 0) return IoError("fdatasync", path_, errno);
    return rocksdb::IOStatus::OK();
  }

  rocksdb::IOStatus Fsync(const rocksdb::IOOptions&, rocksdb::IODebugContext*) override {
    if (::fsync(fd_) != 0) return IoError("fsync", path_, errno);
    return rocksdb::IOStatus::OK();
  }

  bool IsSyncThreadSafe() const override { return true; }

  uint64_t GetFileSize(const rocksdb::IOOptions&, rocksdb::IODebugContext*) override {
    return size_.load(std::memory_order_relaxed);
  }

  rocksdb::IOStatus InvalidateCache(size_t, size_t) override { return rocksdb::IOStatus::OK(); }

 private:
  // Writes zero-filled chunks until the file owns `end` bytes. The fdatasync after
  // this pays for the new blocks once (allocation and size in the journal); later
  // appends into them are plain overwrites.
  rocksdb::IOStatus Reserve(uint64_t end) {
    static const char kZeros[64 << 10] = {};
    while (allocated_ < end) {
      for (uint64_t done = 0; done < chunk_; done += sizeof(kZeros)) {
        uint64_t n = std::min<uint64_t>(sizeof(kZeros), chunk_ - done);
        rocksdb::IOStatus s = WriteAt(kZeros, n, allocated_ + done);
        if (!s.ok()) return s;
      }
      allocated_ += chunk_;
    }
    return rocksdb::IOStatus::OK();
  }

  rocksdb::IOStatus WriteAt(const char* data, size_t size, uint64_t offset) {
    while (size > 0) {
      ssize_t n = ::pwrite(fd_, data, size, static_cast<off_t>(offset));
      if (n < 0) {
        if (errno == EINTR) continue;
        int err = errno;
        if (err == ENOSPC || err == EDQUOT) {
          return rocksdb::IOStatus::NoSpace("write " + path_, std::strerror(err));
        }
        return IoError("write", path_, err);
      }
      data += n;
      size -= static_cast<size_t>(n);
      offset += static_cast<uint64_t>(n);
    }
    return rocksdb::IOStatus::OK();
  }

  int fd_;
  std::string path_;
  uint64_t chunk_;
  // The log's logical end: written by the one appending thread, read by RocksDB's
  // size queries from others.
  std::atomic<uint64_t> size_{0};
  uint64_t allocated_ = 0;  // bytes written so far, zeros included
};

class WalPreallocatingFileSystem final : public rocksdb::FileSystemWrapper {
 public:
  WalPreallocatingFileSystem(std::shared_ptr<rocksdb::FileSystem> base, uint64_t chunk_bytes)
      : rocksdb::FileSystemWrapper(std::move(base)), chunk_(chunk_bytes) {}

  const char* Name() const override { return "StrataWalPreallocatingFileSystem"; }

  rocksdb::IOStatus NewWritableFile(const std::string& path, const rocksdb::FileOptions& options,
                                    std::unique_ptr<rocksdb::FSWritableFile>* result,
                                    rocksdb::IODebugContext* dbg) override {
    if (!IsWriteAheadLog(path) || options.use_direct_writes) {
      return target()->NewWritableFile(path, options, result, dbg);
    }
    int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) return IoError("open", path, errno);
    *result = std::make_unique<ZeroFilledLogFile>(fd, path, chunk_, options);
    return rocksdb::IOStatus::OK();
  }

 private:
  uint64_t chunk_;
};

}  // namespace

std::shared_ptr<rocksdb::FileSystem> NewWalPreallocatingFileSystem(
    std::shared_ptr<rocksdb::FileSystem> base, uint64_t chunk_bytes) {
  constexpr uint64_t kLogBlock = 32 << 10;
  if (chunk_bytes == 0 || chunk_bytes % kLogBlock != 0) chunk_bytes = 1 << 20;
  return std::make_shared<WalPreallocatingFileSystem>(std::move(base), chunk_bytes);
}

}  // namespace strata::metadata
