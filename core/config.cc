#include "core/config.h"

#include <toml++/toml.h>

#include <sstream>

namespace strata {

Result<unsigned> ParseOctalMode(const std::string& text) {
  if (text.empty() || text.size() > 5) return Status::InvalidArgument("bad mode \"" + text + "\"");
  unsigned mode = 0;
  for (char c : text) {
    if (c < '0' || c > '7') return Status::InvalidArgument("bad octal mode \"" + text + "\"");
    mode = mode * 8 + static_cast<unsigned>(c - '0');
  }
  if (mode > 07777) return Status::InvalidArgument("mode out of range \"" + text + "\"");
  return mode;
}

Result<int64_t> ParseDurationMs(const std::string& text) {
  auto bad = [&] {
    return Status::InvalidArgument("bad duration \"" + text + "\" (use e.g. 500ms, 10s, 1m)");
  };
  if (text.empty()) return bad();
  int64_t total = 0;
  size_t i = 0;
  while (i < text.size()) {
    size_t start = i;
    int64_t n = 0;
    while (i < text.size() && text[i] >= '0' && text[i] <= '9') {
      n = n * 10 + (text[i] - '0');
      if (n > 1000000000LL) return bad();
      i++;
    }
    if (i == start) return bad();
    size_t unit_start = i;
    while (i < text.size() && (text[i] < '0' || text[i] > '9')) i++;
    std::string unit = text.substr(unit_start, i - unit_start);
    if (unit == "ms") {
      total += n;
    } else if (unit == "s") {
      total += n * 1000;
    } else if (unit == "m") {
      total += n * 60000;
    } else if (unit == "h") {
      total += n * 3600000;
    } else {
      return bad();
    }
  }
  return total;
}

Result<uint64_t> ParseByteSize(const std::string& text) {
  auto bad = [&] {
    return Status::InvalidArgument("bad size \"" + text + "\" (use e.g. 4096, 512KiB, 64MiB, 2GiB)");
  };
  size_t i = 0;
  uint64_t n = 0;
  while (i < text.size() && text[i] >= '0' && text[i] <= '9') {
    if (n > (uint64_t{1} << 50)) return bad();
    n = n * 10 + static_cast<uint64_t>(text[i] - '0');
    i++;
  }
  if (i == 0) return bad();
  std::string unit = text.substr(i);
  if (!unit.empty() && unit.front() == ' ') unit.erase(0, 1);
  static const std::pair<const char*, uint64_t> kUnits[] = {
      {"", 1},
      {"B", 1},
      {"K", uint64_t{1} << 10},
      {"KiB", uint64_t{1} << 10},
      {"KB", 1000},
      {"M", uint64_t{1} << 20},
      {"MiB", uint64_t{1} << 20},
      {"MB", 1000000},
      {"G", uint64_t{1} << 30},
      {"GiB", uint64_t{1} << 30},
      {"GB", 1000000000},
      {"T", uint64_t{1} << 40},
      {"TiB", uint64_t{1} << 40},
      {"TB", 1000000000000},
  };
  for (const auto& [name, factor] : kUnits) {
    if (unit == name) {
      if (n > UINT64_MAX / factor) return bad();
      return n * factor;
    }
  }
  return bad();
}

namespace {

// Reads the keys of one [section] into `config`.
Status LoadSection(const std::string& path, const std::string& section, const toml::table& table,
                   DaemonConfig& config) {
  auto where = [&](const std::string& key) {
    return "config " + path + ": key \"" + section + "." + key + "\"";
  };
  auto string_of = [&](const std::string& key, const toml::node& node) -> Result<std::string> {
    auto v = node.value<std::string>();
    if (!v) return Status::InvalidArgument(where(key) + " must be a string");
    return *v;
  };
  // value_exact, not value: toml++'s value<T>() would read `true` as 1 and `1` as true.
  auto int_of = [&](const std::string& key, const toml::node& node, int64_t min,
                    int64_t max) -> Result<int64_t> {
    auto v = node.value_exact<int64_t>();
    if (!v || *v < min || *v > max) {
      return Status::InvalidArgument(where(key) + " must be an integer from " +
                                     std::to_string(min) + " to " + std::to_string(max));
    }
    return *v;
  };
  auto bool_of = [&](const std::string& key, const toml::node& node) -> Result<bool> {
    auto v = node.value_exact<bool>();
    if (!v) return Status::InvalidArgument(where(key) + " must be true or false");
    return *v;
  };
  auto duration_of = [&](const std::string& key, const toml::node& node) -> Result<int64_t> {
    ASSIGN_OR_RETURN(std::string text, string_of(key, node));
    Result<int64_t> ms = ParseDurationMs(text);
    if (!ms.ok()) return ms.status().WithContext(where(key));
    return *ms;
  };
  auto size_of = [&](const std::string& key, const toml::node& node) -> Result<uint64_t> {
    if (auto v = node.value_exact<int64_t>()) {
      if (*v < 0) return Status::InvalidArgument(where(key) + " must not be negative");
      return static_cast<uint64_t>(*v);
    }
    ASSIGN_OR_RETURN(std::string text, string_of(key, node));
    Result<uint64_t> size = ParseByteSize(text);
    if (!size.ok()) return size.status().WithContext(where(key));
    return *size;
  };
  for (const auto& [key_view, node] : table) {
    std::string key(key_view.str());
    if (section == "lazy") {
      if (key == "enabled") {
        ASSIGN_OR_RETURN(config.lazy_enabled, bool_of(key, node));
      } else if (key == "cache_dir") {
        ASSIGN_OR_RETURN(config.lazy_cache_dir, string_of(key, node));
      } else if (key == "chunk_size") {
        ASSIGN_OR_RETURN(config.lazy_chunk_size, size_of(key, node));
      } else if (key == "max_connections") {
        ASSIGN_OR_RETURN(int64_t v, int_of(key, node, 1, 256));
        config.lazy_max_connections = static_cast<int>(v);
      } else if (key == "read_deadline") {
        ASSIGN_OR_RETURN(config.lazy_read_deadline_ms, duration_of(key, node));
      } else if (key == "memory_cache") {
        ASSIGN_OR_RETURN(config.lazy_memory_cache_bytes, size_of(key, node));
      } else if (key == "disk_cache_limit") {
        ASSIGN_OR_RETURN(config.lazy_disk_cache_limit_bytes, size_of(key, node));
      } else if (key == "prefetch") {
        ASSIGN_OR_RETURN(config.lazy_prefetch, bool_of(key, node));
      } else if (key == "background_fetch") {
        ASSIGN_OR_RETURN(config.lazy_background_fetch, bool_of(key, node));
      } else if (key == "restart_grace") {
        ASSIGN_OR_RETURN(config.lazy_restart_grace_ms, duration_of(key, node));
      } else if (key == "metrics_address") {
        ASSIGN_OR_RETURN(config.lazy_metrics_address, string_of(key, node));
      } else {
        return Status::InvalidArgument("config " + path + ": unknown key \"lazy." + key + "\"");
      }
      continue;
    }
    if (section == "registry" && key == "config_path") {
      ASSIGN_OR_RETURN(config.registry_config_path, string_of(key, node));
    } else if (section == "registry" && key == "docker_config") {
      ASSIGN_OR_RETURN(config.registry_docker_config, string_of(key, node));
    } else if (section == "registry" && key == "max_attempts") {
      ASSIGN_OR_RETURN(int64_t v, int_of(key, node, 1, 100));
      config.registry_max_attempts = static_cast<int>(v);
    } else if (section == "transfer" && key == "snapshotter") {
      ASSIGN_OR_RETURN(config.transfer_snapshotter, string_of(key, node));
      if (config.transfer_snapshotter.empty()) {
        return Status::InvalidArgument(where(key) + " must not be empty");
      }
    } else if (section == "transfer" && key == "max_concurrent_downloads") {
      ASSIGN_OR_RETURN(int64_t v, int_of(key, node, 1, 64));
      config.transfer_max_concurrent_downloads = static_cast<int>(v);
    } else if (section == "runtime" && key == "default_runtime") {
      ASSIGN_OR_RETURN(config.runtime_default, string_of(key, node));
      if (config.runtime_default.empty()) return Status::InvalidArgument(where(key) + " must not be empty");
    } else if (section == "runtime" && key == "cgroup_parent") {
      ASSIGN_OR_RETURN(config.runtime_cgroup_parent, string_of(key, node));
      if (config.runtime_cgroup_parent.empty() ||
          config.runtime_cgroup_parent.find("..") != std::string::npos) {
        return Status::InvalidArgument(where(key) + " must be a non-empty cgroup name without \"..\"");
      }
    } else if (section == "runtime" && key == "userns_auto_first_id") {
      ASSIGN_OR_RETURN(int64_t v, int_of(key, node, 1, 4294967295LL - 65536));
      config.runtime_userns_auto_first = static_cast<uint32_t>(v);
    } else if (section == "runtime" && key == "userns_auto_ranges") {
      ASSIGN_OR_RETURN(int64_t v, int_of(key, node, 1, 65535));
      config.runtime_userns_auto_count = static_cast<uint32_t>(v);
    } else if (section == "runtime" && key == "cdi_spec_dirs") {
      auto* array = node.as_array();
      if (array == nullptr) return Status::InvalidArgument(where(key) + " must be an array of strings");
      config.runtime_cdi_spec_dirs.clear();
      for (const auto& item : *array) {
        auto v = item.value<std::string>();
        if (!v) return Status::InvalidArgument(where(key) + " must be an array of strings");
        config.runtime_cdi_spec_dirs.push_back(*v);
      }
    } else if (section == "image_verifier" && key == "bin_dir") {
      ASSIGN_OR_RETURN(config.verifier_bin_dir, string_of(key, node));
    } else if (section == "image_verifier" && key == "max_verifiers") {
      ASSIGN_OR_RETURN(int64_t v, int_of(key, node, 0, 1000));
      config.verifier_max_verifiers = static_cast<int>(v);
    } else if (section == "image_verifier" && key == "per_verifier_timeout") {
      ASSIGN_OR_RETURN(config.verifier_timeout_ms, duration_of(key, node));
    } else {
      return Status::InvalidArgument("config " + path + ": unknown key \"" + section + "." + key +
                                     "\"");
    }
  }
  return Status::Ok();
}

}  // namespace

Status LoadConfigFile(const std::string& path, DaemonConfig& config) {
  toml::table table;
  try {
    table = toml::parse_file(path);
  } catch (const toml::parse_error& e) {
    std::ostringstream msg;
    msg << "config " << path << ":" << e.source().begin.line << ": " << e.description();
    return Status::InvalidArgument(msg.str());
  }
  auto bad_type = [&](const std::string& key, const char* want) {
    return Status::InvalidArgument("config " + path + ": key \"" + key + "\" must be a " + want);
  };
  for (const auto& [key_view, node] : table) {
    std::string key(key_view.str());
    if (key == "root" || key == "address" || key == "log_level" || key == "socket_group") {
      auto v = node.value<std::string>();
      if (!v) return bad_type(key, "string");
      if (key == "root") config.root = *v;
      if (key == "address") config.address = *v;
      if (key == "log_level") config.log_level = *v;
      if (key == "socket_group") config.socket_group = *v;
    } else if (key == "socket_mode") {
      auto v = node.value<std::string>();
      if (!v) return bad_type(key, "string such as \"0660\"");
      auto mode = ParseOctalMode(*v);
      if (!mode.ok()) return mode.status().WithContext("config " + path);
      config.socket_mode = *mode;
    } else if (key == "background_cleanup") {
      auto v = node.value_exact<bool>();
      if (!v) return bad_type(key, "boolean");
      config.background_cleanup = *v;
    } else if ((key == "registry" || key == "transfer" || key == "image_verifier" ||
                key == "lazy" || key == "runtime") &&
               node.is_table()) {
      RETURN_IF_ERROR(LoadSection(path, key, *node.as_table(), config));
    } else {
      return Status::InvalidArgument("config " + path + ": unknown key \"" + key + "\"");
    }
  }
  return Status::Ok();
}

}  // namespace strata
