#include "registry/hosts.h"

#include <toml++/toml.h>

#include <algorithm>
#include <sstream>

#include "core/fs.h"
#include "core/quote.h"

namespace strata::registry {
namespace {

std::string AbsPath(const std::string& p, const std::string& base) {
  return !p.empty() && p[0] == '/' ? p : base + "/" + p;
}

Status Bad(const std::string& file, const std::string& what) {
  return Status::InvalidArgument("hosts file " + file + ": " + what);
}

// Reads a string or a list of strings.
Status StringList(const toml::node& node, const std::string& file, const std::string& key,
                  std::vector<std::string>& out) {
  if (auto s = node.value<std::string>()) {
    out.push_back(*s);
    return Status::Ok();
  }
  if (const toml::array* a = node.as_array()) {
    for (const auto& item : *a) {
      auto s = item.value<std::string>();
      if (!s) return Bad(file, "\"" + key + "\" must hold strings");
      out.push_back(*s);
    }
    return Status::Ok();
  }
  return Bad(file, "\"" + key + "\" must be a string or a list of strings");
}

// Fills `e` from the per-host keys of `table` (the top level or one [host."…"]).
Status ParseHostKeys(const toml::table& table, const std::string& server, const std::string& dir,
                     const std::string& file, RegistryEndpoint& e) {
  bool override_path = table["override_path"].value_or(false);
  if (!server.empty()) {
    if (server.find("://") != std::string::npos && server.rfind("http://", 0) != 0 &&
        server.rfind("https://", 0) != 0) {
      return Bad(file, "unsupported scheme in " + Quote(server));
    }
    std::string url = server.rfind("http", 0) == 0 ? server : "https://" + server;
    size_t scheme_end = url.find("://");
    if (scheme_end == std::string::npos) return Bad(file, "bad server URL " + Quote(server));
    e.scheme = url.substr(0, scheme_end);
    if (e.scheme != "http" && e.scheme != "https") {
      return Bad(file, "unsupported scheme in " + Quote(server));
    }
    std::string rest = url.substr(scheme_end + 3);
    size_t slash = rest.find('/');
    e.host = rest.substr(0, slash);
    if (e.host.empty()) return Bad(file, "no host in " + Quote(server));
    std::string path = slash == std::string::npos ? "" : rest.substr(slash);
    while (path.size() > 1 && path.back() == '/') path.pop_back();
    if (path == "/") path.clear();
    if (!path.empty()) {
      if (!override_path && !(path.size() >= 3 && path.compare(path.size() - 3, 3, "/v2") == 0)) {
        path += "/v2";
      }
    } else if (!override_path) {
      path = "/v2";
    }
    e.path = path;
  }
  if (auto v = table["skip_verify"].value<bool>()) e.skip_verify = *v;
  if (const toml::node* caps = table.get("capabilities")) {
    std::vector<std::string> names;
    RETURN_IF_ERROR(StringList(*caps, file, "capabilities", names));
    if (!names.empty()) e.capabilities = 0;
    for (auto name : names) {
      std::transform(name.begin(), name.end(), name.begin(), ::tolower);
      if (name == "pull") {
        e.capabilities |= kCapabilityPull;
      } else if (name == "resolve") {
        e.capabilities |= kCapabilityResolve;
      } else if (name == "push") {
        e.capabilities |= kCapabilityPush;
      } else {
        return Bad(file, "unknown capability " + Quote(name));
      }
    }
  }
  if (const toml::node* ca = table.get("ca")) {
    std::vector<std::string> files;
    RETURN_IF_ERROR(StringList(*ca, file, "ca", files));
    for (const auto& f : files) e.ca_files.push_back(AbsPath(f, dir));
  }
  if (const toml::node* client = table.get("client")) {
    if (auto s = client->value<std::string>()) {
      e.client_certs.emplace_back(AbsPath(*s, dir), "");
    } else if (const toml::array* list = client->as_array()) {
      for (const auto& item : *list) {
        if (auto s = item.value<std::string>()) {
          e.client_certs.emplace_back(AbsPath(*s, dir), "");
          continue;
        }
        const toml::array* pair = item.as_array();
        if (pair == nullptr || pair->empty() || pair->size() > 2) {
          return Bad(file, "\"client\" entries must be a path or a [cert, key] pair");
        }
        auto cert = (*pair)[0].value<std::string>();
        auto key = pair->size() == 2 ? (*pair)[1].value<std::string>() : std::string();
        if (!cert || !key) return Bad(file, "\"client\" pairs must hold strings");
        e.client_certs.emplace_back(AbsPath(*cert, dir), key->empty() ? "" : AbsPath(*key, dir));
      }
    } else {
      return Bad(file, "\"client\" must be a path or a list");
    }
  }
  if (const toml::node* header = table.get("header")) {
    const toml::table* h = header->as_table();
    if (h == nullptr) return Bad(file, "\"header\" must be a table");
    for (const auto& [name, value] : *h) {
      std::vector<std::string> values;
      RETURN_IF_ERROR(StringList(value, file, "header." + std::string(name.str()), values));
      e.headers[std::string(name.str())] = std::move(values);
    }
  }
  return Status::Ok();
}

// Fills an endpoint left without a host by the file with containerd's default.
void FillDefault(const std::string& host, RegistryEndpoint& e) {
  if (!e.host.empty()) return;
  if (host == "docker.io") {
    e.scheme = "https";
    e.host = "registry-1.docker.io";
  } else if (IsLoopbackHost(host)) {
    e.scheme = "http";
    e.host = host;
    e.skip_verify = true;
  } else {
    e.scheme = "https";
    e.host = host;
  }
  e.path = "/v2";
  e.capabilities = kCapabilityPull | kCapabilityResolve | kCapabilityPush;
}

// Docker's certs.d layout: *.crt are CAs, *.cert with a matching *.key are client pairs.
RegistryEndpoint FromCertFiles(const std::string& dir) {
  RegistryEndpoint e;
  auto listed = fs::ListDir(dir);
  std::vector<std::string> names =
      listed.ok() ? std::move(listed).value() : std::vector<std::string>();
  std::sort(names.begin(), names.end());
  auto ends_with = [](const std::string& s, const std::string& suffix) {
    return s.size() > suffix.size() &&
           s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
  };
  for (const auto& n : names) {
    if (ends_with(n, ".crt")) e.ca_files.push_back(dir + "/" + n);
    if (ends_with(n, ".cert")) {
      std::string key = n.substr(0, n.size() - 5) + ".key";
      if (std::find(names.begin(), names.end(), key) != names.end()) {
        e.client_certs.emplace_back(dir + "/" + n, dir + "/" + key);
      }
    }
  }
  return e;
}

}  // namespace

bool IsLoopbackHost(const std::string& host) {
  std::string h = host;
  if (!h.empty() && h[0] == '[') {
    h = h.substr(1, h.find(']') - 1);
  } else if (std::count(h.begin(), h.end(), ':') == 1) {
    h = h.substr(0, h.find(':'));
  }
  if (h == "localhost" || h == "::1") return true;
  return h.rfind("127.", 0) == 0 &&
         std::all_of(h.begin(), h.end(), [](char c) { return std::isdigit(c) || c == '.'; });
}

Result<std::vector<RegistryEndpoint>> ParseHostsToml(const std::string& host,
                                                     const std::string& dir,
                                                     const std::string& text) {
  const std::string file = dir + "/hosts.toml";
  toml::table root;
  try {
    root = toml::parse(text, file);
  } catch (const toml::parse_error& err) {
    std::ostringstream msg;
    msg << "line " << err.source().begin.line << ": " << err.description();
    return Bad(file, msg.str());
  }
  std::vector<RegistryEndpoint> endpoints;
  if (const toml::node* hosts = root.get("host")) {
    const toml::table* table = hosts->as_table();
    if (table == nullptr) return Bad(file, "\"host\" must be a table of URLs");
    // Mirrors are tried in the order the file lists them.
    std::vector<std::pair<std::string, const toml::table*>> ordered;
    for (const auto& [url, node] : *table) {
      const toml::table* t = node.as_table();
      if (t == nullptr) return Bad(file, "host " + Quote(url.str()) + " must be a table");
      ordered.emplace_back(std::string(url.str()), t);
    }
    std::stable_sort(ordered.begin(), ordered.end(), [](const auto& a, const auto& b) {
      return a.second->source().begin.line < b.second->source().begin.line;
    });
    for (const auto& [url, t] : ordered) {
      RegistryEndpoint e;
      RETURN_IF_ERROR(ParseHostKeys(*t, url, dir, file, e));
      endpoints.push_back(std::move(e));
    }
  }
  RegistryEndpoint upstream;
  std::string server = root["server"].value_or(std::string());
  RETURN_IF_ERROR(ParseHostKeys(root, server, dir, file, upstream));
  endpoints.push_back(std::move(upstream));
  FillDefault(host, endpoints.back());
  return endpoints;
}

Result<std::vector<RegistryEndpoint>> ResolveEndpoints(const std::string& host,
                                                       const std::string& config_dir) {
  if (!config_dir.empty()) {
    std::vector<std::string> candidates;
    if (size_t colon = host.rfind(':'); colon != std::string::npos && colon > 0) {
      candidates.push_back(config_dir + "/" + host.substr(0, colon) + "_" + host.substr(colon + 1) +
                           "_");
    }
    candidates.push_back(config_dir + "/" + host);
    candidates.push_back(config_dir + "/_default");
    for (const auto& dir : candidates) {
      if (!fs::Exists(dir)) continue;
      auto text = fs::ReadFile(dir + "/hosts.toml");
      if (text.ok() && !text->empty()) return ParseHostsToml(host, dir, *text);
      RegistryEndpoint e = FromCertFiles(dir);
      FillDefault(host, e);
      return std::vector<RegistryEndpoint>{std::move(e)};
    }
  }
  RegistryEndpoint e;
  FillDefault(host, e);
  return std::vector<RegistryEndpoint>{std::move(e)};
}

}  // namespace strata::registry
