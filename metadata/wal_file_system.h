#pragma once

#include <rocksdb/file_system.h>

#include <cstdint>
#include <memory>

namespace strata::metadata {

// A RocksDB file system whose write-ahead log files grow in zero-filled chunks written
// ahead of the log's end, so that appending a record overwrites blocks the file already
// owns. The fdatasync that makes a write durable then flushes data only: an appending
// fdatasync also makes the file's new size durable, which costs a journal commit on
// ext4 and xfs (a second device flush) or an inode write on ext4 without a journal.
//
// RocksDB's log reader skips zero-filled tails (it treats them as preallocated space),
// so recovery reads these logs as it reads ordinary ones. Every other file goes to the
// wrapped file system unchanged. `chunk_bytes` must be a multiple of RocksDB's 32 KiB
// log block, so that anything ever appended past a chunk starts on a block boundary.
//
// Thread-safe as the wrapped file system is; each log file is written by one RocksDB
// writer at a time, as RocksDB requires of every writable file.
std::shared_ptr<rocksdb::FileSystem> NewWalPreallocatingFileSystem(
    std::shared_ptr<rocksdb::FileSystem> base, uint64_t chunk_bytes = 1 << 20);

}  // namespace strata::metadata
