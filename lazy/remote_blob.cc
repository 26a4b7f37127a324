#include "lazy/remote_blob.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <cstring>

#include "lazy/engine_context.h"

namespace strata::lazy {
namespace {

// Multi-range requests with many parts make large multipart bodies for little gain.
constexpr size_t kMaxRunsPerBatch = 32;

using Clock = std::chrono::steady_clock;

}  // namespace

RemoteBlob::RemoteBlob(std::shared_ptr<EngineContext> context, std::string digest,
                       std::unique_ptr<ChunkStore> store)
    : context_(std::move(context)),
      digest_(std::move(digest)),
      store_(std::move(store)),
      id_(context_->next_blob_id.fetch_add(1)),
      last_use_(new std::atomic<uint64_t>[store_->chunk_count()]()) {}

RemoteBlob::~RemoteBlob() = default;

void RemoteBlob::Attach(const registry::Reference& ref) {
  std::lock_guard<std::mutex> lock(mu_);
  if (attached_ || closed_) return;
  attached_ = true;
  ref_ = ref;
  size_gauge_ = &context_->metrics->blob_size_bytes.Add({{"digest", digest_}});
  cached_gauge_ = &context_->metrics->blob_cached_bytes.Add({{"digest", digest_}});
  size_gauge_->Set(static_cast<double>(store_->blob_size()));
  cached_gauge_->Set(static_cast<double>(store_->CachedBytes()));
}

bool RemoteBlob::attached() const {
  std::lock_guard<std::mutex> lock(mu_);
  return attached_;
}

void RemoteBlob::UpdateCachedGauge() {
  std::lock_guard<std::mutex> lock(mu_);
  if (cached_gauge_) cached_gauge_->Set(static_cast<double>(store_->CachedBytes()));
}

uint64_t RemoteBlob::Close(bool remove_cache) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (closed_) return 0;
    closed_ = true;
    if (size_gauge_) context_->metrics->blob_size_bytes.Remove(size_gauge_);
    if (cached_gauge_) context_->metrics->blob_cached_bytes.Remove(cached_gauge_);
    size_gauge_ = cached_gauge_ = nullptr;
  }
  flight_done_.notify_all();
  context_->memory->EraseBlob(id_);
  context_->metrics->memory_cache_bytes.Set(static_cast<double>(context_->memory->size_bytes()));
  if (!remove_cache) {
    Status s = store_->Persist();
    if (!s.ok()) spdlog::warn("lazy: blob {}: {}", digest_, s.ToString());
    return 0;
  }
  uint64_t dropped = 0;
  Status s = store_->Remove(&dropped);
  if (!s.ok()) spdlog::warn("lazy: removing the cache of blob {}: {}", digest_, s.ToString());
  return dropped;
}

// ---- reading ----------------------------------------------------------------

Result<size_t> RemoteBlob::ReadAt(char* buf, size_t n, uint64_t offset) {
  const uint64_t blob_size = store_->blob_size();
  if (offset >= blob_size || n == 0) return size_t{0};
  n = static_cast<size_t>(std::min<uint64_t>(n, blob_size - offset));
  const uint64_t end = offset + n;
  const uint64_t chunk_size = store_->chunk_size();
  const Clock::time_point deadline = Clock::now() + context_->options.read_deadline;
  EngineMetrics& metrics = *context_->metrics;
  MemoryCache& memory = *context_->memory;

  // Copies the part of the read that lies in [from, from + len) out of `src`, which
  // holds the blob's bytes from offset `from`.
  auto copy_out = [&](uint64_t from, const char* src, uint64_t len) {
    uint64_t lo = std::max(from, offset);
    uint64_t hi = std::min(from + len, end);
    if (lo < hi) std::memcpy(buf + (lo - offset), src + (lo - from), hi - lo);
  };
  auto closed_error = [&] {
    return Status::FailedPrecondition("lazy blob " + digest_ + " is closed");
  };
  auto deadline_error = [&] {
    metrics.deadline_exceeded.Increment();
    return Status(Code::kDeadlineExceeded,
                  "read of lazy blob " + digest_ + " at " + std::to_string(offset) +
                      ": the registry did not deliver within " +
                      std::to_string(context_->options.read_deadline.count()) + " ms");
  };

  std::vector<uint64_t> pending;
  for (uint64_t c = offset / chunk_size; c <= (end - 1) / chunk_size; c++) {
    pending.push_back(c);
    last_use_[c].store(context_->Tick(), std::memory_order_relaxed);
  }
  bool first_pass = true;
  while (!pending.empty()) {
    if (Clock::now() >= deadline) return deadline_error();
    // 1. Memory.
    std::vector<uint64_t> not_in_memory;
    for (uint64_t c : pending) {
      if (MemoryCache::Chunk chunk = memory.Lookup(id_, c)) {
        copy_out(c * chunk_size, chunk->data(), chunk->size());
        if (first_pass) metrics.memory_hits.Increment();
      } else {
        not_in_memory.push_back(c);
      }
    }
    // 2. Disk or flights, decided under mu_ so that no fetch completes in between.
    std::vector<uint64_t> on_disk;
    std::vector<std::pair<uint64_t, FlightPtr>> awaited;  // chunk -> its flight
    std::vector<FlightPtr> waited_flights;                // each once; waiters counted
    std::vector<Batch> batches;
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (closed_) return closed_error();
      std::vector<uint64_t> missing;
      for (uint64_t c : not_in_memory) {
        if (store_->IsPresent(c)) {
          on_disk.push_back(c);
        } else if (auto it = in_flight_.find(c); it != in_flight_.end()) {
          awaited.emplace_back(c, it->second);
        } else {
          missing.push_back(c);
        }
      }
      std::vector<FlightPtr> started = StartFlightsLocked(missing);
      for (uint64_t c : missing) awaited.emplace_back(c, in_flight_.at(c));
      for (auto& [c, flight] : awaited) {
        if (std::find(waited_flights.begin(), waited_flights.end(), flight) ==
            waited_flights.end()) {
          flight->waiters++;
          waited_flights.push_back(flight);
        }
      }
      batches = MakeBatches(std::move(started), Priority::kOnDemand);
    }
    if (first_pass) metrics.misses.Increment(static_cast<double>(awaited.size()));
    for (auto& batch : batches) {
      batch.deadline = deadline;
      Submit(std::move(batch));
    }

    // 3. Disk reads, while the fetches run.
    std::vector<uint64_t> next_pending;
    Status disk_error;
    for (uint64_t c : on_disk) {
      const uint64_t chunk_start = c * chunk_size;
      Result<bool> read = false;
      if (memory.enabled()) {
        auto bytes = std::make_shared<std::string>(store_->ChunkLength(c), '\0');
        read = store_->ReadIfPresent(c, 0, bytes->size(), bytes->data());
        if (read.ok() && *read) {
          copy_out(chunk_start, bytes->data(), bytes->size());
          memory.Insert(id_, c, std::move(bytes));
        }
      } else {
        uint64_t lo = std::max(chunk_start, offset);
        uint64_t hi = std::min(chunk_start + store_->ChunkLength(c), end);
        read = store_->ReadIfPresent(c, lo - chunk_start, hi - lo, buf + (lo - offset));
      }
      if (!read.ok()) {
        disk_error = read.status().WithContext("read lazy blob " + digest_);
        break;
      }
      if (*read) {
        if (first_pass) metrics.disk_hits.Increment();
      } else {
        next_pending.push_back(c);  // evicted since step 2: look again
      }
    }

    // 4. Wait for the flights (always, so that the waiter counts are given back).
    if (!waited_flights.empty()) {
      bool in_time = true;
      bool all_done = true;
      context_->scheduler->AddWaitingReader();
      {
        std::unique_lock<std::mutex> lock(mu_);
        auto finished = [&] {
          for (auto& flight : waited_flights) {
            if (!flight->done) return false;
          }
          return true;
        };
        if (disk_error.ok()) {
          in_time = flight_done_.wait_until(lock, deadline, [&] { return closed_ || finished(); });
        }
        all_done = finished();
        for (auto& flight : waited_flights) flight->waiters--;
      }
      context_->scheduler->RemoveWaitingReader();
      if (!disk_error.ok()) return disk_error;
      if (!in_time) return deadline_error();
      if (!all_done) return closed_error();
      // A flight's status and bytes are final once it is done.
      for (auto& [c, flight] : awaited) {
        if (!flight->status.ok()) return flight->status;
        copy_out(flight->offset, flight->bytes->data(), flight->bytes->size());
        RememberChunk(c, *flight);
      }
    }
    if (!disk_error.ok()) return disk_error;
    pending = std::move(next_pending);
    first_pass = false;
  }
  metrics.memory_cache_bytes.Set(static_cast<double>(memory.size_bytes()));
  return n;
}

void RemoteBlob::RememberChunk(uint64_t chunk, const Flight& flight) {
  if (!context_->memory->enabled()) return;
  uint64_t start = chunk * store_->chunk_size() - flight.offset;
  context_->memory->Insert(
      id_, chunk,
      std::make_shared<std::string>(flight.bytes->substr(start, store_->ChunkLength(chunk))));
}

// ---- flights and batches ------------------------------------------------------

std::vector<RemoteBlob::FlightPtr> RemoteBlob::StartFlightsLocked(
    const std::vector<uint64_t>& chunks) {
  std::vector<FlightPtr> flights;
  for (uint64_t c : chunks) {
    const uint64_t length = store_->ChunkLength(c);
    bool extends = !flights.empty() &&
                   flights.back()->first_chunk + flights.back()->chunk_count == c &&
                   flights.back()->length + length <= context_->request_bytes;
    if (!extends) {
      auto flight = std::make_shared<Flight>();
      flight->first_chunk = c;
      flight->offset = c * store_->chunk_size();
      flights.push_back(std::move(flight));
    }
    flights.back()->chunk_count++;
    flights.back()->length += length;
    in_flight_[c] = flights.back();
  }
  return flights;
}

std::vector<RemoteBlob::Batch> RemoteBlob::MakeBatches(std::vector<FlightPtr> flights,
                                                       Priority priority) const {
  std::vector<Batch> batches;
  uint64_t batch_bytes = 0;
  for (auto& flight : flights) {
    if (batches.empty() || batches.back().flights.size() >= kMaxRunsPerBatch ||
        batch_bytes + flight->length > context_->request_bytes) {
      batches.emplace_back().priority = priority;
      batch_bytes = 0;
    }
    batch_bytes += flight->length;
    batches.back().flights.push_back(std::move(flight));
  }
  return batches;
}

void RemoteBlob::Submit(Batch batch) {
  auto self = shared_from_this();
  auto shared = std::make_shared<Batch>(std::move(batch));
  Priority priority = shared->priority;
  context_->scheduler->Submit(
      priority, {[self, shared] { (void)self->RunBatch(*shared); },
                 [self, shared] {
                   self->FinishFlights(*shared,
                                       Status(Code::kCancelled, "lazy engine is shutting down"));
                 }});
}

Status RemoteBlob::RunBatch(const Batch& batch) {
  registry::Reference ref;
  {
    std::unique_lock<std::mutex> lock(mu_);
    if (closed_) {
      lock.unlock();
      Status closed = Status::FailedPrecondition("lazy blob " + digest_ + " is closed");
      FinishFlights(batch, closed);
      return closed;
    }
    if (batch.priority == Priority::kOnDemand && Clock::now() > batch.deadline &&
        std::all_of(batch.flights.begin(), batch.flights.end(),
                    [](const FlightPtr& f) { return f->waiters == 0; })) {
      // Every reader gave up on it (a slow or stalled registry): do not add load.
      lock.unlock();
      Status dropped(Code::kDeadlineExceeded, "no reader waits for this fetch any more");
      FinishFlights(batch, dropped);
      return dropped;
    }
    ref = ref_;
  }

  EngineMetrics& metrics = *context_->metrics;
  std::vector<registry::ByteRange> ranges;
  uint64_t total = 0;
  for (const auto& flight : batch.flights) {
    ranges.push_back({flight->offset, flight->length});
    total += flight->length;
  }
  metrics.fetch_requests(batch.priority).Increment();
  metrics.in_flight_fetches.Increment();
  const Clock::time_point started = Clock::now();
  Result<std::vector<std::string>> got = std::vector<std::string>();
  if (ranges.size() == 1) {
    Result<std::string> one = context_->client->ReadRange(ref, digest_, ranges[0]);
    if (one.ok()) {
      got->push_back(std::move(*one));
    } else {
      got = one.status();
    }
  } else {
    got = context_->client->ReadRanges(ref, digest_, ranges);
  }
  metrics.in_flight_fetches.Decrement();
  metrics.fetch_duration(batch.priority)
      .Observe(std::chrono::duration<double>(Clock::now() - started).count());
  if (got.ok()) {
    for (size_t i = 0; i < ranges.size(); i++) {
      if ((*got)[i].size() != ranges[i].length) {
        got = Status::DataLoss("registry returned " + std::to_string((*got)[i].size()) +
                               " bytes for range " + std::to_string(ranges[i].offset) + "+" +
                               std::to_string(ranges[i].length) + " of blob " + digest_);
        break;
      }
    }
  }
  if (!got.ok()) {
    metrics.fetch_errors(batch.priority).Increment();
    spdlog::warn("lazy: {} fetch of blob {} failed: {}", PriorityName(batch.priority), digest_,
                 got.status().ToString());
    FinishFlights(batch, got.status());
    return got.status();
  }
  metrics.fetched_bytes(batch.priority).Increment(static_cast<double>(total));

  // Cache on disk when the budget has room; readers get the bytes either way.
  std::vector<bool> stored(batch.flights.size(), false);
  DiskBudget& budget = *context_->budget;
  const bool reserved = budget.Reserve(total);
  if (reserved) {
    for (size_t i = 0; i < batch.flights.size(); i++) {
      Status s = store_->Write(batch.flights[i]->offset, (*got)[i]);
      stored[i] = s.ok();
      if (!s.ok() && s.code() != Code::kFailedPrecondition) {
        spdlog::warn("lazy: caching blob {}: {}", digest_, s.ToString());
      }
    }
  }
  uint64_t added = 0;
  FinishFlights(batch, Status::Ok(), &*got, &stored, &added);
  if (reserved) budget.Release(total);
  if (added > 0) {
    Status s = store_->Persist();
    if (!s.ok()) spdlog::warn("lazy: persisting the bitmap of blob {}: {}", digest_, s.ToString());
  }
  return Status::Ok();
}

void RemoteBlob::FinishFlights(const Batch& batch, const Status& status,
                               std::vector<std::string>* bytes, const std::vector<bool>* stored,
                               uint64_t* added) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    for (size_t i = 0; i < batch.flights.size(); i++) {
      Flight& flight = *batch.flights[i];
      const uint64_t end_chunk = flight.first_chunk + flight.chunk_count;
      if (status.ok() && stored && (*stored)[i] && !closed_) {
        // Accounted together with the bits, so that no one sees bits the budget has
        // not counted (RemoveBlob subtracting them first would underflow).
        uint64_t marked = store_->MarkPresent(flight.first_chunk, flight.chunk_count);
        context_->budget->Add(static_cast<int64_t>(marked));
        *added += marked;
        // Freshly cached chunks are the newest: eviction must not take them first.
        for (uint64_t c = flight.first_chunk; c < end_chunk; c++) {
          last_use_[c].store(context_->Tick(), std::memory_order_relaxed);
        }
      }
      flight.done = true;
      flight.status = status;
      if (status.ok()) flight.bytes = std::make_shared<const std::string>(std::move((*bytes)[i]));
      for (uint64_t c = flight.first_chunk; c < end_chunk; c++) {
        auto it = in_flight_.find(c);
        if (it != in_flight_.end() && it->second.get() == &flight) in_flight_.erase(it);
      }
    }
    if (cached_gauge_ && added && *added > 0) {
      cached_gauge_->Set(static_cast<double>(store_->CachedBytes()));
    }
  }
  flight_done_.notify_all();
}

// ---- prefetch and background --------------------------------------------------

void RemoteBlob::Prefetch(const std::vector<registry::ByteRange>& ranges) {
  const uint64_t chunk_size = store_->chunk_size();
  const uint64_t blob_size = store_->blob_size();
  std::vector<std::pair<uint64_t, uint64_t>> intervals;
  for (const auto& r : ranges) {
    if (r.length == 0 || r.offset >= blob_size) continue;
    uint64_t last_byte = std::min(r.offset + r.length, blob_size) - 1;
    intervals.emplace_back(r.offset / chunk_size, last_byte / chunk_size + 1);
  }
  if (intervals.empty()) return;
  std::sort(intervals.begin(), intervals.end());
  auto wanted = std::make_shared<Wanted>();
  wanted->priority = Priority::kPrefetch;
  for (const auto& interval : intervals) {
    if (!wanted->intervals.empty() && interval.first <= wanted->intervals.back().second) {
      wanted->intervals.back().second = std::max(wanted->intervals.back().second, interval.second);
    } else {
      wanted->intervals.push_back(interval);
    }
  }
  QueueWanted(std::move(wanted), false);
}

void RemoteBlob::FetchRemaining() {
  if (store_->chunk_count() == 0) return;
  auto wanted = std::make_shared<Wanted>();
  wanted->priority = Priority::kBackground;
  wanted->intervals.emplace_back(0, store_->chunk_count());
  QueueWanted(std::move(wanted), false);
}

void RemoteBlob::QueueWanted(std::shared_ptr<Wanted> wanted, bool front) {
  auto self = shared_from_this();
  Priority priority = wanted->priority;
  context_->scheduler->Submit(priority, {[self, wanted] { self->RunWanted(wanted); }, nullptr},
                              front);
}

void RemoteBlob::RunWanted(const std::shared_ptr<Wanted>& wanted) {
  if (wanted->failed) return;  // a piece failed: stop rather than hammer the registry
  std::vector<FlightPtr> started;
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (closed_) return;
    // Collects absent chunks not in flight, from the front, up to one request's worth.
    std::vector<uint64_t> chunks;
    uint64_t bytes = 0;
    size_t runs = 0;
    auto& intervals = wanted->intervals;
    bool full = false;
    while (!intervals.empty() && !full) {
      auto& interval = intervals.front();
      for (; interval.first < interval.second; interval.first++) {
        uint64_t c = interval.first;
        if (store_->IsPresent(c) || in_flight_.count(c)) continue;
        bool new_run = chunks.empty() || chunks.back() + 1 != c;
        if (bytes + store_->ChunkLength(c) > context_->request_bytes ||
            (new_run && runs == kMaxRunsPerBatch)) {
          full = true;
          break;
        }
        runs += new_run ? 1 : 0;
        bytes += store_->ChunkLength(c);
        chunks.push_back(c);
      }
      if (!full) intervals.erase(intervals.begin());
    }
    started = StartFlightsLocked(chunks);
  }
  // The rest goes back to the front of its queue before this piece is fetched, so
  // another worker (within the priority's limit) may fetch the next piece meanwhile.
  if (!wanted->intervals.empty()) QueueWanted(wanted, true);
  for (auto& batch : MakeBatches(std::move(started), wanted->priority)) {
    if (!RunBatch(batch).ok()) wanted->failed = true;
  }
}

// ---- invalidation and eviction -------------------------------------------------

void RemoteBlob::Invalidate(uint64_t offset, uint64_t n) {
  const uint64_t blob_size = store_->blob_size();
  if (n == 0 || offset >= blob_size) return;
  const uint64_t chunk_size = store_->chunk_size();
  uint64_t last_byte = std::min(offset + n, blob_size) - 1;
  std::vector<uint64_t> chunks;
  for (uint64_t c = offset / chunk_size; c <= last_byte / chunk_size; c++) {
    chunks.push_back(c);
    context_->memory->Erase(id_, c);
  }
  uint64_t cleared = 0;
  Status s = store_->Clear(chunks, false, &cleared);
  if (!s.ok()) spdlog::warn("lazy: invalidating blob {}: {}", digest_, s.ToString());
  context_->budget->Add(-static_cast<int64_t>(cleared));
  UpdateCachedGauge();
  context_->metrics->memory_cache_bytes.Set(static_cast<double>(context_->memory->size_bytes()));
}

void RemoteBlob::AddEvictionCandidates(size_t blob_index,
                                       std::vector<EvictionCandidate>* out) const {
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (closed_) return;
  }
  for (uint64_t c : store_->PresentChunks()) {
    out->push_back(
        {last_use_[c].load(std::memory_order_relaxed), blob_index, c, store_->ChunkLength(c)});
  }
}

uint64_t RemoteBlob::Evict(const std::vector<uint64_t>& chunks) {
  uint64_t cleared = 0;
  Status s = store_->Clear(chunks, true, &cleared);
  if (!s.ok()) spdlog::warn("lazy: evicting from blob {}: {}", digest_, s.ToString());
  for (uint64_t c : chunks) context_->memory->Erase(id_, c);
  context_->budget->Add(-static_cast<int64_t>(cleared));
  UpdateCachedGauge();
  context_->metrics->memory_cache_bytes.Set(static_cast<double>(context_->memory->size_bytes()));
  return cleared;
}

}  // namespace strata::lazy
