#!/usr/bin/env bash
# The project's test command: every test in the workspace.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo test --workspace
