#include "snapshotter/snapshotter.h"

#include "core/quote.h"

namespace strata::snapshotter {

std::string_view KindName(Kind kind) {
  switch (kind) {
    case Kind::kView:
      return "view";
    case Kind::kActive:
      return "active";
    case Kind::kCommitted:
      return "committed";
    case Kind::kUnknown:
      break;
  }
  return "unknown";
}

Status ValidateLabels(const Labels& labels) {
  for (const auto& [k, v] : labels) {
    if (k.size() + v.size() > kMaxLabelSize) {
      return Status::InvalidArgument(
          "label key and value length (" + std::to_string(k.size() + v.size()) +
          " bytes) greater than maximum size (" + std::to_string(kMaxLabelSize) +
          " bytes), key: " + Quote(k, 64));
    }
  }
  return Status::Ok();
}

}  // namespace strata::snapshotter
