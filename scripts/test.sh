#!/usr/bin/env bash
# `make test`: sets up what is missing, starts private motos on free loopback ports, runs every
# test of the workspace against them, and stops them again, whatever the outcome.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
"$root/scripts/venv.sh"

# The whole suite: every test binary in parallel, each worker on its own private stack
# (scripts/test_parallel.py). With arguments (`make test` passes none; `scripts/test.sh -p crate
# --test name` does): one private stack and `cargo test` with those arguments, as below.
if [[ $# -eq 0 ]]; then
  exec "$root/.venv/bin/python" "$root/scripts/test_parallel.py"
fi

port="$("$root/.venv/bin/python" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
state="$root/target/test-stack/$port"
mkdir -p "$state"
cleanup() { MAILGATE_AWS_PORT="$port" MAILGATE_STATE_DIR="$state" "$root/scripts/local-stack.sh" stop >/dev/null || true; rm -rf "$state"; }
trap cleanup EXIT INT TERM

MAILGATE_AWS_PORT="$port" MAILGATE_STATE_DIR="$state" MAILGATE_ENVIRONMENT=test \
  "$root/scripts/local-stack.sh" start
# shellcheck source=scripts/aws-env.sh
source "$root/scripts/aws-env.sh" "http://127.0.0.1:$port"
export MAILGATE_TEST_AWS_ENDPOINT="http://127.0.0.1:$port"

echo "==> running every test (unit, integration, doc) against $MAILGATE_TEST_AWS_ENDPOINT"
log="$state/cargo-test.log"
status=0
cargo test --locked --workspace "$@" 2>&1 | tee "$log" || status=$?
# One closing line for the whole run: cargo prints one result line per test binary.
awk '/^test result:/ { for (i = 1; i <= NF; i++) { if ($(i+1) ~ /^passed/) p += $i; if ($(i+1) ~ /^failed/) f += $i } }
     END { printf "tests: %d passed, %d failed\n", p, f }' "$log"
exit "$status"
