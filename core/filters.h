// containerd's filter language, used to select snapshots, images and content.
//
//   selectors := selector ("," selector)*        all must match (AND)
//   selector  := fieldpath [op value]            no op: the field is present
//   fieldpath := field ("." field)*              field: [A-Za-z0-9_]+ or "quoted"
//   op        := "==" | "!=" | "~="              ~= is an unanchored regular expression
//   value     := run of non-space, non-comma characters | "quoted" | /regexp/ | |regexp|
//
// Several filter strings given together match when any of them matches (OR). An
// empty list, or an empty string, matches everything.
#pragma once

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "core/status.h"

namespace strata::filters {

// Exposes an object's fields to a filter: returns the value at `fieldpath`, or nullopt
// when the field is absent.
class Adaptor {
 public:
  virtual ~Adaptor() = default;
  virtual std::optional<std::string> Field(const std::vector<std::string>& fieldpath) const = 0;
};

class Filter {
 public:
  // Parses filter strings (OR of ANDs). InvalidArgument with the position of the error.
  static Result<Filter> ParseAll(const std::vector<std::string>& filters);

  bool Match(const Adaptor& adaptor) const;
  // True when this filter matches everything.
  bool MatchesAll() const { return any_.empty(); }

  struct Selector;

 private:
  std::vector<std::vector<std::shared_ptr<const Selector>>> any_;
};

}  // namespace strata::filters
