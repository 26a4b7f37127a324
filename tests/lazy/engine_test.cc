// lazy::Engine against Debian's docker-registry behind strata-test-fault-proxy: an 8 MiB
// random blob read through the engine with 1 MiB chunks. Requests are counted with the
// registry client's stats (every HTTP request, retries included) and the proxy's log
// (one line per request, with the body bytes it sent).
#include "lazy/engine.h"

#include <gtest/gtest.h>
#include <prometheus/registry.h>
#include <prometheus/text_serializer.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstring>
#include <fstream>
#include <random>
#include <regex>
#include <thread>

#include "core/digest.h"
#include "core/fs.h"
#include "registry/client.h"
#include "tests/support/fault_proxy_process.h"
#include "tests/support/local_registry.h"
#include "tests/support/random_bytes.h"

namespace strata::lazy {
namespace {

using std::chrono::milliseconds;
using strata::testing::FaultProxyProcess;
using strata::testing::LocalRegistry;

constexpr uint64_t kMiB = 1 << 20;
constexpr uint64_t kBlobSize = 8 * kMiB;

using strata::testing::RandomBytes;

// Polls `done` every 20 ms for up to `limit`.
bool WaitFor(const std::function<bool()>& done, milliseconds limit = milliseconds(30000)) {
  auto until = std::chrono::steady_clock::now() + limit;
  while (!done()) {
    if (std::chrono::steady_clock::now() > until) return false;
    std::this_thread::sleep_for(milliseconds(20));
  }
  return true;
}

class LazyEngineTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto reg = LocalRegistry::Start();
    ASSERT_TRUE(reg.ok()) << reg.status().ToString();
    registry_ = std::move(*reg);
    auto proxy =
        FaultProxyProcess::Start(STRATA_FAULT_PROXY, registry_->address(), registry_->dir());
    ASSERT_TRUE(proxy.ok()) << proxy.status().ToString();
    proxy_ = std::move(*proxy);

    blob_ = RandomBytes(kBlobSize, 42);
    digest_ = Sha256Digest(blob_);
    registry::Descriptor desc;
    desc.media_type = "application/octet-stream";
    desc.digest = digest_;
    desc.size = static_cast<int64_t>(blob_.size());
    auto direct = MakeClient({});
    registry::Reference direct_ref = *registry::ParseReference(registry_->address() + "/lazy:x");
    Status pushed = direct->PushBlob(
        direct_ref, desc, [this](uint64_t off, char* buf, size_t n) -> Result<size_t> {
          size_t take = std::min<size_t>(n, blob_.size() - std::min<size_t>(off, blob_.size()));
          std::memcpy(buf, blob_.data() + off, take);
          return take;
        });
    ASSERT_TRUE(pushed.ok()) << pushed.ToString();
    ref_ = *registry::ParseReference(proxy_->address() + "/lazy:x");
    client_ = MakeClient({});

    char tmpl[] = "/tmp/strata-lazy-test-XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl), nullptr);
    cache_dir_ = tmpl;
  }

  void TearDown() override {
    reader_.reset();
    engine_.reset();
    if (!cache_dir_.empty()) (void)fs::RemoveAll(cache_dir_);
  }

  std::unique_ptr<registry::Client> MakeClient(registry::ClientOptions options) {
    options.docker_config = registry_->dir() + "/none.json";
    options.initial_backoff = milliseconds(10);
    return std::move(registry::Client::Create(options)).value();
  }

  EngineOptions DefaultOptions() {
    EngineOptions options;
    options.cache_dir = cache_dir_;
    options.chunk_size = kMiB;
    options.read_deadline = milliseconds(20000);
    return options;
  }

  // (Re)opens the engine on cache_dir_ with `options` and the blob's reader.
  void OpenEngine(EngineOptions options, registry::Client* client = nullptr) {
    reader_.reset();
    engine_.reset();
    auto engine = Engine::Open(options, client ? client : client_.get());
    ASSERT_TRUE(engine.ok()) << engine.status().ToString();
    engine_ = std::move(*engine);
    auto reader = engine_->OpenBlob(ref_, digest_, blob_.size());
    ASSERT_TRUE(reader.ok()) << reader.status().ToString();
    reader_ = *reader;
  }

  // Reads [offset, offset + n) through the reader and checks it against the blob.
  void ExpectRead(uint64_t offset, size_t n) {
    std::string got(n, '\0');
    auto r = reader_->ReadAt(got.data(), n, offset);
    ASSERT_TRUE(r.ok()) << "at " << offset << "+" << n << ": " << r.status().ToString();
    size_t want = static_cast<size_t>(std::min<uint64_t>(n, blob_.size() - offset));
    ASSERT_EQ(*r, want) << "at " << offset;
    ASSERT_TRUE(got.compare(0, want, blob_, offset, want) == 0) << "wrong bytes at " << offset;
  }

  uint64_t Requests() const { return client_->stats().requests.load(); }

  // Blob GETs in the proxy log and the body sizes they sent.
  std::vector<uint64_t> BlobGetBodies() const {
    std::vector<uint64_t> bodies;
    std::regex line(R"( GET /v2/[^ ]*/blobs/[^ ]* -> \d+ body=(\d+))");
    std::string log = proxy_->Log();
    for (auto it = std::sregex_iterator(log.begin(), log.end(), line); it != std::sregex_iterator();
         ++it) {
      bodies.push_back(std::stoull((*it)[1].str()));
    }
    return bodies;
  }

  std::string BlobDir() const { return cache_dir_ + "/" + digest_.substr(7); }

  void Rules(const std::string& rules) {
    Status s = proxy_->SetRules(rules);
    ASSERT_TRUE(s.ok()) << s.ToString();
  }

  std::unique_ptr<LocalRegistry> registry_;
  std::unique_ptr<FaultProxyProcess> proxy_;
  std::unique_ptr<registry::Client> client_;
  std::string blob_;
  std::string digest_;
  registry::Reference ref_;
  std::string cache_dir_;
  std::unique_ptr<Engine> engine_;
  std::shared_ptr<BlobReader> reader_;
};

TEST_F(LazyEngineTest, RandomReadsAreByteExact) {
  ASSERT_NO_FATAL_FAILURE(OpenEngine(DefaultOptions()));
  std::mt19937_64 rng(1);
  for (int i = 0; i < 200; i++) {
    uint64_t offset = rng() % blob_.size();
    size_t n = 1 + rng() % (3 * kMiB);
    ASSERT_NO_FATAL_FAILURE(ExpectRead(offset, n));
  }
  ASSERT_NO_FATAL_FAILURE(ExpectRead(blob_.size() - 1, 100));  // short at the end
  std::string none(10, '\0');
  auto past = reader_->ReadAt(none.data(), none.size(), blob_.size());
  ASSERT_TRUE(past.ok());
  EXPECT_EQ(*past, 0u);
}

TEST_F(LazyEngineTest, SecondReadOfARangeMakesNoRequestFromMemory) {
  ASSERT_NO_FATAL_FAILURE(OpenEngine(DefaultOptions()));
  ASSERT_NO_FATAL_FAILURE(ExpectRead(3 * kMiB + 5000, 300000));
  uint64_t before = Requests();
  ASSERT_NO_FATAL_FAILURE(ExpectRead(3 * kMiB + 5000, 300000));
  EXPECT_EQ(Requests(), before);
  EXPECT_EQ(engine_->Stats().memory_hits, 1u);
}

TEST_F(LazyEngineTest, SecondReadOfARangeMakesNoRequestFromDisk) {
  EngineOptions options = DefaultOptions();
  options.memory_cache_bytes = 0;
  ASSERT_NO_FATAL_FAILURE(OpenEngine(options));
  ASSERT_NO_FATAL_FAILURE(ExpectRead(3 * kMiB + 5000, 300000));
  uint64_t before = Requests();
  ASSERT_NO_FATAL_FAILURE(ExpectRead(3 * kMiB + 5000, 300000));
  EXPECT_EQ(Requests(), before);
  EXPECT_EQ(engine_->Stats().disk_hits, 1u);
  EXPECT_EQ(engine_->Stats().memory_hits, 0u);
}

TEST_F(LazyEngineTest, ConcurrentReadsOfOneChunkCauseOneFetch) {
  Rules("GET /v2/.*/blobs/.* delay=300\n");  // keep the fetch open while all threads arrive
  ASSERT_NO_FATAL_FAILURE(OpenEngine(DefaultOptions()));
  std::atomic<int> failures{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 16; t++) {
    threads.emplace_back([&, t] {
      uint64_t offset = 5 * kMiB + static_cast<uint64_t>(t) * 4096;
      std::string got(65536, '\0');
      auto r = reader_->ReadAt(got.data(), got.size(), offset);
      if (!r.ok() || *r != got.size() || got != blob_.substr(offset, got.size())) failures++;
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(failures, 0);
  EXPECT_EQ(engine_->Stats().fetches, 1u);
  EXPECT_EQ(Requests(), 1u);
  ASSERT_TRUE(WaitFor([&] { return !BlobGetBodies().empty(); }));
  EXPECT_EQ(BlobGetBodies(), std::vector<uint64_t>{kMiB});
}

TEST_F(LazyEngineTest, CachedChunksSurviveARestart) {
  ASSERT_NO_FATAL_FAILURE(OpenEngine(DefaultOptions()));
  ASSERT_NO_FATAL_FAILURE(ExpectRead(100, 1000));
  ASSERT_NO_FATAL_FAILURE(ExpectRead(6 * kMiB + 7, 2 * kMiB));
  const uint64_t cached = reader_->CachedBytes();
  EXPECT_EQ(cached, 3 * kMiB);

  auto client = MakeClient({});
  ASSERT_NO_FATAL_FAILURE(OpenEngine(DefaultOptions(), client.get()));
  EXPECT_EQ(reader_->CachedBytes(), cached);
  ASSERT_NO_FATAL_FAILURE(ExpectRead(100, 1000));
  ASSERT_NO_FATAL_FAILURE(ExpectRead(6 * kMiB + 7, 2 * kMiB));
  EXPECT_EQ(client->stats().requests, 0u);
  EXPECT_EQ(engine_->Stats().disk_hits, 3u);
  reader_.reset();
  engine_.reset();  // before `client`
}

TEST_F(LazyEngineTest, TruncatedBitmapMeansRefetchNeverWrongBytes) {
  ASSERT_NO_FATAL_FAILURE(OpenEngine(DefaultOptions()));
  ASSERT_NO_FATAL_FAILURE(ExpectRead(0, 4 * kMiB));
  reader_.reset();
  engine_.reset();
  ASSERT_EQ(::truncate((BlobDir() + "/bitmap").c_str(), 40), 0);

  ASSERT_NO_FATAL_FAILURE(OpenEngine(DefaultOptions()));
  EXPECT_EQ(reader_->CachedBytes(), 0u);
  uint64_t before = Requests();
  ASSERT_NO_FATAL_FAILURE(ExpectRead(0, 4 * kMiB));
  EXPECT_GT(Requests(), before);
}

TEST_F(LazyEngineTest, CorruptBitmapMeansRefetchNeverWrongBytes) {
  ASSERT_NO_FATAL_FAILURE(OpenEngine(DefaultOptions()));
  ASSERT_NO_FATAL_FAILURE(ExpectRead(kMiB, kMiB));
  reader_.reset();
  engine_.reset();
  // Claim every chunk present, without the checksum to match; and zero the data.
  {
    std::fstream bitmap(BlobDir() + "/bitmap", std::ios::in | std::ios::out | std::ios::binary);
    bitmap.seekp(88);
    bitmap.put(static_cast<char>(0xff));
  }
  ASSERT_EQ(::truncate((BlobDir() + "/data").c_str(), 0), 0);
  ASSERT_EQ(::truncate((BlobDir() + "/data").c_str(), static_cast<off_t>(kBlobSize)), 0);

  ASSERT_NO_FATAL_FAILURE(OpenEngine(DefaultOptions()));
  EXPECT_EQ(reader_->CachedBytes(), 0u);
  for (uint64_t c = 0; c < 8; c++) ASSERT_NO_FATAL_FAILURE(ExpectRead(c * kMiB, kMiB));
}

TEST_F(LazyEngineTest, DataFileOfTheWrongSizeMeansRefetch) {
  ASSERT_NO_FATAL_FAILURE(OpenEngine(DefaultOptions()));
  ASSERT_NO_FATAL_FAILURE(ExpectRead(0, 2 * kMiB));
  reader_.reset();
  engine_.reset();
  ASSERT_EQ(::truncate((BlobDir() + "/data").c_str(), static_cast<off_t>(kMiB)), 0);

  ASSERT_NO_FATAL_FAILURE(OpenEngine(DefaultOptions()));
  EXPECT_EQ(reader_->CachedBytes(), 0u);
  ASSERT_NO_FATAL_FAILURE(ExpectRead(0, 2 * kMiB));
}

TEST_F(LazyEngineTest, ProcessKilledAfterReadsLeavesACacheThatServesRightBytes) {
  // The child reads through its own engine and dies without any cleanup: whatever the
  // bitmap says afterwards must be true.
  pid_t child = ::fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    auto client = MakeClient({});
    EngineOptions options = DefaultOptions();
    auto engine = Engine::Open(options, client.get());
    if (!engine.ok()) ::_exit(2);
    auto reader = (*engine)->OpenBlob(ref_, digest_, blob_.size());
    if (!reader.ok()) ::_exit(3);
    std::string buf(kMiB, '\0');
    for (uint64_t c = 0; c < 8; c += 2) {
      if (!(*reader)->ReadAt(buf.data(), buf.size(), c * kMiB).ok()) ::_exit(4);
    }
    ::_exit(0);  // no destructors: no final bitmap write, threads killed mid-way
  }
  int status = 0;
  ASSERT_EQ(::waitpid(child, &status, 0), child);
  ASSERT_TRUE(WIFEXITED(status));
  ASSERT_EQ(WEXITSTATUS(status), 0);

  ASSERT_NO_FATAL_FAILURE(OpenEngine(DefaultOptions()));
  EXPECT_LE(reader_->CachedBytes(), 4 * kMiB);
  for (uint64_t c = 0; c < 8; c++) ASSERT_NO_FATAL_FAILURE(ExpectRead(c * kMiB, kMiB));
}

TEST_F(LazyEngineTest, AdjacentMissingChunksAreFetchedInOneRequest) {
  ASSERT_NO_FATAL_FAILURE(OpenEngine(DefaultOptions()));
  ASSERT_NO_FATAL_FAILURE(ExpectRead(2 * kMiB + 100, kMiB));  // chunks 2 and 3
  EXPECT_EQ(Requests(), 1u);
  ASSERT_TRUE(WaitFor([&] { return !BlobGetBodies().empty(); }));
  EXPECT_EQ(BlobGetBodies(), std::vector<uint64_t>{2 * kMiB});
  EXPECT_EQ(reader_->CachedBytes(), 2 * kMiB);
}

TEST_F(LazyEngineTest, SeparateMissingRunsOfOneReadShareAMultiRangeRequest) {
  ASSERT_NO_FATAL_FAILURE(OpenEngine(DefaultOptions()));
  ASSERT_NO_FATAL_FAILURE(ExpectRead(3 * kMiB, 10));  // chunk 3 cached
  uint64_t before = Requests();
  ASSERT_NO_FATAL_FAILURE(ExpectRead(2 * kMiB, 3 * kMiB));  // needs 2 and 4, not 3
  EXPECT_EQ(Requests() - before, 1u);
  EXPECT_EQ(engine_->Stats().fetches, 2u);
  EXPECT_EQ(reader_->CachedBytes(), 3 * kMiB);
}

TEST_F(LazyEngineTest, PrefetchedRangesAreReadWithoutRequests) {
  ASSERT_NO_FATAL_FAILURE(OpenEngine(DefaultOptions()));
  reader_->Prefetch({{kMiB + 10, 2 * kMiB - 20}, {5 * kMiB + 3, 100}});  // chunks 1, 2, 5
  ASSERT_TRUE(WaitFor([&] { return reader_->CachedBytes() == 3 * kMiB; }))
      << reader_->CachedBytes();
  uint64_t before = Requests();
  ASSERT_NO_FATAL_FAILURE(ExpectRead(kMiB, 2 * kMiB));
  ASSERT_NO_FATAL_FAILURE(ExpectRead(5 * kMiB, kMiB));
  EXPECT_EQ(Requests(), before);
  EXPECT_EQ(engine_->Stats().misses, 0u);
}

TEST_F(LazyEngineTest, FetchRemainingCachesTheWholeBlobInBigRequests) {
  ASSERT_NO_FATAL_FAILURE(OpenEngine(DefaultOptions()));
  ASSERT_NO_FATAL_FAILURE(ExpectRead(4 * kMiB, 10));
  reader_->FetchRemaining();
  ASSERT_TRUE(WaitFor([&] { return reader_->CachedBytes() == blob_.size(); }))
      << reader_->CachedBytes();
  auto data = fs::ReadFile(BlobDir() + "/data");
  ASSERT_TRUE(data.ok());
  EXPECT_TRUE(*data == blob_);
  // One on-demand request for chunk 4, then the rest in one multi-range request
  // ([0, 4 MiB) and [5 MiB, 8 MiB)).
  EXPECT_EQ(engine_->Stats().fetches, 2u);
  EXPECT_EQ(engine_->Stats().fetched_bytes, blob_.size());
}

TEST_F(LazyEngineTest, StalledRegistryReadFailsWithDeadlineExceeded) {
  Rules("GET /v2/.*/blobs/.* stall=forever stall-after=1000\n");
  registry::ClientOptions client_options;
  client_options.stall_timeout = milliseconds(1500);
  client_options.max_attempts = 2;
  auto client = MakeClient(client_options);
  EngineOptions options = DefaultOptions();
  options.read_deadline = milliseconds(1000);
  ASSERT_NO_FATAL_FAILURE(OpenEngine(options, client.get()));

  std::string buf(4096, '\0');
  auto start = std::chrono::steady_clock::now();
  auto r = reader_->ReadAt(buf.data(), buf.size(), 3 * kMiB);
  auto took = std::chrono::steady_clock::now() - start;
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), Code::kDeadlineExceeded) << r.status().ToString();
  EXPECT_LT(took, milliseconds(10000));  // generous: proves it does not hang
  EXPECT_EQ(engine_->Stats().deadline_exceeded, 1u);

  // Once the registry answers again, reads succeed (the stalled fetch gives up under the
  // client's own deadline, and the next read fetches anew).
  Rules("");
  ASSERT_TRUE(WaitFor([&] {
    auto again = reader_->ReadAt(buf.data(), buf.size(), 3 * kMiB);
    return again.ok() && buf == blob_.substr(3 * kMiB, buf.size());
  }));
  reader_.reset();
  engine_.reset();  // before `client`
}

TEST_F(LazyEngineTest, ServerErrorsAreRetriedByTheClient) {
  Rules("GET /v2/.*/blobs/.* status=500 times=2\n");
  ASSERT_NO_FATAL_FAILURE(OpenEngine(DefaultOptions()));
  ASSERT_NO_FATAL_FAILURE(ExpectRead(7 * kMiB + 1, 5000));
  EXPECT_EQ(client_->stats().retries, 2u);
  EXPECT_EQ(engine_->Stats().fetch_errors, 0u);
}

TEST_F(LazyEngineTest, PersistentServerErrorIsReturnedAndNotCached) {
  Rules("GET /v2/.*/blobs/.* status=503\n");
  registry::ClientOptions client_options;
  client_options.max_attempts = 2;
  auto client = MakeClient(client_options);
  ASSERT_NO_FATAL_FAILURE(OpenEngine(DefaultOptions(), client.get()));
  std::string buf(100, '\0');
  auto r = reader_->ReadAt(buf.data(), buf.size(), 0);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), Code::kUnavailable) << r.status().ToString();
  EXPECT_EQ(reader_->CachedBytes(), 0u);
  Rules("");
  ASSERT_NO_FATAL_FAILURE(ExpectRead(0, 100));  // the failure was not remembered
  reader_.reset();
  engine_.reset();
}

TEST_F(LazyEngineTest, EvictionKeepsTheDiskCacheUnderItsLimit) {
  EngineOptions options = DefaultOptions();
  options.memory_cache_bytes = 0;  // every read goes to disk or the registry
  options.disk_cache_limit_bytes = 4 * kMiB;
  ASSERT_NO_FATAL_FAILURE(OpenEngine(options));
  for (uint64_t c = 0; c < 8; c++) {
    ASSERT_NO_FATAL_FAILURE(ExpectRead(c * kMiB, kMiB));
    EXPECT_LE(engine_->Stats().cached_bytes, options.disk_cache_limit_bytes);
    EXPECT_LE(reader_->CachedBytes(), options.disk_cache_limit_bytes);
    auto usage = fs::UsageOf(BlobDir() + "/data");
    ASSERT_TRUE(usage.ok());
    EXPECT_LE(static_cast<uint64_t>(usage->size_bytes), options.disk_cache_limit_bytes);
  }
  EXPECT_GE(engine_->Stats().evicted_bytes, 4 * kMiB);
  // Chunk 0 was evicted first (least recently used): read again, fetched again.
  uint64_t before = Requests();
  ASSERT_NO_FATAL_FAILURE(ExpectRead(0, kMiB));
  EXPECT_EQ(Requests(), before + 1);
  // The most recent chunk is still there.
  before = Requests();
  ASSERT_NO_FATAL_FAILURE(ExpectRead(7 * kMiB, kMiB));
  EXPECT_EQ(Requests(), before);
}

TEST_F(LazyEngineTest, ConcurrentReadsEvictionAndBackgroundFetchStayByteExact) {
  EngineOptions options = DefaultOptions();
  options.chunk_size = 256 << 10;
  options.memory_cache_bytes = 1 << 20;
  options.disk_cache_limit_bytes = 2 * kMiB;  // a quarter of the blob: constant eviction
  ASSERT_NO_FATAL_FAILURE(OpenEngine(options));
  reader_->FetchRemaining();
  std::atomic<int> failures{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 8; t++) {
    threads.emplace_back([&, t] {
      std::mt19937_64 rng(100 + t);
      std::string got;
      for (int i = 0; i < 40; i++) {
        uint64_t offset = rng() % blob_.size();
        size_t n = 1 + rng() % (600 << 10);
        got.assign(n, '\0');
        auto r = reader_->ReadAt(got.data(), n, offset);
        size_t want = static_cast<size_t>(std::min<uint64_t>(n, blob_.size() - offset));
        if (!r.ok() || *r != want || got.compare(0, want, blob_, offset, want) != 0) failures++;
        if (i % 10 == 0) reader_->Prefetch({{rng() % blob_.size(), 300000}});
        if (i % 15 == 0) reader_->Invalidate(rng() % blob_.size(), 1);
      }
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(failures, 0);
  EXPECT_LE(engine_->Stats().cached_bytes, options.disk_cache_limit_bytes);
  EXPECT_GT(engine_->Stats().evicted_bytes, 0u);
  // What the bitmap says is cached is the blob's bytes.
  reader_.reset();
  engine_.reset();
  ASSERT_NO_FATAL_FAILURE(OpenEngine(options));
  uint64_t before = Requests();
  for (uint64_t c = 0; c < blob_.size() / options.chunk_size; c++) {
    uint64_t at = c * options.chunk_size;
    std::string got(options.chunk_size, '\0');
    ASSERT_TRUE(reader_->ReadAt(got.data(), got.size(), at).ok());
    EXPECT_TRUE(got == blob_.substr(at, got.size())) << "chunk " << c;
  }
  EXPECT_GT(Requests(), before);  // the evicted part came from the registry again
}

TEST_F(LazyEngineTest, InvalidatedChunksAreFetchedAgain) {
  ASSERT_NO_FATAL_FAILURE(OpenEngine(DefaultOptions()));
  ASSERT_NO_FATAL_FAILURE(ExpectRead(0, 3 * kMiB));
  reader_->Invalidate(kMiB + 10, 20);  // chunk 1
  EXPECT_EQ(reader_->CachedBytes(), 2 * kMiB);
  uint64_t before = Requests();
  ASSERT_NO_FATAL_FAILURE(ExpectRead(0, 3 * kMiB));
  EXPECT_EQ(Requests(), before + 1);
  EXPECT_EQ(reader_->CachedBytes(), 3 * kMiB);

  // The invalidation is durable too.
  reader_->Invalidate(2 * kMiB, 1);
  ASSERT_NO_FATAL_FAILURE(OpenEngine(DefaultOptions()));
  EXPECT_EQ(reader_->CachedBytes(), 2 * kMiB);
}

TEST_F(LazyEngineTest, OneReaderPerDigest) {
  ASSERT_NO_FATAL_FAILURE(OpenEngine(DefaultOptions()));
  auto again = engine_->OpenBlob(ref_, digest_, blob_.size());
  ASSERT_TRUE(again.ok());
  EXPECT_EQ(again->get(), reader_.get());
  auto wrong_size = engine_->OpenBlob(ref_, digest_, blob_.size() + 1);
  EXPECT_EQ(wrong_size.status().code(), Code::kInvalidArgument);
  auto bad_digest = engine_->OpenBlob(ref_, "sha256:xyz", 10);
  EXPECT_EQ(bad_digest.status().code(), Code::kInvalidArgument);
}

TEST_F(LazyEngineTest, RemoveBlobDeletesItsCacheAndClosesTheReader) {
  ASSERT_NO_FATAL_FAILURE(OpenEngine(DefaultOptions()));
  ASSERT_NO_FATAL_FAILURE(ExpectRead(0, 2 * kMiB));
  ASSERT_TRUE(engine_->RemoveBlob(digest_).ok());
  EXPECT_FALSE(fs::Exists(BlobDir()));
  EXPECT_EQ(engine_->Stats().cached_bytes, 0u);
  std::string buf(10, '\0');
  EXPECT_EQ(reader_->ReadAt(buf.data(), buf.size(), 0).status().code(), Code::kFailedPrecondition);

  auto reopened = engine_->OpenBlob(ref_, digest_, blob_.size());
  ASSERT_TRUE(reopened.ok());
  EXPECT_EQ((*reopened)->CachedBytes(), 0u);
  reader_ = *reopened;
  ASSERT_NO_FATAL_FAILURE(ExpectRead(0, 2 * kMiB));
  EXPECT_TRUE(engine_->RemoveBlob("sha256:" + std::string(64, '0')).ok());
}

TEST_F(LazyEngineTest, ReaderOutlivingTheEngineFailsCleanly) {
  ASSERT_NO_FATAL_FAILURE(OpenEngine(DefaultOptions()));
  ASSERT_NO_FATAL_FAILURE(ExpectRead(0, 10));
  engine_.reset();
  std::string buf(10, '\0');
  EXPECT_EQ(reader_->ReadAt(buf.data(), buf.size(), 0).status().code(), Code::kFailedPrecondition);
}

TEST_F(LazyEngineTest, MetricsCountBytesHitsAndMisses) {
  ASSERT_NO_FATAL_FAILURE(OpenEngine(DefaultOptions()));
  ASSERT_NO_FATAL_FAILURE(ExpectRead(0, 2 * kMiB));
  ASSERT_NO_FATAL_FAILURE(ExpectRead(0, 10));
  EngineStats stats = engine_->Stats();
  EXPECT_EQ(stats.fetched_bytes, 2 * kMiB);
  EXPECT_EQ(stats.misses, 2u);
  EXPECT_EQ(stats.memory_hits, 1u);
  EXPECT_EQ(stats.in_flight_fetches, 0u);
  EXPECT_EQ(stats.cached_bytes, 2 * kMiB);
  EXPECT_EQ(stats.blobs, 1u);

  std::string text = prometheus::TextSerializer().Serialize(engine_->metrics_registry()->Collect());
  EXPECT_NE(text.find("strata_lazy_fetched_bytes_total{priority=\"on_demand\"} 2097152"),
            std::string::npos)
      << text;
  EXPECT_NE(text.find("strata_lazy_blob_cached_bytes{digest=\"" + digest_ + "\"} 2097152"),
            std::string::npos);
  EXPECT_NE(text.find("strata_lazy_fetch_duration_seconds_count{priority=\"on_demand\"} 1"),
            std::string::npos);
}

TEST(LazyEngineOptionsTest, BadOptionsAreInvalidArgument) {
  auto client = registry::Client::Create({});
  ASSERT_TRUE(client.ok());
  EngineOptions options;
  options.cache_dir = "/tmp/strata-lazy-options-unused";
  options.chunk_size = 3 << 20;
  EXPECT_EQ(Engine::Open(options, client->get()).status().code(), Code::kInvalidArgument);
  options.chunk_size = 1 << 20;
  options.disk_cache_limit_bytes = 1 << 20;
  EXPECT_EQ(Engine::Open(options, client->get()).status().code(), Code::kInvalidArgument);
  options.disk_cache_limit_bytes = 0;
  options.cache_dir = "";
  EXPECT_EQ(Engine::Open(options, client->get()).status().code(), Code::kInvalidArgument);
}

}  // namespace
}  // namespace strata::lazy
