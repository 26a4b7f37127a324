#!/usr/bin/env bash
# Quick start, step 2: install what is missing, build everything and run every test
# (unit, API, crash-safety and containerd interop). Needs root (real mounts,
# containerd). Exit status is ctest's.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/install-deps.sh
./scripts/build.sh
ctest --test-dir build --output-on-failure --timeout 900 "$@"
