#include "registry/credentials.h"

#include <openssl/evp.h>

#include <cstdlib>
#include <nlohmann/json.hpp>

#include "core/fs.h"
#include "core/quote.h"
#include "core/subprocess.h"

namespace strata::registry {
namespace {

using nlohmann::json;

constexpr char kDockerHubKey[] = "https://index.docker.io/v1/";

bool IsDockerHub(const std::string& host) {
  return host == "docker.io" || host == "index.docker.io" || host == "registry-1.docker.io";
}

// "https://host:5000/v1/" -> "host:5000", as docker's ConvertToHostname.
std::string KeyHost(std::string key) {
  for (const char* scheme : {"https://", "http://"}) {
    if (key.rfind(scheme, 0) == 0) key = key.substr(std::string(scheme).size());
  }
  return key.substr(0, key.find('/'));
}

bool KeyMatches(const std::string& key, const std::string& host) {
  std::string h = KeyHost(key);
  return h == host || (IsDockerHub(host) && IsDockerHub(h));
}

Result<std::string> DecodeBase64(const std::string& in, const std::string& file) {
  std::string clean;
  for (char c : in) {
    if (c != '\n' && c != '\r' && c != ' ') clean += c;
  }
  if (clean.empty() || clean.size() % 4 != 0) {
    return Status::InvalidArgument("docker config " + file + ": \"auth\" is not valid base64");
  }
  std::string out(clean.size() / 4 * 3, '\0');
  int n = EVP_DecodeBlock(reinterpret_cast<unsigned char*>(out.data()),
                          reinterpret_cast<const unsigned char*>(clean.data()),
                          static_cast<int>(clean.size()));
  if (n < 0) {
    return Status::InvalidArgument("docker config " + file + ": \"auth\" is not valid base64");
  }
  size_t padding = 0;
  for (size_t i = clean.size(); i > 0 && clean[i - 1] == '='; i--) padding++;
  out.resize(static_cast<size_t>(n) - padding);
  return out;
}

Result<std::optional<Credentials>> FromHelper(const std::string& helper,
                                              const std::string& server) {
  ProcessOptions opts;
  opts.stdin_data = server;
  opts.timeout_ms = 30000;
  opts.max_output_bytes = 64 << 10;
  const std::string program = "docker-credential-" + helper;
  auto run = RunProcess({program, "get"}, opts);
  if (!run.ok()) {
    return Status::Unavailable("credential helper " + program + ": " + run.status().message());
  }
  if (run->exit_code != 0) {
    if (run->stdout_data.find("credentials not found") != std::string::npos) {
      return std::optional<Credentials>();
    }
    std::string why = run->timed_out ? "timed out" : "exit code " + std::to_string(run->exit_code);
    return Status::Unavailable(
        "credential helper " + program + " failed (" + why + ")" +
        (run->stderr_data.empty() ? "" : ": " + Quote(run->stderr_data, 200)));
  }
  json reply = json::parse(run->stdout_data, nullptr, /*allow_exceptions=*/false);
  if (!reply.is_object() || !reply.contains("Secret") || !reply["Secret"].is_string()) {
    return Status::Unavailable("credential helper " + program + " returned malformed output");
  }
  Credentials c;
  c.username = reply.value("Username", "");
  c.secret = reply["Secret"].get<std::string>();
  if (c.username == "<token>") {
    c.identity_token = true;
    c.username.clear();
  }
  return std::optional<Credentials>(std::move(c));
}

}  // namespace

std::string DefaultDockerConfigPath() {
  if (const char* dir = std::getenv("DOCKER_CONFIG"); dir != nullptr && *dir != '\0') {
    return std::string(dir) + "/config.json";
  }
  const char* home = std::getenv("HOME");
  return std::string(home != nullptr && *home != '\0' ? home : "/root") + "/.docker/config.json";
}

Result<std::optional<Credentials>> LookupCredentials(const std::string& host,
                                                     const std::string& config_path) {
  auto text = fs::ReadFile(config_path);
  if (!text.ok()) {
    if (text.status().IsNotFound()) return std::optional<Credentials>();
    return text.status();
  }
  json config = json::parse(*text, nullptr, /*allow_exceptions=*/false);
  if (!config.is_object()) {
    return Status::InvalidArgument("docker config " + config_path + " is not a JSON object");
  }
  const std::string server = IsDockerHub(host) ? kDockerHubKey : host;
  if (auto helpers = config.find("credHelpers"); helpers != config.end() && helpers->is_object()) {
    for (const auto& [key, name] : helpers->items()) {
      if (KeyMatches(key, host) && name.is_string()) {
        return FromHelper(name.get<std::string>(), server);
      }
    }
  }
  // As docker: a credential store, when set, holds every host's credentials.
  if (auto store = config.find("credsStore");
      store != config.end() && store->is_string() && !store->get<std::string>().empty()) {
    return FromHelper(store->get<std::string>(), server);
  }
  if (auto auths = config.find("auths"); auths != config.end() && auths->is_object()) {
    for (const auto& [key, entry] : auths->items()) {
      if (!KeyMatches(key, host) || !entry.is_object()) continue;
      Credentials c;
      if (auto token = entry.find("identitytoken");
          token != entry.end() && token->is_string() && !token->get<std::string>().empty()) {
        c.secret = token->get<std::string>();
        c.identity_token = true;
        return std::optional<Credentials>(std::move(c));
      }
      if (auto auth = entry.find("auth");
          auth != entry.end() && auth->is_string() && !auth->get<std::string>().empty()) {
        ASSIGN_OR_RETURN(std::string decoded, DecodeBase64(auth->get<std::string>(), config_path));
        size_t colon = decoded.find(':');
        if (colon == std::string::npos) {
          return Status::InvalidArgument("docker config " + config_path + ": \"auth\" for " +
                                         Quote(key) + " is not user:password");
        }
        c.username = decoded.substr(0, colon);
        c.secret = decoded.substr(colon + 1);
        return std::optional<Credentials>(std::move(c));
      }
      if (entry.contains("username") && entry.contains("password")) {
        c.username = entry.value("username", "");
        c.secret = entry.value("password", "");
        return std::optional<Credentials>(std::move(c));
      }
      // An empty entry (docker writes them for hosts kept in a credsStore).
    }
  }
  return std::optional<Credentials>();
}

}  // namespace strata::registry
