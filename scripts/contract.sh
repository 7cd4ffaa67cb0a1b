#!/usr/bin/env bash
# `make contract`: fuzzes the send API against its contract, infra/openapi.yaml, with schemathesis
# (pinned in scripts/requirements.txt). Starts a private local stack on a free loopback port (as
# `make test` does), seeds an API key with every scope, serves send-api with `cargo lambda watch`
# on another free port, and runs schemathesis through the function URL with that key. It fails
# on any server error (5xx), on any response the contract does not describe (status code,
# content type, required headers, body schema) and on a request the contract forbids that is
# answered 2xx (`negative_data_rejection`: the request schemas must not be narrower than what
# send-api accepts). Everything it started is stopped on exit. About 30 s warm on 2 cores.
#
# Settings (environment): CONTRACT_MAX_EXAMPLES (test cases per operation and phase, default 25),
# CONTRACT_SEED (schemathesis' random seed; default 20261123, so CI runs are reproducible;
# `random` draws a new one and the run prints it),
# CONTRACT_WORKERS (concurrent schemathesis workers, default 2). Extra arguments are passed to
# `schemathesis run`, e.g. `scripts/contract.sh --include-path /v1/suppressions`.
# Reports (JUnit, and a cassette of every request for replay) go to target/contract/.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
"$root/scripts/venv.sh"

free_port() {
  "$root/.venv/bin/python" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}
aws_port="$(free_port)"
watch_port="$(free_port)"
state="$root/target/contract-stack/$aws_port"
out="$root/target/contract"
mkdir -p "$state" "$out"
# A fixed test key for this private stack only: it never leaves loopback.
api_key="mg_test_contract_local_key"

watch_pid=""
# Every descendant of $1 (cargo lambda watch starts each function in its own process group, so
# killing watch's group does not stop them; they are still its children).
descendants() {
  local child
  for child in $(pgrep -P "$1" 2>/dev/null || true); do
    descendants "$child"
    echo "$child"
  done
}
cleanup() {
  trap - EXIT INT TERM
  if [[ -n "$watch_pid" ]]; then
    local pids
    pids="$(descendants "$watch_pid")"
    kill -- -"$watch_pid" 2>/dev/null || kill "$watch_pid" 2>/dev/null || true
    # shellcheck disable=SC2086 # one pid per word
    [[ -z "$pids" ]] || kill $pids 2>/dev/null || true
    wait "$watch_pid" 2>/dev/null || true
  fi
  MAILGATE_AWS_PORT="$aws_port" MAILGATE_STATE_DIR="$state" "$root/scripts/local-stack.sh" stop >/dev/null || true
  rm -rf "$state"
}
trap cleanup EXIT
trap 'cleanup; exit 130' INT TERM

# Test-only webhook settings from the committed local.env (as `make dev` does), so provisioning
# stores them and says nothing; send-api reads none of them.
if [[ -f "$root/local.env" ]]; then
  while IFS='=' read -r key value; do
    [[ "$key" =~ ^[A-Z][A-Z0-9_]*$ ]] || continue
    [[ -n "${!key+x}" ]] || export "$key=$value"
  done <"$root/local.env"
fi

# The `contract` environment: tables mailgate-contract-*, SES identity example.com (the domain of
# the spec's examples, so their sends are accepted by the emulator's SES).
MAILGATE_AWS_PORT="$aws_port" MAILGATE_STATE_DIR="$state" MAILGATE_ENVIRONMENT=contract \
  MAILGATE_SES_IDENTITY=example.com "$root/scripts/local-stack.sh" start
# shellcheck source=scripts/aws-env.sh
source "$root/scripts/aws-env.sh" "http://127.0.0.1:$aws_port"

api_keys_table="$(sed -n 's/^API_KEYS_TABLE=//p' "$state/functions.env")"
[[ -n "$api_keys_table" ]] || { echo "error: no API_KEYS_TABLE in $state/functions.env" >&2; exit 1; }
echo "==> seeding the contract API key (all scopes) into $api_keys_table"
cargo run --quiet --locked -p mailgate-admin -- keys seed --key "$api_key" \
  --label "contract tests" --scopes all --environment test --table "$api_keys_table"

echo "==> building send-api"
cargo build --quiet --locked -p send-api --bin send-api

# --ignore-changes: other edits to the tree during the run must not rebuild the function under test.
echo "==> serving send-api with cargo lambda watch on 127.0.0.1:$watch_port (log: $out/watch.log)"
PATH="$root/.venv/bin:$PATH" setsid cargo lambda watch --ignore-changes -p send-api \
  -A 127.0.0.1 -P "$watch_port" --env-file "$state/functions.env" >"$out/watch.log" 2>&1 &
watch_pid=$!

base="http://127.0.0.1:$watch_port/lambda-url/send-api"
ready=""
for _ in $(seq 1 600); do
  if "$root/.venv/bin/python" - "$base/v1/health" <<'PY' 2>/dev/null
import sys, urllib.request
sys.exit(0 if urllib.request.urlopen(sys.argv[1], timeout=60).status == 200 else 1)
PY
  then ready=1; break; fi
  kill -0 "$watch_pid" 2>/dev/null || { echo "error: cargo lambda watch exited; see $out/watch.log" >&2; tail -n 30 "$out/watch.log" >&2; exit 1; }
  sleep 0.5
done
[[ -n "$ready" ]] || { echo "error: send-api did not become healthy; see $out/watch.log" >&2; exit 1; }

# The emulator, not send-api, answers 500 to a request it cannot turn into a Lambda event: a body
# that is not UTF-8 under a text content type, or a header value with non-ASCII bytes (API
# Gateway base64-encodes such bodies; `isBase64Encoded` never reaches the function here). Those
# failures, and only those, are dropped; any other 500 (a panic included) still fails the run.
hooks="$state/hooks"
mkdir -p "$hooks"
cat >"$hooks/mailgate_contract_hooks.py" <<'PY'
import schemathesis

EMULATOR_500 = b'{"type":"https://httpstatuses.com/500"'


def _not_an_event(request):
    body = request.body
    if isinstance(body, bytes):
        try:
            body.decode("utf-8")
        except UnicodeDecodeError:
            return True
    for value in request.headers.values():
        raw = value if isinstance(value, bytes) else value.encode("latin-1", "replace")
        if any(b >= 0x80 for b in raw):
            return True
    return False


# CPython 3.11.7's ast.parse can raise "SystemError: AST constructor recursion depth mismatch"
# when hypothesis describes a filter lambda for its repr (seen in the coverage phase); the text
# is cosmetic, so fall back to a plain one instead of aborting the operation's tests.
from hypothesis.internal import lambda_sources

_describe = lambda_sources._lambda_description


def _lambda_description(f, *args, **kwargs):
    try:
        return _describe(f, *args, **kwargs)
    except SystemError:
        return "lambda: <source unavailable>"


lambda_sources._lambda_description = _lambda_description


@schemathesis.hook
def filter_failure(ctx, failure, case, response):
    emulator = response.status_code == 500 and (response.content or b"").startswith(EMULATOR_500)
    return not (emulator and _not_an_event(response.request))
PY

seed="${CONTRACT_SEED:-20261123}"
seed_args=()
[[ "$seed" == "random" ]] || seed_args=(--seed "$seed")
echo "==> schemathesis $("$root/.venv/bin/schemathesis" --version | awk '{print $NF}') against $base"
started="$SECONDS"
status=0
# From target/contract/, so schemathesis' and hypothesis' example databases land there, not in
# the checkout (a re-run replays what an earlier run found first).
(cd "$out" && PYTHONPATH="$hooks" SCHEMATHESIS_HOOKS=mailgate_contract_hooks \
  "$root/.venv/bin/schemathesis" run "$root/infra/openapi.yaml" \
  --url "$base" \
  --header "Authorization: Bearer $api_key" \
  --checks not_a_server_error,status_code_conformance,content_type_conformance,response_headers_conformance,response_schema_conformance,negative_data_rejection \
  --phases examples,coverage,fuzzing,stateful \
  --max-examples "${CONTRACT_MAX_EXAMPLES:-25}" \
  --workers "${CONTRACT_WORKERS:-2}" \
  --request-timeout 30 \
  --suppress-health-check too_slow,filter_too_much \
  --report junit,vcr --report-dir "$out" \
  --no-color \
  "${seed_args[@]}" "$@") || status=$?
echo "==> schemathesis finished in $((SECONDS - started)) s (exit $status; reports in $out)"
exit "$status"
