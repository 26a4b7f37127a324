#include "runtime-bridge/passwd.h"

#include <fcntl.h>
#include <linux/openat2.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <charconv>
#include <optional>

#include "core/unique_fd.h"

namespace strata::runtime {
namespace {

constexpr size_t kMaxDatabaseBytes = 4 << 20;

std::optional<uint32_t> Numeric(std::string_view text) {
  uint32_t v = 0;
  if (text.empty()) return std::nullopt;
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), v);
  if (ec != std::errc() || end != text.data() + text.size()) return std::nullopt;
  return v;
}

std::vector<std::string_view> Split(std::string_view line, char sep) {
  std::vector<std::string_view> out;
  size_t start = 0;
  while (true) {
    size_t i = line.find(sep, start);
    if (i == std::string_view::npos) {
      out.push_back(line.substr(start));
      return out;
    }
    out.push_back(line.substr(start, i - start));
    start = i + 1;
  }
}

// Calls fn(fields) for each well-formed line (comments and short lines skipped).
template <typename Fn>
void ForEachEntry(const std::string& text, size_t min_fields, Fn fn) {
  size_t start = 0;
  while (start < text.size()) {
    size_t end = text.find('\n', start);
    if (end == std::string::npos) end = text.size();
    std::string_view line(text.data() + start, end - start);
    start = end + 1;
    if (line.empty() || line[0] == '#') continue;
    auto fields = Split(line, ':');
    if (fields.size() < min_fields) continue;
    if (fn(fields)) return;
  }
}

Result<std::string> ReadDatabase(const std::string& rootfs, const std::string& path) {
  auto text = ReadFileInRoot(rootfs, path, kMaxDatabaseBytes);
  if (!text.ok() && text.status().IsNotFound()) return std::string();
  return text;
}

}  // namespace

Result<std::string> ReadFileInRoot(const std::string& rootfs, const std::string& path,
                                   size_t max_bytes) {
  UniqueFd root(::open(rootfs.c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC));
  if (!root.valid()) return Status::FromErrno(errno, "open " + rootfs);
  struct open_how how {};
  how.flags = O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK;
  how.resolve = RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS | RESOLVE_NO_XDEV;
  int fd = static_cast<int>(::syscall(SYS_openat2, root.get(), path.c_str(), &how, sizeof how));
  if (fd < 0) {
    if (errno == ENOENT) return Status::NotFound(path + " does not exist in the image");
    return Status::FromErrno(errno, "open " + path + " in the image");
  }
  UniqueFd file(fd);
  std::string out;
  char buf[65536];
  while (true) {
    ssize_t n = ::read(fd, buf, sizeof buf);
    if (n < 0) {
      if (errno == EINTR) continue;
      return Status::FromErrno(errno, "read " + path + " in the image");
    }
    if (n == 0) break;
    out.append(buf, static_cast<size_t>(n));
    if (out.size() > max_bytes) {
      return Status::FailedPrecondition(path + " in the image is larger than " +
                                        std::to_string(max_bytes) + " bytes");
    }
  }
  return out;
}

Result<ResolvedUser> ResolveUser(const std::string& rootfs, std::string_view user) {
  std::string_view user_part = user, group_part;
  bool has_group = false;
  if (auto colon = user.find(':'); colon != std::string_view::npos) {
    user_part = user.substr(0, colon);
    group_part = user.substr(colon + 1);
    has_group = true;
    if (group_part.empty())
      return Status::InvalidArgument("user \"" + std::string(user) + "\": empty group");
  }
  if (user_part.empty() && has_group) {
    return Status::InvalidArgument("user \"" + std::string(user) + "\": empty user name");
  }
  ASSIGN_OR_RETURN(std::string passwd, ReadDatabase(rootfs, "/etc/passwd"));
  ResolvedUser out;
  std::string name;
  bool found = false;
  std::optional<uint32_t> numeric_uid =
      user_part.empty() ? std::optional<uint32_t>(0) : Numeric(user_part);
  ForEachEntry(passwd, 7, [&](const std::vector<std::string_view>& f) {
    auto uid = Numeric(f[2]);
    auto gid = Numeric(f[3]);
    if (!uid || !gid) return false;
    bool match = numeric_uid ? *uid == *numeric_uid : f[0] == user_part;
    if (!match) return false;
    name = std::string(f[0]);
    out.uid = *uid;
    out.gid = *gid;
    out.home = f[5].empty() ? "/" : std::string(f[5]);
    found = true;
    return true;
  });
  if (!found) {
    if (!numeric_uid) {
      return Status::InvalidArgument("unable to find user " + std::string(user_part) +
                                     ": no matching entries in the image's /etc/passwd");
    }
    out.uid = *numeric_uid;
    out.gid = 0;
  }

  ASSIGN_OR_RETURN(std::string group, ReadDatabase(rootfs, "/etc/group"));
  if (has_group) {
    if (auto gid = Numeric(group_part)) {
      out.gid = *gid;
    } else {
      bool group_found = false;
      ForEachEntry(group, 3, [&](const std::vector<std::string_view>& f) {
        auto gid = Numeric(f[2]);
        if (!gid || f[0] != group_part) return false;
        out.gid = *gid;
        group_found = true;
        return true;
      });
      if (!group_found) {
        return Status::InvalidArgument("unable to find group " + std::string(group_part) +
                                       ": no matching entries in the image's /etc/group");
      }
    }
  }
  if (!name.empty()) {
    ForEachEntry(group, 4, [&](const std::vector<std::string_view>& f) {
      auto gid = Numeric(f[2]);
      if (!gid || *gid == out.gid) return false;
      for (std::string_view member : Split(f[3], ',')) {
        if (member == name) {
          bool dup = false;
          for (uint32_t g : out.additional_gids) dup |= g == *gid;
          if (!dup) out.additional_gids.push_back(*gid);
          break;
        }
      }
      return false;
    });
  }
  return out;
}

}  // namespace strata::runtime
