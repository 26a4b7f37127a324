// User-namespace id mappings as containerd writes them ("CONTAINER:HOST:LENGTH", a list
// separated by commas in the containerd.io/snapshot/uidmapping labels).
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "core/status.h"

namespace strata {

// One line of a uid_map/gid_map: container ids [container_id, container_id + size) are
// host ids [host_id, host_id + size).
struct IdMap {
  uint32_t container_id = 0;
  uint32_t host_id = 0;
  uint32_t size = 0;
  bool operator==(const IdMap&) const = default;
};

// "C:H:L".
std::string FormatIdMap(const IdMap& map);
// InvalidArgument unless `text` is "C:H:L" with L > 0 and no overflow past 2^32-1.
Result<IdMap> ParseIdMap(std::string_view text);
// "C:H:L[,C:H:L...]": at least one entry. InvalidArgument naming the bad entry.
Result<std::vector<IdMap>> ParseIdMapList(std::string_view text);
// The host id that container id `id` maps to; NotFound when no entry covers it.
Result<uint32_t> HostIdOf(const std::vector<IdMap>& maps, uint32_t id);

}  // namespace strata
