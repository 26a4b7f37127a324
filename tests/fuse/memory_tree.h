// MemoryTree: a fuse::Tree held in memory, for tests and benchmarks of the FUSE
// adapter. Built before mounting (the Add* calls are not thread-safe); afterwards
// every Tree method may be called from many threads. A file's reads can be replaced
// by a hook to inject failures or delays.
#pragma once

#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "fuse/tree.h"

namespace strata::fuse::testing {

// The fixed time every node carries (sub-second part included, to see it survive).
inline constexpr timespec kNodeTime{1700000000, 123456789};

class MemoryTree : public Tree {
 public:
  // Replaces Tree::Read for one file: (buf, n, offset) -> bytes read or an error.
  using ReadHook = std::function<Result<size_t>(char* buf, size_t n, uint64_t offset)>;

  MemoryTree();  // just the root directory, 0755

  Ino AddDir(Ino parent, const std::string& name, mode_t perms = 0755);
  // blocks_512 defaults to the size rounded up to 4 KiB blocks.
  Ino AddFile(Ino parent, const std::string& name, std::string content, mode_t perms = 0644);
  Ino AddSymlink(Ino parent, const std::string& name, const std::string& target);
  // S_IFCHR, S_IFBLK or S_IFIFO node; `rdev` for devices (makedev).
  Ino AddSpecial(Ino parent, const std::string& name, mode_t type, dev_t rdev = 0,
                 mode_t perms = 0644);
  // Another name for `target` (not a directory); its nlink goes up by one.
  void AddHardLink(Ino parent, const std::string& name, Ino target);
  // Makes Lookup of `name` in `parent` fail with `status` (e.g. Unavailable).
  void FailLookup(Ino parent, const std::string& name, Status status);

  void SetXattr(Ino ino, const std::string& name, const std::string& value);
  void SetReadHook(Ino ino, ReadHook hook);
  Attr& MutableAttr(Ino ino);  // before mounting only

  Result<Attr> Lookup(Ino parent, std::string_view name) override;
  Result<Attr> GetAttr(Ino ino) override;
  Status ReadDir(Ino dir, uint64_t offset,
                 const std::function<bool(const DirEntry&)>& emit) override;
  Result<std::string> ReadLink(Ino ino) override;
  Result<size_t> Read(Ino ino, char* buf, size_t n, uint64_t offset) override;
  Result<std::string> GetXattr(Ino ino, std::string_view name) override;
  Result<std::vector<std::string>> ListXattr(Ino ino) override;
  FsStats StatFs() override;

  // Offsets are spaced (7 apart) so that the adapter cannot get away with assuming
  // they count entries.
  static constexpr uint64_t kOffsetStep = 7;

 private:
  struct Node {
    Attr attr;
    Ino parent = 0;
    std::string content;             // file bytes or symlink target
    std::vector<DirEntry> children;  // directories, in insertion order
    std::map<std::string, Ino, std::less<>> child_by_name;
    std::map<std::string, Status, std::less<>> failing_names;
    std::map<std::string, std::string, std::less<>> xattrs;
    ReadHook read_hook;
  };

  Ino AddNode(Ino parent, const std::string& name, mode_t mode, std::string content);
  void Link(Ino parent, const std::string& name, Ino child);
  const Node* Find(Ino ino) const;

  std::vector<std::unique_ptr<Node>> nodes_;  // index = ino - 1
};

// `n` bytes from a simple generator seeded with `seed` (not all zeros, differs by seed).
std::string PatternBytes(size_t n, uint32_t seed);

}  // namespace strata::fuse::testing
