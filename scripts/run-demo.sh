#!/usr/bin/env bash
# Sets up, builds and runs examples/quickstart.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh >/dev/null
exec build/examples/quickstart
