// Pull/push progress as people expect from `docker pull`: on a terminal, one line per
// layer redrawn in place (state, a bar, bytes, speed); otherwise plain lines, one per
// state change, that read well in logs.
#pragma once

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

}  // namespace strata::cli
