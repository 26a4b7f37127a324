#include "metadata/store.h"

#include <rocksdb/db.h>
#include <rocksdb/env.h>
#include <rocksdb/options.h>
#include <rocksdb/write_batch.h>

#include <algorithm>

#include "core/fs.h"
#include "core/quote.h"
#include "metadata/records.pb.h"
#include "metadata/wal_file_system.h"

namespace strata::metadata {
namespace {

constexpr char kMetaFamily[] = "meta";
constexpr char kSnapshotsFamily[] = "snapshots";
constexpr char kChildrenFamily[] = "snapshot_children";
constexpr char kContentFamily[] = "content";
constexpr char kImagesFamily[] = "images";
constexpr char kTasksFamily[] = "tasks";
constexpr char kSchemaVersionKey[] = "schema_version";
constexpr char kNextSnapshotIdKey[] = "next_snapshot_id";

std::string EncodeU64(uint64_t v) {
  std::string out(8, '\0');
  for (int i = 7; i >= 0; i--) {
    out[static_cast<size_t>(i)] = static_cast<char>(v & 0xff);
    v >>= 8;
  }
  return out;
}

bool DecodeU64(const std::string& s, uint64_t* v) {
  if (s.size() != 8) return false;
  uint64_t out = 0;
  for (char c : s) out = (out << 8) | static_cast<unsigned char>(c);
  *v = out;
  return true;
}

std::string EncodeRecord(const SnapshotRecord& r) {
  v1::SnapshotRecord pb;
  pb.set_id(r.id);
  pb.set_kind(static_cast<v1::SnapshotKind>(r.kind));
  pb.set_parent(r.parent);
  for (const auto& [k, v] : r.labels) (*pb.mutable_labels())[k] = v;
  pb.set_created_unix_nanos(r.created_unix_nanos);
  pb.set_updated_unix_nanos(r.updated_unix_nanos);
  pb.set_usage_size_bytes(r.usage_size_bytes);
  pb.set_usage_inodes(r.usage_inodes);
  return pb.SerializeAsString();
}

// Splits a length-prefixed string off the front of `encoded`.
bool TakePrefixed(std::string_view& encoded, std::string* out) {
  uint64_t len = 0;
  if (encoded.size() < 8 || !DecodeU64(std::string(encoded.substr(0, 8)), &len) ||
      len > encoded.size() - 8) {
    return false;
  }
  *out = std::string(encoded.substr(8, len));
  encoded.remove_prefix(8 + len);
  return true;
}

std::string Prefixed(const std::string& s) { return EncodeU64(s.size()) + s; }

std::string SnapshotKey(const std::string& snapshotter, const std::string& key) {
  return Prefixed(snapshotter) + key;
}

Result<SnapshotRecord> DecodeRecord(const std::string& db_key, const std::string& value,
                                    const std::string& path) {
  std::string_view rest = db_key;
  std::string snapshotter;
  if (!TakePrefixed(rest, &snapshotter)) {
    return Status::DataLoss("metadata store " + path + ": corrupt snapshot key");
  }
  std::string key(rest);
  v1::SnapshotRecord pb;
  if (!pb.ParseFromString(value) || pb.id() == 0 || pb.kind() < v1::SNAPSHOT_KIND_VIEW ||
      pb.kind() > v1::SNAPSHOT_KIND_COMMITTED) {
    return Status::DataLoss("metadata store " + path + ": undecodable snapshot record for key \"" +
                            key + "\"");
  }
  SnapshotRecord r;
  r.snapshotter = snapshotter;
  r.key = key;
  r.id = pb.id();
  r.kind = static_cast<SnapshotKind>(pb.kind());
  r.parent = pb.parent();
  r.labels.insert(pb.labels().begin(), pb.labels().end());
  r.created_unix_nanos = pb.created_unix_nanos();
  r.updated_unix_nanos = pb.updated_unix_nanos();
  r.usage_size_bytes = pb.usage_size_bytes();
  r.usage_inodes = pb.usage_inodes();
  return r;
}

std::string EncodeContent(const ContentRecord& r) {
  v1::ContentRecord pb;
  pb.set_size(r.size_bytes);
  for (const auto& [k, v] : r.labels) (*pb.mutable_labels())[k] = v;
  pb.set_created_unix_nanos(r.created_unix_nanos);
  pb.set_updated_unix_nanos(r.updated_unix_nanos);
  return pb.SerializeAsString();
}

Result<ContentRecord> DecodeContent(const std::string& digest, const std::string& value,
                                    const std::string& path) {
  v1::ContentRecord pb;
  if (!pb.ParseFromString(value) || pb.size() < 0) {
    return Status::DataLoss("metadata store " + path + ": undecodable content record for " +
                            Quote(digest));
  }
  ContentRecord r;
  r.digest = digest;
  r.size_bytes = pb.size();
  r.labels.insert(pb.labels().begin(), pb.labels().end());
  r.created_unix_nanos = pb.created_unix_nanos();
  r.updated_unix_nanos = pb.updated_unix_nanos();
  return r;
}

std::string EncodeImage(const ImageRecord& r) {
  v1::ImageRecord pb;
  v1::Descriptor* target = pb.mutable_target();
  target->set_media_type(r.target.media_type);
  target->set_digest(r.target.digest);
  target->set_size(r.target.size_bytes);
  for (const auto& [k, v] : r.target.annotations) (*target->mutable_annotations())[k] = v;
  for (const auto& [k, v] : r.labels) (*pb.mutable_labels())[k] = v;
  pb.set_created_unix_nanos(r.created_unix_nanos);
  pb.set_updated_unix_nanos(r.updated_unix_nanos);
  return pb.SerializeAsString();
}

Result<ImageRecord> DecodeImage(const std::string& name, const std::string& value,
                                const std::string& path) {
  v1::ImageRecord pb;
  if (!pb.ParseFromString(value) || !pb.has_target()) {
    return Status::DataLoss("metadata store " + path + ": undecodable image record for " +
                            Quote(name));
  }
  ImageRecord r;
  r.name = name;
  r.target.media_type = pb.target().media_type();
  r.target.digest = pb.target().digest();
  r.target.size_bytes = pb.target().size();
  r.target.annotations.insert(pb.target().annotations().begin(), pb.target().annotations().end());
  r.labels.insert(pb.labels().begin(), pb.labels().end());
  r.created_unix_nanos = pb.created_unix_nanos();
  r.updated_unix_nanos = pb.updated_unix_nanos();
  return r;
}

Status FromRocks(const rocksdb::Status& s, const std::string& what, const std::string& path) {
  if (s.ok()) return Status::Ok();
  std::string msg = "metadata store " + path + ": " + what + ": " + s.ToString();
  if (s.IsNotFound()) return Status::NotFound(msg);
  if (s.IsCorruption()) return Status::DataLoss(msg);
  if (s.IsIOError()) return Status::Unavailable(msg);
  return Status::Internal(msg);
}

}  // namespace

std::string ChildIndexKey(const std::string& snapshotter, const std::string& parent,
                          const std::string& child) {
  // Length-prefixed so that keys containing any byte (NUL included) stay unambiguous.
  return Prefixed(snapshotter) + Prefixed(parent) + child;
}

Batch::Batch() = default;
Batch::~Batch() = default;

void Batch::PutSnapshot(const SnapshotRecord& record) {
  ops_.push_back({Table::kSnapshots, false, SnapshotKey(record.snapshotter, record.key),
                  EncodeRecord(record)});
}

void Batch::DeleteSnapshot(const std::string& snapshotter, const std::string& key) {
  ops_.push_back({Table::kSnapshots, true, SnapshotKey(snapshotter, key), ""});
}

void Batch::AddChild(const std::string& snapshotter, const std::string& parent,
                     const std::string& child) {
  ops_.push_back({Table::kChildren, false, ChildIndexKey(snapshotter, parent, child), ""});
}

void Batch::RemoveChild(const std::string& snapshotter, const std::string& parent,
                        const std::string& child) {
  ops_.push_back({Table::kChildren, true, ChildIndexKey(snapshotter, parent, child), ""});
}

void Batch::SetNextSnapshotId(uint64_t next_id) {
  ops_.push_back({Table::kMeta, false, kNextSnapshotIdKey, EncodeU64(next_id)});
}

void Batch::PutContent(const ContentRecord& record) {
  ops_.push_back({Table::kContent, false, record.digest, EncodeContent(record)});
}

void Batch::DeleteContent(const std::string& digest) {
  ops_.push_back({Table::kContent, true, digest, ""});
}

void Batch::PutImage(const ImageRecord& record) {
  ops_.push_back({Table::kImages, false, record.name, EncodeImage(record)});
}

void Batch::DeleteImage(const std::string& name) {
  ops_.push_back({Table::kImages, true, name, ""});
}

void Batch::PutTask(const std::string& id, const std::string& encoded) {
  ops_.push_back({Table::kTasks, false, id, encoded});
}

void Batch::DeleteTask(const std::string& id) { ops_.push_back({Table::kTasks, true, id, ""}); }

Result<std::unique_ptr<Store>> Store::Open(const std::string& path) {
  RETURN_IF_ERROR(fs::MakeDirs(path, 0700).WithContext("metadata store"));
  std::unique_ptr<Store> store(new Store());
  store->path_ = path;

  rocksdb::DBOptions options;
  options.create_if_missing = true;
  options.create_missing_column_families = true;
  options.paranoid_checks = true;
  options.max_background_jobs = 2;
  options.keep_log_file_num = 4;
  options.info_log_level = rocksdb::InfoLogLevel::WARN_LEVEL;
  // The write-ahead log grows in zero-filled chunks (see wal_file_system.h): its
  // fdatasync is then one data flush, without a file system journal commit.
  store->env_ =
      rocksdb::NewCompositeEnv(NewWalPreallocatingFileSystem(rocksdb::FileSystem::Default()));
  options.env = store->env_.get();

  // Open every family present (a newer schema may have added some) so that the schema
  // check below, not RocksDB, decides whether we can use the store.
  std::vector<std::string> families;
  rocksdb::Status ls = rocksdb::DB::ListColumnFamilies(options, path, &families);
  if (!ls.ok()) families = {rocksdb::kDefaultColumnFamilyName};
  // Families this version added to schema 1 are created here when missing.
  for (const char* name : {kMetaFamily, kSnapshotsFamily, kChildrenFamily, kContentFamily,
                           kImagesFamily, kTasksFamily}) {
    if (std::find(families.begin(), families.end(), name) == families.end()) {
      families.emplace_back(name);
    }
  }
  rocksdb::ColumnFamilyOptions cf_options;
  std::vector<rocksdb::ColumnFamilyDescriptor> descriptors;
  for (const auto& name : families) descriptors.emplace_back(name, cf_options);

  rocksdb::DB* raw = nullptr;
  rocksdb::Status s = rocksdb::DB::Open(options, path, descriptors, &store->handles_, &raw);
  if (!s.ok()) {
    if (s.IsIOError() && s.ToString().find("lock") != std::string::npos) {
      return Status::FailedPrecondition("metadata store " + path +
                                        " is in use by another process: " + s.ToString());
    }
    return Status::DataLoss("cannot open metadata store " + path +
                            " (corrupt or unreadable): " + s.ToString());
  }
  store->db_.reset(raw);
  for (size_t i = 0; i < families.size(); i++) {
    if (families[i] == kMetaFamily) store->meta_ = store->handles_[i];
    if (families[i] == kSnapshotsFamily) store->snapshots_ = store->handles_[i];
    if (families[i] == kChildrenFamily) store->children_ = store->handles_[i];
    if (families[i] == kContentFamily) store->content_ = store->handles_[i];
    if (families[i] == kImagesFamily) store->images_ = store->handles_[i];
    if (families[i] == kTasksFamily) store->tasks_ = store->handles_[i];
  }

  std::string version;
  s = store->db_->Get(rocksdb::ReadOptions(), store->meta_, kSchemaVersionKey, &version);
  if (s.IsNotFound()) {
    // A new store, or one that never finished its first write: stamp it.
    rocksdb::WriteOptions wo;
    wo.sync = true;
    s = store->db_->Put(wo, store->meta_, kSchemaVersionKey, EncodeU64(kSchemaVersion));
    RETURN_IF_ERROR(FromRocks(s, "write schema version", path));
    store->schema_version_ = kSchemaVersion;
  } else {
    RETURN_IF_ERROR(FromRocks(s, "read schema version", path));
    uint64_t v = 0;
    if (!DecodeU64(version, &v)) {
      return Status::DataLoss("metadata store " + path + ": schema version record is corrupt");
    }
    if (v > kSchemaVersion) {
      return Status::FailedPrecondition("metadata store " + path + " has schema version " +
                                        std::to_string(v) +
                                        ", newer than the version this stratad supports (" +
                                        std::to_string(kSchemaVersion) + "); upgrade stratad");
    }
    store->schema_version_ = static_cast<uint32_t>(v);
  }
  return store;
}

Store::~Store() {
  if (db_) {
    db_->FlushWAL(true).PermitUncheckedError();
    for (auto* h : handles_) db_->DestroyColumnFamilyHandle(h).PermitUncheckedError();
    db_->Close().PermitUncheckedError();
  }
}

rocksdb::ColumnFamilyHandle* Store::FamilyOf(Batch::Table table) const {
  switch (table) {
    case Batch::Table::kMeta:
      return meta_;
    case Batch::Table::kSnapshots:
      return snapshots_;
    case Batch::Table::kChildren:
      return children_;
    case Batch::Table::kContent:
      return content_;
    case Batch::Table::kImages:
      return images_;
    case Batch::Table::kTasks:
      return tasks_;
  }
  return nullptr;
}

Result<uint64_t> Store::Apply(Batch& batch) {
  rocksdb::WriteBatch wb;
  for (const auto& op : batch.ops_) {
    rocksdb::ColumnFamilyHandle* family = FamilyOf(op.table);
    if (op.erase) {
      wb.Delete(family, op.key);
    } else {
      wb.Put(family, op.key, op.value);
    }
  }
  std::lock_guard<std::mutex> lock(write_mu_);
  rocksdb::WriteOptions wo;
  wo.sync = false;
  RETURN_IF_ERROR(FromRocks(db_->Write(wo, &wb), "write", path_));
  return written_.fetch_add(1, std::memory_order_acq_rel) + 1;
}

Status Store::WaitDurable(uint64_t ticket) {
  std::unique_lock<std::mutex> lock(sync_mu_);
  while (durable_ < ticket) {
    if (syncing_) {
      sync_cv_.wait(lock);
      continue;
    }
    // Become the leader: one fsync covers every batch applied so far.
    syncing_ = true;
    uint64_t target = written_.load(std::memory_order_acquire);
    lock.unlock();
    rocksdb::Status s = db_->SyncWAL();
    lock.lock();
    syncing_ = false;
    if (s.ok()) durable_ = std::max(durable_, target);
    sync_cv_.notify_all();
    if (!s.ok()) return FromRocks(s, "sync write-ahead log", path_);
  }
  return Status::Ok();
}

Status Store::Commit(Batch& batch) {
  ASSIGN_OR_RETURN(uint64_t ticket, Apply(batch));
  return WaitDurable(ticket);
}

Result<std::vector<SnapshotRecord>> Store::LoadSnapshots() const {
  std::vector<SnapshotRecord> out;
  std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator(rocksdb::ReadOptions(), snapshots_));
  for (it->SeekToFirst(); it->Valid(); it->Next()) {
    ASSIGN_OR_RETURN(SnapshotRecord r,
                     DecodeRecord(it->key().ToString(), it->value().ToString(), path_));
    out.push_back(std::move(r));
  }
  RETURN_IF_ERROR(FromRocks(it->status(), "scan snapshots", path_));
  return out;
}

Result<SnapshotRecord> Store::GetSnapshot(const std::string& snapshotter,
                                          const std::string& key) const {
  std::string value;
  std::string db_key = SnapshotKey(snapshotter, key);
  rocksdb::Status s = db_->Get(rocksdb::ReadOptions(), snapshots_, db_key, &value);
  if (s.IsNotFound()) return Status::NotFound("snapshot " + Quote(key) + " does not exist");
  RETURN_IF_ERROR(FromRocks(s, "read snapshot", path_));
  return DecodeRecord(db_key, value, path_);
}

Result<std::vector<ChildLink>> Store::LoadChildren() const {
  std::vector<ChildLink> out;
  std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator(rocksdb::ReadOptions(), children_));
  for (it->SeekToFirst(); it->Valid(); it->Next()) {
    std::string k = it->key().ToString();
    std::string_view rest = k;
    ChildLink link;
    if (!TakePrefixed(rest, &link.snapshotter) || !TakePrefixed(rest, &link.parent)) {
      return Status::DataLoss("metadata store " + path_ + ": corrupt children index entry");
    }
    link.child = std::string(rest);
    out.push_back(std::move(link));
  }
  RETURN_IF_ERROR(FromRocks(it->status(), "scan children index", path_));
  return out;
}

Result<ContentRecord> Store::GetContent(const std::string& digest) const {
  std::string value;
  rocksdb::Status s = db_->Get(rocksdb::ReadOptions(), content_, digest, &value);
  if (s.IsNotFound()) return Status::NotFound("content " + Quote(digest) + " does not exist");
  RETURN_IF_ERROR(FromRocks(s, "read content " + Quote(digest), path_));
  return DecodeContent(digest, value, path_);
}

Result<std::vector<ContentRecord>> Store::LoadContent() const {
  std::vector<ContentRecord> out;
  std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator(rocksdb::ReadOptions(), content_));
  for (it->SeekToFirst(); it->Valid(); it->Next()) {
    ASSIGN_OR_RETURN(ContentRecord r,
                     DecodeContent(it->key().ToString(), it->value().ToString(), path_));
    out.push_back(std::move(r));
  }
  RETURN_IF_ERROR(FromRocks(it->status(), "scan content", path_));
  return out;
}

Result<ImageRecord> Store::GetImage(const std::string& name) const {
  std::string value;
  rocksdb::Status s = db_->Get(rocksdb::ReadOptions(), images_, name, &value);
  if (s.IsNotFound()) return Status::NotFound("image " + Quote(name) + " does not exist");
  RETURN_IF_ERROR(FromRocks(s, "read image " + Quote(name), path_));
  return DecodeImage(name, value, path_);
}

Result<std::vector<ImageRecord>> Store::LoadImages() const {
  std::vector<ImageRecord> out;
  std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator(rocksdb::ReadOptions(), images_));
  for (it->SeekToFirst(); it->Valid(); it->Next()) {
    ASSIGN_OR_RETURN(ImageRecord r,
                     DecodeImage(it->key().ToString(), it->value().ToString(), path_));
    out.push_back(std::move(r));
  }
  RETURN_IF_ERROR(FromRocks(it->status(), "scan images", path_));
  return out;
}

Result<std::vector<std::pair<std::string, std::string>>> Store::LoadTasks() const {
  std::vector<std::pair<std::string, std::string>> out;
  std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator(rocksdb::ReadOptions(), tasks_));
  for (it->SeekToFirst(); it->Valid(); it->Next()) {
    out.emplace_back(it->key().ToString(), it->value().ToString());
  }
  RETURN_IF_ERROR(FromRocks(it->status(), "scan tasks", path_));
  return out;
}

Result<uint64_t> Store::NextSnapshotId() const {
  std::string value;
  rocksdb::Status s = db_->Get(rocksdb::ReadOptions(), meta_, kNextSnapshotIdKey, &value);
  if (s.IsNotFound()) return uint64_t{1};
  RETURN_IF_ERROR(FromRocks(s, "read next snapshot id", path_));
  uint64_t v = 0;
  if (!DecodeU64(value, &v)) {
    return Status::DataLoss("metadata store " + path_ + ": next snapshot id record is corrupt");
  }
  return v;
}

}  // namespace strata::metadata
