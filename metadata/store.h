// metadata::Store — strata's RocksDB-backed metadata database.
//
// One RocksDB instance under <root>/metadata with a column family per table:
//
//   meta               schema version and counters ("schema_version", "next_snapshot_id")
//   snapshots          (snapshotter name, key) -> SnapshotRecord (records.proto)
//   snapshot_children  (snapshotter name, parent key, child key) -> "" : the
//                      parent->children index
//   content            digest ("sha256:<hex>") -> ContentRecord: committed blobs
//   images             image name -> ImageRecord
//   tasks              task id -> the runtime bridge's encoded task record (its schema
//                      is runtime-bridge/task_record.proto, owned by that module)
//
// Families are added without a schema change: a store written before a family existed
// simply gets it (empty) at the next Open. The schema version only moves when the
// meaning of existing keys or values changes.
//
// Snapshots are grouped by the snapshotter name clients address them with; each name
// is a separate key space (see snapshotter/overlay.h).
//
// Every change is a Batch applied atomically. Durability uses group commit: Apply()
// appends the batch to the write-ahead log and returns a ticket; WaitDurable(ticket)
// returns once the log is fsynced up to that ticket. Concurrent callers share one
// fsync, so N writers waiting together cost one disk flush, not N. Commit() is
// Apply() + WaitDurable() for callers that do not need to release a lock in between.
// The log is written into zero-filled space allocated ahead (wal_file_system.h), so
// that fsync is one data flush, not a flush plus a file system journal commit. It
// makes the store's records durable, nothing else: directories created beside a
// record are not made durable by it (snapshotter/overlay.cc recreates them at start).
//
// Thread safety: a Store is safe for concurrent use from many threads.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

#include "core/status.h"

namespace rocksdb {
class DB;
class Env;
class ColumnFamilyHandle;
}  // namespace rocksdb

namespace strata::metadata {

// The schema version this code writes. Opening a store with a higher version fails.
inline constexpr uint32_t kSchemaVersion = 1;

enum class SnapshotKind : int { kUnknown = 0, kView = 1, kActive = 2, kCommitted = 3 };

struct SnapshotRecord {
  std::string snapshotter;  // the name the snapshot was created under
  std::string key;
  uint64_t id = 0;
  SnapshotKind kind = SnapshotKind::kUnknown;
  std::string parent;  // key of the parent (always committed); empty for a base layer
  std::map<std::string, std::string> labels;
  int64_t created_unix_nanos = 0;
  int64_t updated_unix_nanos = 0;
  int64_t usage_size_bytes = 0;  // stored at commit
  int64_t usage_inodes = 0;
};

// A committed blob of the content store (transfer/content_store.h).
struct ContentRecord {
  std::string digest;  // "sha256:<hex>"; the key
  int64_t size_bytes = 0;
  std::map<std::string, std::string> labels;
  int64_t created_unix_nanos = 0;
  int64_t updated_unix_nanos = 0;
};

// An OCI descriptor: what an image points at.
struct Descriptor {
  std::string media_type;
  std::string digest;
  int64_t size_bytes = 0;
  std::map<std::string, std::string> annotations;
};

// An image record (transfer/image_store.h). The name is data, stored as given.
struct ImageRecord {
  std::string name;  // the key
  Descriptor target;
  std::map<std::string, std::string> labels;
  int64_t created_unix_nanos = 0;
  int64_t updated_unix_nanos = 0;
};

class Store;

// One entry of the children index.
struct ChildLink {
  std::string snapshotter;
  std::string parent;
  std::string child;
  auto operator<=>(const ChildLink&) const = default;
};

// A set of changes applied atomically by Store::Apply/Commit.
class Batch {
 public:
  Batch();
  ~Batch();
  Batch(const Batch&) = delete;
  Batch& operator=(const Batch&) = delete;

  void PutSnapshot(const SnapshotRecord& record);
  void DeleteSnapshot(const std::string& snapshotter, const std::string& key);
  void AddChild(const std::string& snapshotter, const std::string& parent,
                const std::string& child);
  void RemoveChild(const std::string& snapshotter, const std::string& parent,
                   const std::string& child);
  void SetNextSnapshotId(uint64_t next_id);
  void PutContent(const ContentRecord& record);
  void DeleteContent(const std::string& digest);
  void PutImage(const ImageRecord& record);
  void DeleteImage(const std::string& name);
  // `encoded` is opaque to the store (runtime-bridge/task_store.h encodes it).
  void PutTask(const std::string& id, const std::string& encoded);
  void DeleteTask(const std::string& id);

 private:
  friend class Store;
  // Column families are the Store's, so operations are recorded here and turned into
  // a RocksDB write batch by Store::Apply.
  enum class Table { kMeta, kSnapshots, kChildren, kContent, kImages, kTasks };
  struct Op {
    Table table;
    bool erase;  // delete `key`; otherwise put `value` under it
    std::string key;
    std::string value;
  };
  std::vector<Op> ops_;
};

class Store {
 public:
  // Opens (creating if missing) the store in directory `path`.
  // FailedPrecondition if it was written by a newer schema; DataLoss if it is corrupt
  // or unreadable. Messages name `path`.
  static Result<std::unique_ptr<Store>> Open(const std::string& path);
  ~Store();
  Store(const Store&) = delete;
  Store& operator=(const Store&) = delete;

  const std::string& path() const { return path_; }

  // Appends `batch` to the log and applies it; not yet durable. Returns a ticket for
  // WaitDurable. Tickets grow monotonically in Apply order.
  Result<uint64_t> Apply(Batch& batch);
  // Blocks until every batch with a ticket <= `ticket` is on stable storage.
  Status WaitDurable(uint64_t ticket);
  // The ticket of the latest Apply (0 if none).
  uint64_t LastTicket() const { return written_.load(std::memory_order_acquire); }
  // Apply + WaitDurable.
  Status Commit(Batch& batch);

  // Reads every snapshot record. DataLoss if a record cannot be decoded.
  Result<std::vector<SnapshotRecord>> LoadSnapshots() const;
  // Reads one record; NotFound if absent.
  Result<SnapshotRecord> GetSnapshot(const std::string& snapshotter, const std::string& key) const;
  // Reads the whole children index.
  Result<std::vector<ChildLink>> LoadChildren() const;
  // Reads one content record; NotFound if absent, DataLoss if undecodable.
  Result<ContentRecord> GetContent(const std::string& digest) const;
  // Reads every content record, in digest order.
  Result<std::vector<ContentRecord>> LoadContent() const;
  // Reads one image record; NotFound if absent, DataLoss if undecodable.
  Result<ImageRecord> GetImage(const std::string& name) const;
  // Reads every image record, in name order.
  Result<std::vector<ImageRecord>> LoadImages() const;
  // Reads every task as (id, encoded record), in id order.
  Result<std::vector<std::pair<std::string, std::string>>> LoadTasks() const;
  // The persisted next snapshot id (1 for a new store).
  Result<uint64_t> NextSnapshotId() const;
  uint32_t schema_version() const { return schema_version_; }

 private:
  friend class Batch;
  Store() = default;
  rocksdb::ColumnFamilyHandle* FamilyOf(Batch::Table table) const;

  std::string path_;
  uint32_t schema_version_ = 0;
  std::unique_ptr<rocksdb::Env> env_;  // outlives db_
  std::unique_ptr<rocksdb::DB> db_;
  std::vector<rocksdb::ColumnFamilyHandle*> handles_;
  rocksdb::ColumnFamilyHandle* meta_ = nullptr;
  rocksdb::ColumnFamilyHandle* snapshots_ = nullptr;
  rocksdb::ColumnFamilyHandle* children_ = nullptr;
  rocksdb::ColumnFamilyHandle* content_ = nullptr;
  rocksdb::ColumnFamilyHandle* images_ = nullptr;
  rocksdb::ColumnFamilyHandle* tasks_ = nullptr;

  std::mutex write_mu_;
  std::atomic<uint64_t> written_{0};

  std::mutex sync_mu_;
  std::condition_variable sync_cv_;
  bool syncing_ = false;
  uint64_t durable_ = 0;
};

// Encodes (snapshotter, parent, child) as one children-index key; exposed for tests.
std::string ChildIndexKey(const std::string& snapshotter, const std::string& parent,
                          const std::string& child);

}  // namespace strata::metadata
