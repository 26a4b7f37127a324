// LookupCounts: the kernel's references to a tree's inodes, as the FUSE protocol
// counts them. Every reply that hands the kernel an inode (a lookup, a readdirplus
// entry) adds one; FORGET gives back any number. The kernel may use an inode number
// until its count returns to zero; on unmount all counts drop to zero implicitly.
//
// Thread-safe; sharded so that concurrent lookups of different inodes rarely share a
// lock.
#pragma once

#include <array>
#include <cstdint>
#include <mutex>
#include <unordered_map>

#include "fuse/tree.h"

namespace strata::fuse {

class LookupCounts {
 public:
  void Add(Ino ino, uint64_t n = 1);
  // Subtracts `n`. Forgetting more than was added is a protocol error on the kernel's
  // or our side: the count stops at zero and false is returned.
  bool Forget(Ino ino, uint64_t n);
  uint64_t Get(Ino ino) const;
  // Inodes with a non-zero count.
  size_t Size() const;

 private:
  struct Shard {
    mutable std::mutex mu;
    std::unordered_map<Ino, uint64_t> counts;  // only non-zero counts
  };
  static constexpr size_t kShards = 16;

  Shard& ShardOf(Ino ino) { return shards_[ino % kShards]; }
  const Shard& ShardOf(Ino ino) const { return shards_[ino % kShards]; }

  std::array<Shard, kShards> shards_;
};

}  // namespace strata::fuse
