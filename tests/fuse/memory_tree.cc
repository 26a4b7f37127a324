#include "tests/fuse/memory_tree.h"

#include <algorithm>
#include <cstring>

namespace strata::fuse::testing {

MemoryTree::MemoryTree() {
  auto root = std::make_unique<Node>();
  root->attr.ino = kRootIno;
  root->attr.mode = S_IFDIR | 0755;
  root->attr.nlink = 2;
  root->attr.size = 4096;
  root->attr.blocks_512 = 8;
  root->attr.atime = root->attr.mtime = root->attr.ctime = kNodeTime;
  root->parent = kRootIno;
  nodes_.push_back(std::move(root));
}

Ino MemoryTree::AddNode(Ino parent, const std::string& name, mode_t mode, std::string content) {
  auto node = std::make_unique<Node>();
  Ino ino = nodes_.size() + 1;
  node->attr.ino = ino;
  node->attr.mode = mode;
  node->attr.nlink = 1;
  node->attr.atime = node->attr.mtime = node->attr.ctime = kNodeTime;
  node->parent = parent;
  node->content = std::move(content);
  node->attr.size = node->content.size();
  nodes_.push_back(std::move(node));
  Link(parent, name, ino);
  return ino;
}

void MemoryTree::Link(Ino parent, const std::string& name, Ino child) {
  Node& dir = *nodes_[parent - 1];
  DirEntry entry;
  entry.name = name;
  entry.ino = child;
  entry.type = nodes_[child - 1]->attr.mode & S_IFMT;
  dir.children.push_back(entry);
  dir.child_by_name[name] = child;
}

Ino MemoryTree::AddDir(Ino parent, const std::string& name, mode_t perms) {
  Ino ino = AddNode(parent, name, S_IFDIR | perms, "");
  Attr& attr = nodes_[ino - 1]->attr;
  attr.nlink = 2;
  attr.size = 4096;
  attr.blocks_512 = 8;
  nodes_[parent - 1]->attr.nlink++;
  return ino;
}

Ino MemoryTree::AddFile(Ino parent, const std::string& name, std::string content, mode_t perms) {
  Ino ino = AddNode(parent, name, S_IFREG | perms, std::move(content));
  Attr& attr = nodes_[ino - 1]->attr;
  attr.blocks_512 = (attr.size + 4095) / 4096 * 8;
  return ino;
}

Ino MemoryTree::AddSymlink(Ino parent, const std::string& name, const std::string& target) {
  return AddNode(parent, name, S_IFLNK | 0777, target);
}

Ino MemoryTree::AddSpecial(Ino parent, const std::string& name, mode_t type, dev_t rdev,
                           mode_t perms) {
  Ino ino = AddNode(parent, name, type | perms, "");
  nodes_[ino - 1]->attr.rdev = rdev;
  return ino;
}

void MemoryTree::AddHardLink(Ino parent, const std::string& name, Ino target) {
  Link(parent, name, target);
  nodes_[target - 1]->attr.nlink++;
}

void MemoryTree::FailLookup(Ino parent, const std::string& name, Status status) {
  nodes_[parent - 1]->failing_names[name] = std::move(status);
}

void MemoryTree::SetXattr(Ino ino, const std::string& name, const std::string& value) {
  nodes_[ino - 1]->xattrs[name] = value;
}

void MemoryTree::SetReadHook(Ino ino, ReadHook hook) {
  nodes_[ino - 1]->read_hook = std::move(hook);
}

Attr& MemoryTree::MutableAttr(Ino ino) { return nodes_[ino - 1]->attr; }

const MemoryTree::Node* MemoryTree::Find(Ino ino) const {
  if (ino == 0 || ino > nodes_.size()) return nullptr;
  return nodes_[ino - 1].get();
}

Result<Attr> MemoryTree::Lookup(Ino parent, std::string_view name) {
  const Node* dir = Find(parent);
  if (dir == nullptr) return Status::NotFound("no inode " + std::to_string(parent));
  if (!S_ISDIR(dir->attr.mode)) return Status::FailedPrecondition("not a directory");
  if (auto failing = dir->failing_names.find(name); failing != dir->failing_names.end()) {
    return failing->second;
  }
  auto it = dir->child_by_name.find(name);
  if (it == dir->child_by_name.end()) return Status::NotFound(std::string(name));
  return nodes_[it->second - 1]->attr;
}

Result<Attr> MemoryTree::GetAttr(Ino ino) {
  const Node* node = Find(ino);
  if (node == nullptr) return Status::NotFound("no inode " + std::to_string(ino));
  return node->attr;
}

Status MemoryTree::ReadDir(Ino dir_ino, uint64_t offset,
                           const std::function<bool(const DirEntry&)>& emit) {
  const Node* dir = Find(dir_ino);
  if (dir == nullptr) return Status::NotFound("no inode " + std::to_string(dir_ino));
  if (!S_ISDIR(dir->attr.mode)) return Status::FailedPrecondition("not a directory");
  // Position i (0 ".", 1 "..", 2.. children) resumes at offset (i + 1) * kOffsetStep.
  size_t total = dir->children.size() + 2;
  for (size_t i = offset / kOffsetStep; i < total; i++) {
    DirEntry entry;
    if (i == 0) {
      entry = DirEntry{".", dir_ino, S_IFDIR, 0};
    } else if (i == 1) {
      entry = DirEntry{"..", dir->parent, S_IFDIR, 0};
    } else {
      entry = dir->children[i - 2];
    }
    entry.next_offset = (i + 1) * kOffsetStep;
    if (!emit(entry)) break;
  }
  return Status::Ok();
}

Result<std::string> MemoryTree::ReadLink(Ino ino) {
  const Node* node = Find(ino);
  if (node == nullptr) return Status::NotFound("no inode " + std::to_string(ino));
  if (!S_ISLNK(node->attr.mode)) return Status::FailedPrecondition("not a symlink");
  return node->content;
}

Result<size_t> MemoryTree::Read(Ino ino, char* buf, size_t n, uint64_t offset) {
  const Node* node = Find(ino);
  if (node == nullptr) return Status::NotFound("no inode " + std::to_string(ino));
  if (S_ISDIR(node->attr.mode)) return Status::FailedPrecondition("is a directory");
  if (node->read_hook) return node->read_hook(buf, n, offset);
  if (offset >= node->content.size()) return size_t{0};
  size_t count = std::min<uint64_t>(n, node->content.size() - offset);
  std::memcpy(buf, node->content.data() + offset, count);
  return count;
}

Result<std::string> MemoryTree::GetXattr(Ino ino, std::string_view name) {
  const Node* node = Find(ino);
  if (node == nullptr) return Status::NotFound("no inode " + std::to_string(ino));
  auto it = node->xattrs.find(name);
  if (it == node->xattrs.end()) return Status::NotFound(std::string(name));
  return it->second;
}

Result<std::vector<std::string>> MemoryTree::ListXattr(Ino ino) {
  const Node* node = Find(ino);
  if (node == nullptr) return Status::NotFound("no inode " + std::to_string(ino));
  std::vector<std::string> names;
  for (const auto& [name, value] : node->xattrs) names.push_back(name);
  return names;
}

FsStats MemoryTree::StatFs() {
  FsStats stats;
  stats.files = nodes_.size();
  for (const auto& node : nodes_) stats.blocks += (node->attr.blocks_512 * 512 + 4095) / 4096;
  return stats;
}

std::string PatternBytes(size_t n, uint32_t seed) {
  std::string out(n, '\0');
  uint32_t x = seed * 2654435761u + 1;
  for (size_t i = 0; i < n; i++) {
    x ^= x << 13;
    x ^= x >> 17;
    x ^= x << 5;
    out[i] = static_cast<char>(x);
  }
  return out;
}

}  // namespace strata::fuse::testing
