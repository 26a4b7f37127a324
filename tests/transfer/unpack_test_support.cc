#include "tests/transfer/unpack_test_support.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/wait.h>
#include <sys/xattr.h>
#include <unistd.h>
#include <zlib.h>
#include <zstd.h>

#include <cstdio>
#include <cstdlib>
#include <random>
#include <stdexcept>
#include <vector>

#include "core/digest.h"

namespace strata::transfer::testing {

TempDir::TempDir() {
  char tmpl[] = "/tmp/strata-unpack-test-XXXXXX";
  if (::mkdtemp(tmpl) == nullptr) throw std::runtime_error("mkdtemp failed");
  path_ = tmpl;
}

TempDir::~TempDir() { Run("rm -rf '" + path_ + "'"); }

std::string GzipCompress(std::string_view data, int level) {
  z_stream z = {};
  // windowBits 15 + 16: a gzip wrapper.
  if (deflateInit2(&z, level, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY) != Z_OK) {
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

std::string ZstdCompress(std::string_view data, int level) {
  ZSTD_CCtx* cctx = ZSTD_createCCtx();
  ZSTD_CCtx_setParameter(cctx, ZSTD_c_compressionLevel, level);
  ZSTD_CCtx_setParameter(cctx, ZSTD_c_checksumFlag, 1);  // as the zstd command does
  std::string out(ZSTD_compressBound(data.size()), '\0');
  size_t n = ZSTD_compress2(cctx, out.data(), out.size(), data.data(), data.size());
  ZSTD_freeCCtx(cctx);
  if (ZSTD_isError(n)) throw std::runtime_error(ZSTD_getErrorName(n));
  out.resize(n);
  return out;
}

std::string RandomBytes(size_t n, uint32_t seed) {
  std::mt19937_64 rng(seed);
  std::string out(n, '\0');
  for (size_t i = 0; i < n; i += 8) {
    uint64_t v = rng();
    for (size_t j = 0; j < 8 && i + j < n; j++) out[i + j] = static_cast<char>(v >> (8 * j));
  }
  return out;
}

std::string CompressibleBytes(size_t n, uint32_t seed) {
  static const char* kWords[] = {"layer ",     "snapshot ", "overlay ",   "digest ", "sha256 ",
                                 "container ", "image ",    "manifest\n", "0123 ",   "tar "};
  std::mt19937 rng(seed);
  std::string out;
  out.reserve(n + 16);
  while (out.size() < n) out += kWords[rng() % 10];
  out.resize(n);
  return out;
}

std::string ReadFileOrEmpty(const std::string& path) {
  FILE* f = std::fopen(path.c_str(), "rb");
  if (f == nullptr) return "";
  std::string out;
  char buf[65536];
  size_t n;
  while ((n = std::fread(buf, 1, sizeof buf, f)) > 0) out.append(buf, n);
  std::fclose(f);
  return out;
}

void WriteFile(const std::string& path, std::string_view data) {
  FILE* f = std::fopen(path.c_str(), "wb");
  if (f == nullptr) throw std::runtime_error("cannot write " + path);
  std::fwrite(data.data(), 1, data.size(), f);
  std::fclose(f);
}

int Run(const std::string& command) {
  int rc = std::system(command.c_str());
  return WIFEXITED(rc) ? WEXITSTATUS(rc) : -1;
}

std::string Output(const std::string& command) {
  FILE* p = ::popen(command.c_str(), "r");
  if (p == nullptr) return "";
  std::string out;
  char buf[4096];
  size_t n;
  while ((n = std::fread(buf, 1, sizeof buf, p)) > 0) out.append(buf, n);
  ::pclose(p);
  return out;
}

namespace {

std::string Xattrs(const std::string& path) {
  std::vector<char> names(65536);
  ssize_t n = ::llistxattr(path.c_str(), names.data(), names.size());
  if (n <= 0) return "";
  std::map<std::string, std::string> sorted;
  for (ssize_t i = 0; i < n;) {
    std::string name(names.data() + i);
    i += static_cast<ssize_t>(name.size()) + 1;
    std::vector<char> value(65536);
    ssize_t len = ::lgetxattr(path.c_str(), name.c_str(), value.data(), value.size());
    sorted[name] = len < 0 ? "?" : std::string(value.data(), static_cast<size_t>(len));
  }
  std::string out;
  for (const auto& [name, value] : sorted)
    out += " " + name + "=" + Sha256Digest(value).substr(7, 12);
  return out;
}

void Walk(const std::string& root, const std::string& relative, bool with_mtimes,
          std::map<std::string, std::string>* out) {
  std::string dir_path = relative.empty() ? root : root + "/" + relative;
  DIR* dir = ::opendir(dir_path.c_str());
  if (dir == nullptr) return;
  std::vector<std::string> names;
  while (struct dirent* e = ::readdir(dir)) {
    std::string name = e->d_name;
    if (name != "." && name != "..") names.push_back(name);
  }
  ::closedir(dir);
  for (const std::string& name : names) {
    std::string rel = relative.empty() ? name : relative + "/" + name;
    std::string path = root + "/" + rel;
    struct stat st;
    if (::lstat(path.c_str(), &st) != 0) continue;
    char mode[16];
    std::snprintf(mode, sizeof mode, "%04o", st.st_mode & 07777);
    std::string line;
    if (S_ISREG(st.st_mode)) {
      line = "file size=" + std::to_string(st.st_size) +
             " data=" + Sha256Digest(ReadFileOrEmpty(path)).substr(7, 16);
    } else if (S_ISDIR(st.st_mode)) {
      line = "dir";
    } else if (S_ISLNK(st.st_mode)) {
      char target[4097];
      ssize_t n = ::readlink(path.c_str(), target, sizeof target - 1);
      line = "symlink -> " + std::string(target, n < 0 ? 0 : static_cast<size_t>(n));
    } else if (S_ISCHR(st.st_mode) || S_ISBLK(st.st_mode)) {
      line = std::string(S_ISCHR(st.st_mode) ? "char " : "block ") +
             std::to_string(major(st.st_rdev)) + ":" + std::to_string(minor(st.st_rdev));
    } else if (S_ISFIFO(st.st_mode)) {
      line = "fifo";
    } else {
      line = "other";
    }
    if (!S_ISLNK(st.st_mode)) line += std::string(" mode=") + mode;
    line += " owner=" + std::to_string(st.st_uid) + ":" + std::to_string(st.st_gid);
    line += Xattrs(path);
    if (with_mtimes) {
      line +=
          " mtime=" + std::to_string(st.st_mtim.tv_sec) + "." + std::to_string(st.st_mtim.tv_nsec);
    }
    (*out)[rel] = line;
    if (S_ISDIR(st.st_mode)) Walk(root, rel, with_mtimes, out);
  }
}

}  // namespace

std::map<std::string, std::string> DescribeTree(const std::string& root, bool with_mtimes) {
  std::map<std::string, std::string> out;
  Walk(root, "", with_mtimes, &out);
  return out;
}

}  // namespace strata::transfer::testing
