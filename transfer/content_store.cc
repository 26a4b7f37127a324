#include "transfer/content_store.h"

#include <fcntl.h>
#include <spdlog/spdlog.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <condition_variable>
#include <mutex>
#include <set>
#include <sstream>

#include "core/clock.h"
#include "core/digest.h"
#include "core/filters.h"
#include "core/fs.h"
#include "core/quote.h"
#include "snapshotter/snapshotter.h"

namespace strata::transfer {

void DropEmptyValues(Labels& labels) {
  std::erase_if(labels, [](const auto& label) { return label.second.empty(); });
}

bool ApplyMapFieldPath(std::string_view field, const std::string& path, const Labels& given,
                       Labels& current) {
  if (path == field) {
    current = given;
    return true;
  }
  if (path.size() <= field.size() + 1 || path.compare(0, field.size(), field) != 0 ||
      path[field.size()] != '.') {
    return false;
  }
  std::string key = path.substr(field.size() + 1);
  auto it = given.find(key);
  if (it == given.end() || it->second.empty()) {
    current.erase(key);
  } else {
    current[key] = it->second;
  }
  return true;
}

std::optional<std::string> MapFieldValue(const std::vector<std::string>& fieldpath, size_t rest,
                                         const Labels& map) {
  if (rest >= fieldpath.size()) return std::nullopt;
  std::string key;
  for (size_t i = rest; i < fieldpath.size(); i++) {
    if (i > rest) key += ".";
    key += fieldpath[i];
  }
  auto it = map.find(key);
  if (it == map.end()) return std::nullopt;
  return it->second;
}

namespace {

using Clock = std::chrono::steady_clock;

constexpr char kSha256Prefix[] = "sha256:";

ContentInfo ToInfo(const metadata::ContentRecord& r) {
  return ContentInfo{r.digest, r.size_bytes, r.labels, r.created_unix_nanos, r.updated_unix_nanos};
}

// Only sha256 blobs are stored; callers get InvalidArgument for anything else.
Status ValidateSha256(const std::string& digest) {
  RETURN_IF_ERROR(ValidateDigest(digest));
  if (digest.rfind(kSha256Prefix, 0) != 0) {
    return Status::InvalidArgument("unsupported digest " + Quote(digest) +
                                   ": the content store holds sha256 blobs only");
  }
  return Status::Ok();
}

std::string HexOf(const std::string& sha256_digest) {
  return sha256_digest.substr(sizeof(kSha256Prefix) - 1);
}

bool IsSha256Hex(const std::string& name) { return ValidateDigest(kSha256Prefix + name).ok(); }

class ContentAdaptor : public filters::Adaptor {
 public:
  explicit ContentAdaptor(const ContentInfo& info) : info_(info) {}
  std::optional<std::string> Field(const std::vector<std::string>& path) const override {
    if (path.empty()) return std::nullopt;
    if (path[0] == "digest") return info_.digest;
    if (path[0] == "size") return std::to_string(info_.size_bytes);
    if (path[0] == "labels") return MapFieldValue(path, 1, info_.labels);
    return std::nullopt;
  }

 private:
  const ContentInfo& info_;
};

// Writes a small file without fsync: ingest bookkeeping that a crash may lose (the
// ingest then starts over).
Status WriteSmallFile(const std::string& path, const std::string& data) {
  int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) return Status::FromErrno(errno, "create " + path);
  size_t done = 0;
  while (done < data.size()) {
    ssize_t n = ::write(fd, data.data() + done, data.size() - done);
    if (n < 0) {
      if (errno == EINTR) continue;
      int err = errno;
      ::close(fd);
      return Status::FromErrno(err, "write " + path);
    }
    done += static_cast<size_t>(n);
  }
  ::close(fd);
  return Status::Ok();
}

// The ingest's "meta" file: one "key value" pair per line.
struct IngestMeta {
  std::string expected_digest;
  int64_t expected_size = kUnknownSize;
  int64_t started_unix_nanos = 0;

  std::string Encode() const {
    return "expected_digest " + expected_digest + "\nexpected_size " +
           std::to_string(expected_size) + "\nstarted_unix_nanos " +
           std::to_string(started_unix_nanos) + "\n";
  }

  static std::optional<IngestMeta> Decode(const std::string& text) {
    IngestMeta meta;
    std::istringstream in(text);
    std::string line;
    int fields = 0;
    while (std::getline(in, line)) {
      auto space = line.find(' ');
      if (space == std::string::npos) continue;
      std::string key = line.substr(0, space);
      std::string value = line.substr(space + 1);
      try {
        if (key == "expected_digest") {
          meta.expected_digest = value;
          fields++;
        } else if (key == "expected_size") {
          meta.expected_size = std::stoll(value);
          fields++;
        } else if (key == "started_unix_nanos") {
          meta.started_unix_nanos = std::stoll(value);
          fields++;
        }
      } catch (...) {
        return std::nullopt;
      }
    }
    if (fields != 3) return std::nullopt;
    return meta;
  }
};

int64_t MtimeUnixNanos(const struct stat& st) {
  return static_cast<int64_t>(st.st_mtim.tv_sec) * 1000000000 + st.st_mtim.tv_nsec;
}

class FileReader : public ContentReader {
 public:
  FileReader(int fd, int64_t size, std::string digest)
      : fd_(fd), size_(size), digest_(std::move(digest)) {}
  ~FileReader() override { ::close(fd_); }
  FileReader(const FileReader&) = delete;
  FileReader& operator=(const FileReader&) = delete;

  int64_t Size() const override { return size_; }

  Result<size_t> ReadAt(void* buf, size_t n, int64_t offset) const override {
    if (offset < 0) return Status::InvalidArgument("negative read offset in " + digest_);
    size_t done = 0;
    while (done < n) {
      ssize_t got = ::pread(fd_, static_cast<char*>(buf) + done, n - done,
                            static_cast<off_t>(offset) + static_cast<off_t>(done));
      if (got < 0) {
        if (errno == EINTR) continue;
        return Status::FromErrno(errno, "read blob " + digest_);
      }
      if (got == 0) break;
      done += static_cast<size_t>(got);
    }
    return done;
  }

 private:
  int fd_;
  int64_t size_;
  std::string digest_;
};

class Store;

class Writer : public ContentWriter {
 public:
  Writer(Store* store, std::string ref, std::string dir, int fd, IngestMeta meta, int64_t offset,
         std::unique_ptr<Sha256> hash)
      : store_(store),
        ref_(std::move(ref)),
        dir_(std::move(dir)),
        fd_(fd),
        meta_(std::move(meta)),
        offset_(offset),
        hash_(std::move(hash)) {}
  ~Writer() override;
  Writer(const Writer&) = delete;
  Writer& operator=(const Writer&) = delete;

  const std::string& Ref() const override { return ref_; }
  int64_t Offset() const override { return offset_; }
  Status Write(const void* data, size_t n) override;
  Result<ContentInfo> Commit(const Labels& labels) override;
  Status Abort() override;

 private:
  Status CheckOpen() const;
  // Closes the file and, with `discard`, removes the ingest; releases the ref.
  void Finish(bool discard);

  Store* store_;
  std::string ref_;
  std::string dir_;
  int fd_;
  IngestMeta meta_;
  int64_t offset_;
  std::unique_ptr<Sha256> hash_;
  bool finished_ = false;
};

class Store : public ContentStore {
 public:
  Store(const std::string& root, metadata::Store* store, ContentStoreOptions options)
      : content_dir_(root + "/content"),
        blobs_dir_(content_dir_ + "/blobs/sha256"),
        ingest_dir_(content_dir_ + "/ingest"),
        store_(store),
        options_(options) {}

  Status Recover();

  Result<ContentInfo> Info(const std::string& digest) override;
  Result<std::vector<ContentInfo>> List(const std::vector<std::string>& filters) override;
  Result<ContentInfo> UpdateLabels(const std::string& digest, const Labels& labels,
                                   const std::vector<std::string>& fieldpaths) override;
  Status Delete(const std::string& digest, DeleteMode mode) override;
  Result<std::unique_ptr<ContentReader>> OpenReader(const std::string& digest) override;
  Result<std::unique_ptr<ContentWriter>> OpenWriter(const std::string& ref,
                                                    const std::string& expected_digest,
                                                    int64_t expected_size) override;
  Result<std::vector<IngestStatus>> ListIngests() override;
  Status AbortIngest(const std::string& ref) override;
  Result<int> RemoveStaleIngests(std::chrono::seconds max_age) override;
  Status WaitForContent(const std::string& digest, const std::string& ref,
                        Clock::time_point deadline) override;
  void Protect(const std::string& digest, Clock::time_point until) override;
  bool IsProtected(const std::string& digest) override;

  // --- for Writer ---
  std::string BlobPath(const std::string& digest) const { return blobs_dir_ + "/" + HexOf(digest); }
  // Moves the verified, synced data file into blobs/ and records it. AlreadyExists when
  // the digest is committed already.
  Result<ContentInfo> CommitBlob(const std::string& data_path, const std::string& digest,
                                 int64_t size, Labels labels);
  // Protects `digest` for fresh_protection from now, never shortening a longer one.
  void ProtectFresh(const std::string& digest) {
    std::lock_guard<std::mutex> lock(mu_);
    ProtectFreshLocked(digest);
  }
  void ReleaseRef(const std::string& ref);

 private:
  // Serialises changes to one digest (commit, label update, delete) without a global
  // lock: held by at most one thread per digest.
  class DigestLock {
   public:
    DigestLock(Store* store, std::string digest) : store_(store), digest_(std::move(digest)) {
      std::unique_lock<std::mutex> lock(store_->mu_);
      store_->cv_.wait(lock, [&] { return !store_->busy_digests_.contains(digest_); });
      store_->busy_digests_.insert(digest_);
    }
    ~DigestLock() {
      std::lock_guard<std::mutex> lock(store_->mu_);
      store_->busy_digests_.erase(digest_);
      store_->cv_.notify_all();
    }
    DigestLock(const DigestLock&) = delete;
    DigestLock& operator=(const DigestLock&) = delete;

   private:
    Store* store_;
    std::string digest_;
  };

  std::string IngestDir(const std::string& ref) const {
    return ingest_dir_ + "/" + HexOf(Sha256Digest(ref));
  }
  // Takes `ref` for a writer (or an abort); Unavailable when someone holds it.
  Status TryLockRef(const std::string& ref);
  // Prepares the ingest directory of `ref` (held by the caller) and opens its data file.
  Result<std::unique_ptr<ContentWriter>> OpenIngest(const std::string& ref,
                                                    const std::string& expected_digest,
                                                    int64_t expected_size);
  bool IsProtectedLocked(const std::string& digest);
  void ProtectFreshLocked(const std::string& digest);

  const std::string content_dir_;
  const std::string blobs_dir_;
  const std::string ingest_dir_;
  metadata::Store* const store_;
  const ContentStoreOptions options_;

  // One mutex for the small in-memory state below; never held across disk I/O except
  // WaitForContent's record lookup (which must not miss a commit's wake-up).
  std::mutex mu_;
  std::condition_variable cv_;                            // any ref or digest released, any commit
  std::map<std::string, Clock::time_point> locked_refs_;  // ref -> since
  std::set<std::string> busy_digests_;
  std::map<std::string, Clock::time_point> protected_until_;
};

// ---- Writer ----------------------------------------------------------------------------

Writer::~Writer() {
  if (!finished_) Finish(/*discard=*/false);
}

Status Writer::CheckOpen() const {
  if (finished_) {
    return Status::FailedPrecondition("ingest " + Quote(ref_) +
                                      " was already committed or aborted");
  }
  return Status::Ok();
}

void Writer::Finish(bool discard) {
  finished_ = true;
  if (fd_ >= 0) ::close(fd_);
  fd_ = -1;
  if (discard) {
    Status s = fs::RemoveAll(dir_);
    if (!s.ok()) spdlog::warn("content store: cannot remove ingest {}: {}", dir_, s.ToString());
  }
  store_->ReleaseRef(ref_);
}

Status Writer::Write(const void* data, size_t n) {
  RETURN_IF_ERROR(CheckOpen());
  if (meta_.expected_size != kUnknownSize &&
      offset_ + static_cast<int64_t>(n) > meta_.expected_size) {
    return Status::InvalidArgument("ingest " + Quote(ref_) + ": writing " + std::to_string(n) +
                                   " bytes at offset " + std::to_string(offset_) +
                                   " exceeds the expected size " +
                                   std::to_string(meta_.expected_size));
  }
  const char* p = static_cast<const char*>(data);
  size_t done = 0;
  while (done < n) {
    ssize_t wrote = ::pwrite(fd_, p + done, n - done, static_cast<off_t>(offset_ + done));
    if (wrote < 0) {
      if (errno == EINTR) continue;
      int err = errno;
      // Keep the file equal to what the running digest has seen.
      (void)!::ftruncate(fd_, static_cast<off_t>(offset_));
      return Status::FromErrno(err, "write ingest " + Quote(ref_));
    }
    done += static_cast<size_t>(wrote);
  }
  hash_->Update(std::string_view(p, n));
  offset_ += static_cast<int64_t>(n);
  return Status::Ok();
}

Result<ContentInfo> Writer::Commit(const Labels& labels) {
  RETURN_IF_ERROR(CheckOpen());
  RETURN_IF_ERROR(snapshotter::ValidateLabels(labels));
  std::string digest = hash_->Digest();
  bool size_ok = meta_.expected_size == kUnknownSize || offset_ == meta_.expected_size;
  bool digest_ok = meta_.expected_digest.empty() || digest == meta_.expected_digest;
  if (!size_ok || !digest_ok) {
    Finish(/*discard=*/true);
    std::string want = meta_.expected_digest.empty()
                           ? "of size " + std::to_string(meta_.expected_size)
                           : meta_.expected_digest;
    return Status::DataLoss("blob " + want + " does not match: got " + digest + "/" +
                            std::to_string(offset_) + " (ingest " + Quote(ref_) + ")");
  }
  if (::fchmod(fd_, 0444) != 0 || ::fsync(fd_) != 0) {
    Status s = Status::FromErrno(errno, "sync ingest " + Quote(ref_));
    Finish(/*discard=*/false);
    return s;
  }
  ::close(fd_);
  fd_ = -1;
  Labels kept = labels;
  DropEmptyValues(kept);
  Result<ContentInfo> info = store_->CommitBlob(dir_ + "/data", digest, offset_, std::move(kept));
  // Committed or already there: the ingest has served its purpose. Any other error
  // keeps it, so that a retry resumes.
  bool done = info.ok() || info.status().IsAlreadyExists();
  Finish(/*discard=*/done);
  return info;
}

Status Writer::Abort() {
  RETURN_IF_ERROR(CheckOpen());
  Finish(/*discard=*/true);
  return Status::Ok();
}

// ---- Store -----------------------------------------------------------------------------

Status Store::Recover() {
  RETURN_IF_ERROR(fs::MakeDirs(blobs_dir_, 0755).WithContext("content store"));
  RETURN_IF_ERROR(fs::MakeDirs(ingest_dir_, 0755).WithContext("content store"));

  ASSIGN_OR_RETURN(std::vector<metadata::ContentRecord> records, store_->LoadContent());
  ASSIGN_OR_RETURN(std::vector<std::string> names, fs::ListDir(blobs_dir_));
  std::set<std::string> files(names.begin(), names.end());
  std::set<std::string> recorded;

  metadata::Batch batch;
  for (const auto& r : records) {
    if (r.digest.rfind(kSha256Prefix, 0) != 0) continue;  // not ours to judge
    recorded.insert(HexOf(r.digest));
    if (!files.contains(HexOf(r.digest))) {
      spdlog::warn("content store: {} is recorded but its blob is missing; dropping the record",
                   r.digest);
      batch.DeleteContent(r.digest);
    }
  }
  for (const auto& name : files) {
    if (recorded.contains(name)) continue;
    std::string path = blobs_dir_ + "/" + name;
    struct stat st;
    bool regular = ::lstat(path.c_str(), &st) == 0 && S_ISREG(st.st_mode);
    if (regular && IsSha256Hex(name)) {
      // A commit interrupted between rename and record, or a delete between record and
      // unlink: the bytes are good if they hash to their name, so keep them (unlabelled,
      // a later collection removes them when nothing refers to them).
      auto digest = Sha256DigestOfFile(path);
      if (digest.ok() && *digest == kSha256Prefix + name) {
        spdlog::info("content store: recording unrecorded blob {}", *digest);
        int64_t now = NowUnixNanos();
        batch.PutContent({*digest, static_cast<int64_t>(st.st_size), {}, now, now});
        continue;
      }
    }
    spdlog::warn("content store: removing {} (not a blob whose name is its digest)", path);
    RETURN_IF_ERROR(fs::RemoveAll(path));
  }
  RETURN_IF_ERROR(store_->Commit(batch).WithContext("content store recovery"));
  if (options_.stale_ingest_age.count() > 0) {
    RETURN_IF_ERROR(RemoveStaleIngests(options_.stale_ingest_age).status());
  }
  return Status::Ok();
}

Result<ContentInfo> Store::Info(const std::string& digest) {
  RETURN_IF_ERROR(ValidateDigest(digest));
  ASSIGN_OR_RETURN(metadata::ContentRecord r, store_->GetContent(digest));
  return ToInfo(r);
}

Result<std::vector<ContentInfo>> Store::List(const std::vector<std::string>& filter_strings) {
  ASSIGN_OR_RETURN(filters::Filter filter, filters::Filter::ParseAll(filter_strings));
  ASSIGN_OR_RETURN(std::vector<metadata::ContentRecord> records, store_->LoadContent());
  std::vector<ContentInfo> out;
  for (const auto& r : records) {
    ContentInfo info = ToInfo(r);
    if (filter.MatchesAll() || filter.Match(ContentAdaptor(info))) out.push_back(std::move(info));
  }
  return out;
}

Result<ContentInfo> Store::UpdateLabels(const std::string& digest, const Labels& labels,
                                        const std::vector<std::string>& fieldpaths) {
  RETURN_IF_ERROR(ValidateDigest(digest));
  DigestLock lock(this, digest);
  ASSIGN_OR_RETURN(metadata::ContentRecord r, store_->GetContent(digest));
  if (fieldpaths.empty()) {
    r.labels = labels;
  } else {
    for (const auto& path : fieldpaths) {
      if (!ApplyMapFieldPath("labels", path, labels, r.labels)) {
        return Status::InvalidArgument("cannot update field " + Quote(path) + " of content " +
                                       digest + ": only labels can change");
      }
    }
  }
  DropEmptyValues(r.labels);
  RETURN_IF_ERROR(snapshotter::ValidateLabels(r.labels));
  r.updated_unix_nanos = NowUnixNanos();
  metadata::Batch batch;
  batch.PutContent(r);
  RETURN_IF_ERROR(store_->Commit(batch));
  return ToInfo(r);
}

Status Store::Delete(const std::string& digest, DeleteMode mode) {
  RETURN_IF_ERROR(ValidateDigest(digest));
  DigestLock lock(this, digest);
  if (mode == DeleteMode::kUnlessProtected && IsProtected(digest)) {
    return Status::FailedPrecondition("content " + digest + " is protected as fresh content");
  }
  RETURN_IF_ERROR(store_->GetContent(digest).status());
  metadata::Batch batch;
  batch.DeleteContent(digest);
  RETURN_IF_ERROR(store_->Commit(batch));
  // The record is durably gone; a crash before the unlink leaves a file that the next
  // start records again, which a later collection removes.
  if (digest.rfind(kSha256Prefix, 0) == 0 && ::unlink(BlobPath(digest).c_str()) != 0 &&
      errno != ENOENT) {
    spdlog::warn("content store: cannot remove blob file of {}: {}", digest,
                 Status::FromErrno(errno, "unlink").ToString());
  }
  return Status::Ok();
}

Result<std::unique_ptr<ContentReader>> Store::OpenReader(const std::string& digest) {
  RETURN_IF_ERROR(ValidateDigest(digest));
  if (digest.rfind(kSha256Prefix, 0) != 0) {
    return Status::NotFound("content " + digest + " does not exist");
  }
  // File first, then record: a blob mid-commit (file renamed, record not yet written)
  // or mid-delete (record gone, file not yet) is NotFound either way.
  int fd = ::open(BlobPath(digest).c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    if (errno == ENOENT) return Status::NotFound("content " + digest + " does not exist");
    return Status::FromErrno(errno, "open blob " + digest);
  }
  auto record = store_->GetContent(digest);
  struct stat st;
  if (!record.ok() || ::fstat(fd, &st) != 0) {
    Status s = record.ok() ? Status::FromErrno(errno, "stat blob " + digest) : record.status();
    ::close(fd);
    return s;
  }
  return std::unique_ptr<ContentReader>(
      new FileReader(fd, static_cast<int64_t>(st.st_size), digest));
}

Status Store::TryLockRef(const std::string& ref) {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = locked_refs_.find(ref);
  if (it != locked_refs_.end()) {
    auto held_ms =
        std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - it->second).count();
    return Status::Unavailable("ingest ref " + Quote(ref) +
                               " is locked: another writer has held it for " +
                               std::to_string(held_ms) + " ms");
  }
  locked_refs_.emplace(ref, Clock::now());
  return Status::Ok();
}

void Store::ReleaseRef(const std::string& ref) {
  std::lock_guard<std::mutex> lock(mu_);
  locked_refs_.erase(ref);
  cv_.notify_all();
}

Result<std::unique_ptr<ContentWriter>> Store::OpenWriter(const std::string& ref,
                                                         const std::string& expected_digest,
                                                         int64_t expected_size) {
  if (ref.empty()) return Status::InvalidArgument("an ingest needs a non-empty ref");
  if (!expected_digest.empty()) RETURN_IF_ERROR(ValidateSha256(expected_digest));
  if (expected_size < kUnknownSize) {
    return Status::InvalidArgument("invalid expected size " + std::to_string(expected_size) +
                                   " for ingest " + Quote(ref));
  }
  if (!expected_digest.empty()) {
    DigestLock lock(this, expected_digest);
    auto existing = store_->GetContent(expected_digest);
    if (existing.ok()) {
      ProtectFresh(expected_digest);
      return Status::AlreadyExists("content " + expected_digest + " already exists");
    }
    if (!existing.status().IsNotFound()) return existing.status();
  }
  RETURN_IF_ERROR(TryLockRef(ref));
  auto writer = OpenIngest(ref, expected_digest, expected_size);
  if (!writer.ok()) ReleaseRef(ref);
  return writer;
}

Result<std::unique_ptr<ContentWriter>> Store::OpenIngest(const std::string& ref,
                                                         const std::string& expected_digest,
                                                         int64_t expected_size) {
  const std::string dir = IngestDir(ref);
  const std::string data_path = dir + "/data";

  // Resume when the same ref asks for the same blob and the bytes so far fit in it.
  auto stored_ref = fs::ReadFile(dir + "/ref");
  auto stored_meta = fs::ReadFile(dir + "/meta");
  std::optional<IngestMeta> meta;
  if (stored_ref.ok() && *stored_ref == ref && stored_meta.ok()) {
    meta = IngestMeta::Decode(*stored_meta);
  }
  struct stat st;
  bool resumable = meta && meta->expected_digest == expected_digest &&
                   meta->expected_size == expected_size && ::stat(data_path.c_str(), &st) == 0 &&
                   S_ISREG(st.st_mode) &&
                   (expected_size == kUnknownSize || st.st_size <= expected_size);
  if (resumable) {
    auto hash = std::make_unique<Sha256>();
    int64_t offset = 0;
    Status read = fs::ReadFileChunks(data_path, 1 << 20, [&](std::string_view piece) {
      hash->Update(piece);
      offset += static_cast<int64_t>(piece.size());
    });
    int fd = read.ok() ? ::open(data_path.c_str(), O_WRONLY | O_CLOEXEC) : -1;
    if (fd >= 0) {
      // Drop anything appended after the read (there is no other writer; belt and braces).
      if (::ftruncate(fd, static_cast<off_t>(offset)) == 0) {
        return std::unique_ptr<ContentWriter>(
            new Writer(this, ref, dir, fd, *meta, offset, std::move(hash)));
      }
      ::close(fd);
    }
    spdlog::warn("content store: cannot resume ingest {}; starting over", Quote(ref));
  }

  RETURN_IF_ERROR(fs::RemoveAll(dir));
  RETURN_IF_ERROR(fs::MakeDir(dir, 0755));
  IngestMeta fresh{expected_digest, expected_size, NowUnixNanos()};
  RETURN_IF_ERROR(WriteSmallFile(dir + "/ref", ref));
  RETURN_IF_ERROR(WriteSmallFile(dir + "/meta", fresh.Encode()));
  int fd = ::open(data_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) return Status::FromErrno(errno, "create " + data_path);
  return std::unique_ptr<ContentWriter>(
      new Writer(this, ref, dir, fd, fresh, 0, std::make_unique<Sha256>()));
}

Result<ContentInfo> Store::CommitBlob(const std::string& data_path, const std::string& digest,
                                      int64_t size, Labels labels) {
  DigestLock lock(this, digest);
  auto existing = store_->GetContent(digest);
  if (existing.ok()) {
    ProtectFresh(digest);
    return Status::AlreadyExists("content " + digest + " already exists");
  }
  if (!existing.status().IsNotFound()) return existing.status();
  if (::rename(data_path.c_str(), BlobPath(digest).c_str()) != 0) {
    return Status::FromErrno(errno, "move " + data_path + " to " + BlobPath(digest));
  }
  RETURN_IF_ERROR(fs::SyncDir(blobs_dir_));
  int64_t now = NowUnixNanos();
  metadata::ContentRecord record{digest, size, std::move(labels), now, now};
  metadata::Batch batch;
  batch.PutContent(record);
  // Protected before it becomes visible, so that no collection sees it unprotected.
  ProtectFresh(digest);
  RETURN_IF_ERROR(store_->Commit(batch));
  return ToInfo(record);
}

Result<std::vector<IngestStatus>> Store::ListIngests() {
  ASSIGN_OR_RETURN(std::vector<std::string> names, fs::ListDir(ingest_dir_));
  std::vector<IngestStatus> out;
  for (const auto& name : names) {
    std::string dir = ingest_dir_ + "/" + name;
    auto ref = fs::ReadFile(dir + "/ref");
    auto meta_text = fs::ReadFile(dir + "/meta");
    if (!ref.ok() || !meta_text.ok()) continue;  // being created, or broken: not listed
    auto meta = IngestMeta::Decode(*meta_text);
    if (!meta) continue;
    IngestStatus status;
    status.ref = *ref;
    status.expected_digest = meta->expected_digest;
    status.expected_size_bytes = meta->expected_size;
    status.started_unix_nanos = meta->started_unix_nanos;
    struct stat st;
    if (::stat((dir + "/data").c_str(), &st) == 0) {
      status.offset_bytes = static_cast<int64_t>(st.st_size);
      status.updated_unix_nanos = MtimeUnixNanos(st);
    }
    {
      std::lock_guard<std::mutex> lock(mu_);
      status.active = locked_refs_.contains(status.ref);
    }
    out.push_back(std::move(status));
  }
  return out;
}

Status Store::AbortIngest(const std::string& ref) {
  RETURN_IF_ERROR(TryLockRef(ref));
  std::string dir = IngestDir(ref);
  Status result =
      fs::Exists(dir) ? fs::RemoveAll(dir) : Status::NotFound("no ingest " + Quote(ref));
  ReleaseRef(ref);
  return result;
}

Result<int> Store::RemoveStaleIngests(std::chrono::seconds max_age) {
  ASSIGN_OR_RETURN(std::vector<std::string> names, fs::ListDir(ingest_dir_));
  const int64_t cutoff =
      NowUnixNanos() - std::chrono::duration_cast<std::chrono::nanoseconds>(max_age).count();
  int removed = 0;
  for (const auto& name : names) {
    std::string dir = ingest_dir_ + "/" + name;
    struct stat st;
    // The data file's mtime is the last write; an ingest without one is judged by its
    // directory.
    if (::stat((dir + "/data").c_str(), &st) != 0 && ::stat(dir.c_str(), &st) != 0) continue;
    if (MtimeUnixNanos(st) > cutoff) continue;
    auto ref = fs::ReadFile(dir + "/ref");
    if (ref.ok() && IngestDir(*ref) == dir) {
      if (!TryLockRef(*ref).ok()) continue;  // a writer is using it
      Status s = fs::RemoveAll(dir);
      ReleaseRef(*ref);
      RETURN_IF_ERROR(s);
    } else {
      RETURN_IF_ERROR(fs::RemoveAll(dir));  // no readable ref: nobody can resume it
    }
    spdlog::info("content store: removed stale ingest {}", ref.ok() ? Quote(*ref) : Quote(name));
    removed++;
  }
  return removed;
}

Status Store::WaitForContent(const std::string& digest, const std::string& ref,
                             Clock::time_point deadline) {
  RETURN_IF_ERROR(ValidateDigest(digest));
  std::unique_lock<std::mutex> lock(mu_);
  for (;;) {
    // Looked up under mu_: a commit wakes waiters only after its record is written and
    // while holding mu_, so no wake-up falls between this check and the wait.
    auto record = store_->GetContent(digest);
    if (record.ok()) {
      ProtectFreshLocked(digest);
      return Status::Ok();
    }
    if (!record.status().IsNotFound()) return record.status();
    if (!ref.empty() && !locked_refs_.contains(ref)) {
      return Status(Code::kAborted, "ingest " + Quote(ref) + " ended without committing " + digest +
                                        "; open a writer to resume it");
    }
    if (cv_.wait_until(lock, deadline) == std::cv_status::timeout && Clock::now() >= deadline) {
      if (store_->GetContent(digest).ok()) continue;
      return Status(Code::kDeadlineExceeded, "timed out waiting for content " + digest);
    }
  }
}

void Store::Protect(const std::string& digest, Clock::time_point until) {
  std::lock_guard<std::mutex> lock(mu_);
  if (until <= Clock::now()) {
    protected_until_.erase(digest);
  } else {
    protected_until_[digest] = until;
  }
}

void Store::ProtectFreshLocked(const std::string& digest) {
  auto now = Clock::now();
  // Expired entries go here, so the map holds only what is protected now.
  std::erase_if(protected_until_, [&](const auto& entry) { return entry.second <= now; });
  auto& until = protected_until_[digest];
  until = std::max(until, now + options_.fresh_protection);
}

bool Store::IsProtected(const std::string& digest) {
  std::lock_guard<std::mutex> lock(mu_);
  return IsProtectedLocked(digest);
}

bool Store::IsProtectedLocked(const std::string& digest) {
  auto it = protected_until_.find(digest);
  if (it == protected_until_.end()) return false;
  if (it->second > Clock::now()) return true;
  protected_until_.erase(it);
  return false;
}

}  // namespace

Result<std::unique_ptr<ContentStore>> ContentStore::Open(const std::string& root,
                                                         metadata::Store* store,
                                                         ContentStoreOptions options) {
  auto content = std::make_unique<Store>(root, store, options);
  RETURN_IF_ERROR(content->Recover());
  return std::unique_ptr<ContentStore>(std::move(content));
}

Status AddContentLabels(ContentStore& content, const std::string& digest, const Labels& labels) {
  if (labels.empty()) return Status::Ok();
  std::vector<std::string> paths;
  for (const auto& [k, v] : labels) paths.push_back("labels." + k);
  return content.UpdateLabels(digest, labels, paths).status();
}

Result<std::string> ReadContent(ContentStore& content, const std::string& digest,
                                size_t max_bytes) {
  ASSIGN_OR_RETURN(std::unique_ptr<ContentReader> reader, content.OpenReader(digest));
  if (static_cast<uint64_t>(reader->Size()) > max_bytes) {
    return Status(Code::kResourceExhausted, "blob " + digest + " is " + std::to_string(reader->Size()) +
                                     " bytes, more than the " + std::to_string(max_bytes) +
                                     " expected");
  }
  std::string data(static_cast<size_t>(reader->Size()), '\0');
  size_t done = 0;
  while (done < data.size()) {
    ASSIGN_OR_RETURN(size_t n, reader->ReadAt(data.data() + done, data.size() - done,
                                              static_cast<int64_t>(done)));
    if (n == 0) return Status::DataLoss("blob " + digest + " ended early");
    done += n;
  }
  return data;
}

Result<ContentInfo> WriteContent(ContentStore& content, const std::string& ref,
                                 const std::string& data, const Labels& labels) {
  const std::string digest = Sha256Digest(data);
  Result<std::unique_ptr<ContentWriter>> writer =
      content.OpenWriter(ref, digest, static_cast<int64_t>(data.size()));
  if (writer.status().IsAlreadyExists()) {
    RETURN_IF_ERROR(AddContentLabels(content, digest, labels));
    return content.Info(digest);
  }
  RETURN_IF_ERROR(writer.status());
  if ((*writer)->Offset() != 0) {
    RETURN_IF_ERROR((*writer)->Abort());
    ASSIGN_OR_RETURN(writer, content.OpenWriter(ref, digest, static_cast<int64_t>(data.size())));
  }
  RETURN_IF_ERROR((*writer)->Write(data.data(), data.size()));
  return (*writer)->Commit(labels);
}

}  // namespace strata::transfer
