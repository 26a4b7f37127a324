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
      auto v = node.value<bool>();
      if (!v) return bad_type(key, "boolean");
      config.background_cleanup = *v;
    } else {
      return Status::InvalidArgument("config " + path + ": unknown key \"" + key + "\"");
    }
  }
  return Status::Ok();
}

}  // namespace strata
