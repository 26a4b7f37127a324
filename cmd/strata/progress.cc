#include "cmd/strata/progress.h"

#include "cmd/strata/output.h"

namespace strata::cli {
namespace {

namespace pb = ::strata::images::v1;

std::string Short(const std::string& digest) {
  size_t colon = digest.find(':');
  return digest.substr(colon == std::string::npos ? 0 : colon + 1, 12);
}

std::string Bar(int64_t current, int64_t total, int width) {
  if (total <= 0) return std::string(static_cast<size_t>(width + 2), ' ');
  int filled = static_cast<int>(static_cast<double>(current) / static_cast<double>(total) * width);
  filled = std::max(0, std::min(width, filled));
  std::string bar = "[";
  bar += std::string(static_cast<size_t>(filled), '=');
  if (filled < width) {
    bar += ">";
    bar += std::string(static_cast<size_t>(width - filled - 1), ' ');
  }
  return bar + "]";
}

std::string Seconds(int64_t nanos) {
  char buf[32];
  std::snprintf(buf, sizeof(buf), "%.1fs", static_cast<double>(nanos) / 1e9);
  return buf;
}

}  // namespace

std::string LayerStateText(pb::LayerState state) {
  switch (state) {
    case pb::LAYER_STATE_WAITING:
      return "waiting";
    case pb::LAYER_STATE_DOWNLOADING:
      return "downloading";
    case pb::LAYER_STATE_EXTRACTING:
      return "extracting";
    case pb::LAYER_STATE_VERIFYING:
      return "verifying";
    case pb::LAYER_STATE_DONE:
      return "done";
    case pb::LAYER_STATE_ALREADY_EXISTS:
      return "already exists";
    case pb::LAYER_STATE_FAILED:
      return "failed";
    case pb::LAYER_STATE_UPLOADING:
      return "uploading";
    case pb::LAYER_STATE_LAZY:
      return "lazy";
    default:
      return "unknown";
  }
}

void ProgressPrinter::Redraw(const pb::PullProgress& p) {
  if (drawn_lines_ > 0) std::fprintf(out_, "\033[%dA", drawn_lines_);
  for (const auto& l : p.layers()) {
    std::string line = Short(l.digest()) + ": " + LayerStateText(l.state());
    line.resize(32, ' ');
    bool moving =
        l.state() == pb::LAYER_STATE_DOWNLOADING || l.state() == pb::LAYER_STATE_UPLOADING;
    if (moving) {
      line += Bar(l.current_bytes(), l.total_bytes(), 30) + " " + HumanBytes(l.current_bytes()) +
              "/" + HumanBytes(l.total_bytes());
      if (l.bytes_per_second() > 0) line += "  " + HumanBytes(l.bytes_per_second()) + "/s";
    } else if (l.state() != pb::LAYER_STATE_WAITING) {
      line += HumanBytes(l.total_bytes());
    }
    std::fprintf(out_, "\033[2K%s\n", line.c_str());
  }
  std::fprintf(out_, "\033[2Kelapsed: %s\n", Seconds(p.elapsed_nanos()).c_str());
  drawn_lines_ = p.layers_size() + 1;
  std::fflush(out_);
}

void ProgressPrinter::Update(const pb::PullProgress& p) {
  if (!p.message().empty()) {
    if (tty_ && drawn_lines_ > 0) {
      // Messages scroll above the layer block.
      std::fprintf(out_, "\033[%dA\033[J", drawn_lines_);
      drawn_lines_ = 0;
    }
    std::fprintf(out_, "%s\n", p.message().c_str());
  }
  if (p.layers_size() > 0) latest_ = p;
  if (tty_) {
    if (latest_.layers_size() > 0) Redraw(latest_);
    return;
  }
  for (const auto& l : p.layers()) {
    auto it = last_state_.find(l.digest());
    if (it != last_state_.end() && it->second == l.state()) continue;
    last_state_[l.digest()] = l.state();
    if (l.state() == pb::LAYER_STATE_WAITING) continue;
    std::fprintf(out_, "%s: %s %s\n", Short(l.digest()).c_str(), LayerStateText(l.state()).c_str(),
                 HumanBytes(l.total_bytes()).c_str());
  }
  std::fflush(out_);
}

void ProgressPrinter::Finish(const pb::PullProgress& last) {
  if (tty_ && latest_.layers_size() > 0) {
    pb::PullProgress final_state = latest_;
    final_state.set_elapsed_nanos(last.elapsed_nanos() > 0 ? last.elapsed_nanos()
                                                           : latest_.elapsed_nanos());
    Redraw(final_state);
  } else {
    std::fprintf(out_, "elapsed: %s\n", Seconds(latest_.elapsed_nanos()).c_str());
  }
  std::fflush(out_);
}

}  // namespace strata::cli
