// unpack_bench: how fast strata's layer unpacker (transfer/unpack.h) applies layer
// blobs from local files, without a registry or a daemon in the way, so that its figure
// can stand beside `tar -xzf` and `pigz -dc | tar -x` on the same blobs.
//
//   unpack_bench [--jobs N] [--syncfs] [--json] BLOB... DEST_DIR
//       Unpacks each BLOB (gzip, zstd or plain tar) with UnpackLayer: one BLOB into
//       DEST_DIR itself, several each into DEST_DIR/layer-<i> (as the puller gives each
//       layer a snapshot of its own), N at a time. DEST_DIR is created if missing and
//       should be empty. --syncfs then syncs the file system once, as the puller does
//       before a commit, and reports that time separately.
//   unpack_bench --decompress-only [--hash] [--jobs N] [--json] BLOB...
//       Only decompresses (transfer/decompress.h) into memory and throws the bytes
//       away; --hash also computes the SHA-256 of the output, as an unpack does for
//       the diff id.
//
// Prints one line: bytes in and out, wall seconds, MB/s of compressed input and of
// uncompressed output (MB = 10^6 bytes), and the process's user and system CPU
// seconds; with --json, one JSON object. Needs root to unpack (chown, mknod, xattrs).
#include <fcntl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "core/digest.h"
#include "core/status.h"
#include "transfer/byte_source.h"
#include "transfer/decompress.h"
#include "transfer/unpack.h"

namespace {

using strata::Result;
using strata::Status;
using Clock = std::chrono::steady_clock;

struct Options {
  std::vector<std::string> paths;  // BLOB... [DEST_DIR]
  bool decompress_only = false;
  bool hash = false;
  bool syncfs = false;
  bool json = false;
  int jobs = 1;
  size_t pipeline_bytes = strata::transfer::UnpackOptions{}.pipeline_bytes;
};

// What one blob gave.
struct BlobResult {
  uint64_t compressed_bytes = 0;
  uint64_t uncompressed_bytes = 0;
  uint64_t entries = 0;
};

double Seconds(Clock::duration d) { return std::chrono::duration<double>(d).count(); }

double CpuSeconds(const timeval& tv) {
  return static_cast<double>(tv.tv_sec) + static_cast<double>(tv.tv_usec) / 1e6;
}

Result<uint64_t> FileSize(const std::string& path) {
  struct stat st;
  if (::stat(path.c_str(), &st) != 0) return Status::FromErrno(errno, "stat " + path);
  return static_cast<uint64_t>(st.st_size);
}

Result<BlobResult> DecompressBlob(const std::string& path, bool hash) {
  BlobResult result;
  ASSIGN_OR_RETURN(result.compressed_bytes, FileSize(path));
  ASSIGN_OR_RETURN(auto file, strata::transfer::OpenFileSource(path));
  ASSIGN_OR_RETURN(auto plain, strata::transfer::Decompress(std::move(file)));
  strata::Sha256 sha;
  std::vector<char> buf(1 << 20);
  while (true) {
    ASSIGN_OR_RETURN(size_t n, plain->Read(buf.data(), buf.size()));
    if (n == 0) break;
    if (hash) sha.Update(std::string_view(buf.data(), n));
    result.uncompressed_bytes += n;
  }
  if (hash) (void)sha.Digest();
  return result;
}

Result<BlobResult> UnpackBlob(const std::string& path, const std::string& dest,
                              size_t pipeline_bytes) {
  if (::mkdir(dest.c_str(), 0755) != 0 && errno != EEXIST) {
    return Status::FromErrno(errno, "mkdir " + dest);
  }
  ASSIGN_OR_RETURN(auto file, strata::transfer::OpenFileSource(path));
  strata::transfer::UnpackOptions options;
  options.allow_devices = true;
  options.pipeline_bytes = pipeline_bytes;
  ASSIGN_OR_RETURN(strata::transfer::UnpackResult unpacked,
                   strata::transfer::UnpackLayer(*file, dest, options));
  return BlobResult{unpacked.compressed_bytes, unpacked.uncompressed_bytes, unpacked.entries};
}

Status SyncFileSystemOf(const std::string& dir) {
  int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return Status::FromErrno(errno, "open " + dir);
  int rc = ::syncfs(fd);
  int err = errno;
  ::close(fd);
  if (rc != 0) return Status::FromErrno(err, "syncfs " + dir);
  return Status::Ok();
}

int Run(const Options& options) {
  std::vector<std::string> blobs = options.paths;
  std::string dest;
  if (!options.decompress_only) {
    if (blobs.size() < 2) {
      std::fprintf(stderr, "unpack_bench: need BLOB... DEST_DIR\n");
      return 2;
    }
    dest = blobs.back();
    blobs.pop_back();
    if (::mkdir(dest.c_str(), 0755) != 0 && errno != EEXIST) {
      std::fprintf(stderr, "unpack_bench: mkdir %s: %s\n", dest.c_str(), std::strerror(errno));
      return 1;
    }
  }
  auto dest_of = [&](size_t i) {
    return blobs.size() == 1 ? dest : dest + "/layer-" + std::to_string(i);
  };

  std::atomic<size_t> next{0};
  std::mutex mu;
  BlobResult total;
  Status failure;
  auto work = [&] {
    while (true) {
      size_t i = next.fetch_add(1);
      if (i >= blobs.size()) return;
      Result<BlobResult> r = options.decompress_only
                                 ? DecompressBlob(blobs[i], options.hash)
                                 : UnpackBlob(blobs[i], dest_of(i), options.pipeline_bytes);
      std::lock_guard<std::mutex> lock(mu);
      if (!r.ok()) {
        if (failure.ok()) failure = r.status().WithContext(blobs[i]);
        next = blobs.size();  // stop the other workers early
        return;
      }
      total.compressed_bytes += r->compressed_bytes;
      total.uncompressed_bytes += r->uncompressed_bytes;
      total.entries += r->entries;
    }
  };

  const Clock::time_point start = Clock::now();
  std::vector<std::thread> threads;
  size_t jobs = std::min(static_cast<size_t>(options.jobs), blobs.size());
  for (size_t t = 0; t < jobs; t++) threads.emplace_back(work);
  for (auto& t : threads) t.join();
  const double seconds = Seconds(Clock::now() - start);
  if (!failure.ok()) {
    std::fprintf(stderr, "unpack_bench: %s\n", failure.ToString().c_str());
    return 1;
  }
  double sync_seconds = 0;
  if (options.syncfs && !options.decompress_only) {
    const Clock::time_point sync_start = Clock::now();
    if (Status s = SyncFileSystemOf(dest); !s.ok()) {
      std::fprintf(stderr, "unpack_bench: %s\n", s.ToString().c_str());
      return 1;
    }
    sync_seconds = Seconds(Clock::now() - sync_start);
  }
  rusage usage;
  ::getrusage(RUSAGE_SELF, &usage);

  const char* mode =
      options.decompress_only ? (options.hash ? "decompress+hash" : "decompress") : "unpack";
  const double in_mb_s = static_cast<double>(total.compressed_bytes) / 1e6 / seconds;
  const double out_mb_s = static_cast<double>(total.uncompressed_bytes) / 1e6 / seconds;
  if (options.json) {
    std::printf(
        "{\"mode\":\"%s\",\"blobs\":%zu,\"jobs\":%zu,\"compressed_bytes\":%llu,"
        "\"uncompressed_bytes\":%llu,\"entries\":%llu,\"seconds\":%.4f,\"sync_seconds\":%.4f,"
        "\"compressed_mb_per_s\":%.1f,\"uncompressed_mb_per_s\":%.1f,\"user_seconds\":%.3f,"
        "\"sys_seconds\":%.3f}\n",
        mode, blobs.size(), jobs, static_cast<unsigned long long>(total.compressed_bytes),
        static_cast<unsigned long long>(total.uncompressed_bytes),
        static_cast<unsigned long long>(total.entries), seconds, sync_seconds, in_mb_s, out_mb_s,
        CpuSeconds(usage.ru_utime), CpuSeconds(usage.ru_stime));
  } else {
    std::printf(
        "%s: %zu blob(s), %zu at a time: %.1f MB compressed, %.1f MB uncompressed, %llu "
        "entries in %.3f s (%.1f MB/s compressed, %.1f MB/s uncompressed); cpu user %.2f s, "
        "sys %.2f s",
        mode, blobs.size(), jobs, static_cast<double>(total.compressed_bytes) / 1e6,
        static_cast<double>(total.uncompressed_bytes) / 1e6,
        static_cast<unsigned long long>(total.entries), seconds, in_mb_s, out_mb_s,
        CpuSeconds(usage.ru_utime), CpuSeconds(usage.ru_stime));
    if (options.syncfs && !options.decompress_only) std::printf("; syncfs %.3f s", sync_seconds);
    std::printf("\n");
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  Options options;
  CLI::App app{"unpack_bench: throughput of strata's layer unpacker and decompressor"};
  app.add_option("paths", options.paths, "BLOB... DEST_DIR (with --decompress-only: BLOB...)")
      ->required();
  app.add_flag("--decompress-only", options.decompress_only,
               "only decompress into memory (no tar, no files)");
  app.add_flag("--hash", options.hash, "with --decompress-only: also SHA-256 the output");
  app.add_option("--jobs,-j", options.jobs, "blobs processed at once")
      ->capture_default_str()
      ->check(CLI::Range(1, 64));
  app.add_option("--pipeline-bytes", options.pipeline_bytes,
                 "UnpackOptions::pipeline_bytes (0: decompress on the unpacking thread)")
      ->capture_default_str();
  app.add_flag("--syncfs", options.syncfs, "syncfs after unpacking; timed separately");
  app.add_flag("--json", options.json, "print one JSON object");
  CLI11_PARSE(app, argc, argv);
  return Run(options);
}
