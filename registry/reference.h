// Image references as users type them ("busybox", "ghcr.io/org/app:1.2",
// "localhost:5000/x@sha256:…"), parsed and normalised the way docker, containerd and
// nerdctl do:
//
//   reference := name [":" tag] ["@" digest]
//   name      := [domain "/"] component ("/" component)*
//   domain    := host [":" port]            host: dns labels joined by ".", or [ipv6]
//   component := [a-z0-9]+ (separator [a-z0-9]+)*   separator: "." "_" "__" "-"+
//   tag       := [A-Za-z0-9_][A-Za-z0-9_.-]{0,127}
//   digest    := algorithm ":" hex   (sha256: 64 lowercase hex digits)
//
// Normalisation: a first component without ".", ":" or "localhost" is not a domain, so
// the domain is docker.io; on docker.io a one-component path gets "library/"; a
// reference with neither tag nor digest gets the tag "latest". "index.docker.io" is
// docker.io.
#pragma once

#include <string>
#include <string_view>

#include "core/status.h"

namespace strata::registry {

struct Reference {
  std::string domain;      // "docker.io", "localhost:5000", "[::1]:5000"
  std::string repository;  // "library/busybox"
  std::string tag;         // may be empty when a digest is given
  std::string digest;      // "sha256:<hex>", or empty

  // "docker.io/library/busybox:latest", "host/repo@sha256:…", "host/repo:tag@sha256:…"
  std::string String() const;
  // "docker.io/library/busybox" (domain and repository)
  std::string Name() const;
  // What to ask the registry for: the digest when there is one, else the tag.
  std::string Object() const { return digest.empty() ? tag : digest; }
};

// Parses and normalises `text`. InvalidArgument naming the reference and what is wrong
// (uppercase repository, bad tag, bad digest, name over 255 characters, ...).
Result<Reference> ParseReference(std::string_view text);

}  // namespace strata::registry
