#include "core/idmap.h"

#include <charconv>
#include <limits>

namespace strata {
namespace {

Result<uint32_t> ParseU32(std::string_view text, std::string_view what) {
  uint32_t v = 0;
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), v);
  if (ec != std::errc() || end != text.data() + text.size() || text.empty()) {
    return Status::InvalidArgument(std::string(what) + " \"" + std::string(text) +
                                   "\" is not a number in 0..4294967295");
  }
  return v;
}

}  // namespace

std::string FormatIdMap(const IdMap& map) {
  return std::to_string(map.container_id) + ":" + std::to_string(map.host_id) + ":" +
         std::to_string(map.size);
}

Result<IdMap> ParseIdMap(std::string_view text) {
  size_t a = text.find(':');
  size_t b = a == std::string_view::npos ? a : text.find(':', a + 1);
  if (a == std::string_view::npos || b == std::string_view::npos ||
      text.find(':', b + 1) != std::string_view::npos) {
    return Status::InvalidArgument("id mapping \"" + std::string(text) +
                                   "\" is not CONTAINER:HOST:LENGTH");
  }
  IdMap map;
  ASSIGN_OR_RETURN(map.container_id, ParseU32(text.substr(0, a), "container id"));
  ASSIGN_OR_RETURN(map.host_id, ParseU32(text.substr(a + 1, b - a - 1), "host id"));
  ASSIGN_OR_RETURN(map.size, ParseU32(text.substr(b + 1), "length"));
  constexpr uint64_t kMax = std::numeric_limits<uint32_t>::max();
  if (map.size == 0) {
    return Status::InvalidArgument("id mapping \"" + std::string(text) + "\" has length 0");
  }
  if (uint64_t{map.container_id} + map.size > kMax || uint64_t{map.host_id} + map.size > kMax) {
    return Status::InvalidArgument("id mapping \"" + std::string(text) +
                                   "\" runs past the largest id (4294967294)");
  }
  return map;
}

Result<std::vector<IdMap>> ParseIdMapList(std::string_view text) {
  std::vector<IdMap> out;
  size_t start = 0;
  while (true) {
    size_t comma = text.find(',', start);
    std::string_view entry = text.substr(
        start, comma == std::string_view::npos ? std::string_view::npos : comma - start);
    ASSIGN_OR_RETURN(IdMap m, ParseIdMap(entry));
    out.push_back(m);
    if (comma == std::string_view::npos) break;
    start = comma + 1;
  }
  return out;
}

Result<uint32_t> HostIdOf(const std::vector<IdMap>& maps, uint32_t id) {
  for (const auto& m : maps) {
    if (id >= m.container_id && id - m.container_id < m.size)
      return m.host_id + (id - m.container_id);
  }
  return Status::NotFound("id " + std::to_string(id) + " is not mapped");
}

}  // namespace strata
