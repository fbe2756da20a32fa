#!/usr/bin/env bash
# Runs rswarm's whole test suite: unit tests, root integration tests and the
# multi-node e2e tests (which need root and iproute2 to build network namespaces).
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v ip >/dev/null 2>&1; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
        apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq iproute2 >/dev/null
    else
        echo "iproute2 (the 'ip' command) is needed for the e2e tests" >&2
        exit 1
    fi
fi

cargo fmt --all -- --check
cargo clippy --workspace --all-targets -- -D warnings
# The e2e tests start real node processes: build the binary they drive first.
cargo build -p rswarm -p rswarm-agent-runtime --bins
cargo test --workspace -- --test-threads="${RSWARM_TEST_THREADS:-2}"
