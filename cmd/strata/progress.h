// Pull/push progress as people expect from `docker pull`: on a terminal, one line per
// layer redrawn in place (state, a bar, bytes, speed); otherwise plain lines, one per
// state change, that read well in logs.
#pragma once

#include <grpcpp/grpcpp.h>
#include <unistd.h>

#include <cstdio>
#include <map>
#include <string>

#include "strata/images/v1/images.pb.h"

namespace strata::cli {

class ProgressPrinter {
 public:
  // `tty`: redraw in place (use isatty on the output).
  ProgressPrinter(std::FILE* out, bool tty) : out_(out), tty_(tty) {}

  void Update(const ::strata::images::v1::PullProgress& progress);
  // Prints the final state and the elapsed time.
  void Finish(const ::strata::images::v1::PullProgress& last);

 private:
  void Redraw(const ::strata::images::v1::PullProgress& progress);

  std::FILE* out_;
  bool tty_;
  int drawn_lines_ = 0;
  std::map<std::string, int> last_state_;  // by digest, for plain output
  ::strata::images::v1::PullProgress latest_;
};

// "downloading", "already exists", ...
std::string LayerStateText(::strata::images::v1::LayerState state);

// Reads a pull or push progress stream to its end, printing it (redrawn on a terminal,
// plain lines otherwise, nothing when `quiet`); `last` receives the last message, with
// the layers' final states.
template <typename Reader>
grpc::Status Follow(Reader& reader, bool quiet, ::strata::images::v1::PullProgress* last) {
  ProgressPrinter printer(stdout, !quiet && ::isatty(STDOUT_FILENO) != 0);
  ::strata::images::v1::PullProgress msg;
  while (reader->Read(&msg)) {
    if (msg.done() && msg.layers().empty()) {
      // The final message carries the image; keep the layers' last states with it.
      auto layers = std::move(*last->mutable_layers());
      *last = msg;
      *last->mutable_layers() = std::move(layers);
      break;
    }
    *last = msg;
    if (msg.done()) break;
    if (!quiet) printer.Update(msg);
  }
  grpc::Status st = reader->Finish();
  if (!quiet) printer.Finish(*last);
  return st;
}

}  // namespace strata::cli
