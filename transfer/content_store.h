// transfer::ContentStore — content-addressed blobs (layers, manifests, configs) and
// resumable ingests (partial downloads).
//
// On disk, below the root given to Open:
//
//   content/blobs/sha256/<hex>      committed blobs, read-only (mode 0444)
//   content/ingest/<sha256(ref)>/   one partial download each:
//       ref    the client's ref, verbatim (refs are data: the directory name is a hash)
//       meta   the expected digest and size, and when the ingest started
//       data   the bytes written so far
//
// Records (size, labels, created/updated) live in the shared metadata::Store (table
// "content"); a blob exists for clients exactly when its record does.
//
// Writing a blob, as the pull pipeline does it:
//
//   auto w = store->OpenWriter("layer-sha256:ab12…", "sha256:ab12…", 1234);
//   AlreadyExists -> the blob is committed already: done.
//   Unavailable   -> another writer holds the ref: WaitForContent(digest, ref, deadline),
//                    then OpenWriter again if it returns Aborted (the other gave up).
//   otherwise     -> download from (*w)->Offset() (a Range request when it is > 0),
//                    Write() each piece, then Commit(labels).
//
// A writer dropped without Commit or Abort (or a killed daemon) keeps its bytes: the next
// OpenWriter with the same ref, digest and size resumes at Offset(). The running SHA-256
// is rebuilt by re-reading the partial data, so resuming costs one read of what is there.
//
// Commit verifies size and digest (a mismatch is DataLoss and discards the ingest),
// fsyncs the data, renames it into blobs/, fsyncs that directory, then writes the record
// durably. A crash at any point leaves a state that Open reconciles: a blob file without
// a record is recorded again if its name is its digest (else removed), a record
// without a file is removed, and ingests untouched for ContentStoreOptions::
// stale_ingest_age are removed.
//
// Garbage collection (transfer/gc.h) deletes unreferenced blobs. A blob this process
// just committed, or just reported as AlreadyExists to OpenWriter, or found by
// WaitForContent, is protected from it for ContentStoreOptions::fresh_protection so
// that a pull running alongside a collection keeps what it fetched until its image
// record refers to it. Protect() extends or ends that protection.
//
// Thread safety: a ContentStore is safe for concurrent use from many threads. A
// ContentWriter belongs to one thread at a time and must not outlive its store; a
// ContentReader may be shared and may outlive the store.
#pragma once

#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "core/status.h"
#include "metadata/store.h"

namespace strata::transfer {

using Labels = std::map<std::string, std::string>;

// OpenWriter's expected_size when the size is not known in advance.
inline constexpr int64_t kUnknownSize = -1;

struct ContentInfo {
  std::string digest;  // "sha256:<hex>"
  int64_t size_bytes = 0;
  Labels labels;
  int64_t created_unix_nanos = 0;
  int64_t updated_unix_nanos = 0;
};

// A partial download (see ListIngests).
struct IngestStatus {
  std::string ref;
  std::string expected_digest;  // empty when not given
  int64_t expected_size_bytes = kUnknownSize;
  int64_t offset_bytes = 0;  // bytes stored so far
  int64_t started_unix_nanos = 0;
  int64_t updated_unix_nanos = 0;  // last write (the data file's mtime)
  bool active = false;             // a writer holds the ref now
};

// Random access to one committed blob. The blob stays readable through this object
// even if it is deleted meanwhile.
class ContentReader {
 public:
  virtual ~ContentReader() = default;
  virtual int64_t Size() const = 0;
  // Reads up to `n` bytes at `offset` into `buf` (pread semantics, retried until `n`
  // bytes or the end). Returns the count read: less than `n` only at the end of the
  // blob, 0 at or past it.
  virtual Result<size_t> ReadAt(void* buf, size_t n, int64_t offset) const = 0;
};

// Writes one blob through an ingest. Holds the ingest's ref until Commit, Abort or
// destruction; destruction without either keeps the bytes for a later resume.
class ContentWriter {
 public:
  virtual ~ContentWriter() = default;

  virtual const std::string& Ref() const = 0;
  // Bytes stored so far: where the download continues.
  virtual int64_t Offset() const = 0;
  // Appends `n` bytes at Offset(). InvalidArgument (nothing written) when the expected
  // size is known and would be exceeded; the error of the failing write otherwise (the
  // ingest is left as before the call).
  virtual Status Write(const void* data, size_t n) = 0;
  // Verifies the expected size and digest and commits the blob with `labels`.
  //   DataLoss "blob <expected> does not match: got <digest>/<size>": the ingest is
  //     discarded (the next OpenWriter starts from zero).
  //   AlreadyExists: the same blob was committed meanwhile by another ref; the ingest is
  //     discarded and the existing blob (labels unchanged) counts as done.
  //   InvalidArgument: a label is too large.
  // Returns the committed blob's info.
  virtual Result<ContentInfo> Commit(const Labels& labels) = 0;
  // Discards the ingest and its bytes.
  virtual Status Abort() = 0;
  // After Commit or Abort, every call is FailedPrecondition.
};

struct ContentStoreOptions {
  // Open removes ingests whose data was not written for this long (zero: never).
  std::chrono::seconds stale_ingest_age = std::chrono::hours(24);
  // How long fresh content stays protected from garbage collection (see above).
  std::chrono::seconds fresh_protection = std::chrono::minutes(10);
};

class ContentStore {
 public:
  virtual ~ContentStore() = default;

  // Opens the store below `root` (creating <root>/content/...) with records in `store`,
  // which must outlive it, and reconciles files with records (see above).
  static Result<std::unique_ptr<ContentStore>> Open(const std::string& root, metadata::Store* store,
                                                    ContentStoreOptions options = {});

  // The blob's info. InvalidArgument for a malformed digest, NotFound if absent.
  virtual Result<ContentInfo> Info(const std::string& digest) = 0;

  // Every blob matching `filters` (containerd filter syntax, OR of the strings; fields
  // "digest", "size" (decimal bytes) and "labels.<key>"), in digest order.
  // InvalidArgument for a filter that does not parse.
  virtual Result<std::vector<ContentInfo>> List(const std::vector<std::string>& filters) = 0;

  // Changes the labels of `digest` and returns the new info. `fieldpaths` may hold
  // "labels" (replace all with `labels`) and "labels.<k>" (set k from `labels`, or delete
  // it when absent or empty there); none replaces all labels. Other paths are
  // InvalidArgument; an unknown digest is NotFound. Updated becomes now.
  virtual Result<ContentInfo> UpdateLabels(const std::string& digest, const Labels& labels,
                                           const std::vector<std::string>& fieldpaths) = 0;

  enum class DeleteMode {
    kAlways,
    // FailedPrecondition, nothing deleted, while the blob is protected (the GC uses it).
    kUnlessProtected,
  };
  // Deletes the record (durably), then the file. NotFound if absent. Readers already
  // open keep working.
  virtual Status Delete(const std::string& digest, DeleteMode mode = DeleteMode::kAlways) = 0;

  // Opens a committed blob for reading. NotFound if absent.
  virtual Result<std::unique_ptr<ContentReader>> OpenReader(const std::string& digest) = 0;

  // Opens (or resumes) the ingest named `ref` (any non-empty string) for a blob of
  // `expected_digest` ("sha256:<hex>", or empty when unknown) and `expected_size`
  // (kUnknownSize when unknown). An existing ingest of `ref` is resumed when it was
  // opened with the same digest and size and holds no more than that size; otherwise
  // it starts over from zero.
  //   AlreadyExists: `expected_digest` is committed already (nothing to download).
  //   Unavailable "... locked ...": another writer holds `ref` (see WaitForContent).
  //   InvalidArgument: empty ref, malformed or non-sha256 digest, size below -1.
  virtual Result<std::unique_ptr<ContentWriter>> OpenWriter(const std::string& ref,
                                                            const std::string& expected_digest,
                                                            int64_t expected_size) = 0;

  // Every ingest on disk, in no particular order.
  virtual Result<std::vector<IngestStatus>> ListIngests() = 0;

  // Discards the ingest `ref`. NotFound if there is none; Unavailable while a writer
  // holds it.
  virtual Status AbortIngest(const std::string& ref) = 0;

  // Removes ingests not written for `max_age` and not held by a writer; returns how
  // many. Open runs it with stale_ingest_age.
  virtual Result<int> RemoveStaleIngests(std::chrono::seconds max_age) = 0;

  // Blocks until `digest` is committed (OK, and the blob is protected as fresh), until
  // the writer holding `ref` lets go without committing it (Aborted: OpenWriter again
  // to resume its bytes), or until `deadline` (DeadlineExceeded). An empty `ref` waits
  // for the digest alone.
  virtual Status WaitForContent(const std::string& digest, const std::string& ref,
                                std::chrono::steady_clock::time_point deadline) = 0;

  // Protects `digest` from garbage collection until `until`, replacing any earlier
  // protection (a time in the past ends it). The digest need not exist yet. Protection
  // lives in memory only: a restart ends it (no pull survives a restart either).
  virtual void Protect(const std::string& digest, std::chrono::steady_clock::time_point until) = 0;
  virtual bool IsProtected(const std::string& digest) = 0;
};

// --- helpers shared by the transfer stores -------------------------------------------

// Sets `labels` on blob `digest`, leaving its other labels as they are.
Status AddContentLabels(ContentStore& content, const std::string& digest, const Labels& labels);

// A committed blob's bytes (manifests, configs). ResourceExhausted above `max_bytes`.
Result<std::string> ReadContent(ContentStore& content, const std::string& digest,
                                size_t max_bytes = 16 << 20);

// Stores `data` as a blob (ingest `ref`) with `labels`; an existing blob of the same
// digest gets the labels added. Returns its info.
Result<ContentInfo> WriteContent(ContentStore& content, const std::string& ref,
                                 const std::string& data, const Labels& labels);

// Erases entries with empty values (containerd does not keep empty labels: setting one
// deletes it).
void DropEmptyValues(Labels& labels);

// Applies one update field path to the string map called `field` ("labels",
// "annotations"): "<field>" replaces `current` with `given`; "<field>.<key>" sets key
// from `given`, or erases it when `given` lacks it or holds it empty. Returns false
// (changing nothing) when `path` is neither form.
bool ApplyMapFieldPath(std::string_view field, const std::string& path, const Labels& given,
                       Labels& current);

// The value of a filter field path below a map field ("labels.a.b" looks up key "a.b"),
// or nullopt when absent. `rest` is the path after the map's own name.
std::optional<std::string> MapFieldValue(const std::vector<std::string>& fieldpath, size_t rest,
                                         const Labels& map);

}  // namespace strata::transfer
