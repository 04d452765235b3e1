#!/usr/bin/env bash
# Builds ./spindle, installing the build dependencies (Debian packages) when missing.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/deps.sh
ensure_debs "${BUILD_DEBS[@]}"
export PATH=/usr/local/go/bin:$PATH
go build -o spindle .
