#!/usr/bin/env bash
# `make dev`: the whole system locally. Sets up what is missing, starts moto with the stack from
# infra/template.yaml, serves every function with `cargo lambda watch`, runs the local trigger
# runner (SQS event sources and schedules), prints the URLs and stays in the foreground until
# Ctrl-C; then stops everything it started.
#
# Settings: MAILGATE_AWS_PORT (4566), MAILGATE_WATCH_PORT (9000), MAILGATE_ENVIRONMENT (local),
# MAILGATE_SES_IDENTITY (example.com), MAILGATE_DEV_API_KEY (mg_dev_local_key; a live key with all
# scopes: it sends through SES in moto), MAILGATE_DEV_TEST_KEY (mg_dev_test_key; a test key with all
# scopes: its messages go to the event simulator, never a provider), SIMULATOR_EVENT_DELAY_SECONDS (5).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
aws_port="${MAILGATE_AWS_PORT:-4566}"
watch_port="${MAILGATE_WATCH_PORT:-9000}"
state="$root/.dev"
export MAILGATE_STATE_DIR="$state" MAILGATE_AWS_PORT="$aws_port"
mkdir -p "$state"
functions=(send-api webhook-ses webhook-sendgrid webhook-mailgun webhook-postmark webhook-smtp2go
           event-processor send-worker dispatcher sweeper unsubscribe)

pids=()
cleanup() {
  trap - EXIT INT TERM
  echo
  echo "==> stopping"
  for pid in "${pids[@]}"; do kill -- -"$pid" 2>/dev/null || kill "$pid" 2>/dev/null || true; done
  # cargo lambda watch starts each function in its own process group; stop them explicitly,
  # only this checkout's (same working directory), never another clone's.
  for f in "${functions[@]}"; do
    for pid in $(pgrep -f "target/debug/$f\$" || true); do
      [[ "$(readlink "/proc/$pid/cwd" 2>/dev/null)" == "$root" ]] && kill "$pid" 2>/dev/null || true
    done
  done
  "$root/scripts/local-stack.sh" stop || true
  wait 2>/dev/null || true
}
trap cleanup EXIT
trap 'cleanup; exit 0' INT TERM

# Test-only webhook settings from the committed local.env, unless the environment sets them.
if [[ -f "$root/local.env" ]]; then
  while IFS='=' read -r key value; do
    [[ "$key" =~ ^[A-Z][A-Z0-9_]*$ ]] || continue
    [[ -n "${!key+x}" ]] || export "$key=$value"
  done <"$root/local.env"
fi
"$root/scripts/local-stack.sh" start
# shellcheck source=scripts/aws-env.sh
source "$root/scripts/aws-env.sh" "http://127.0.0.1:$aws_port"

dev_key="${MAILGATE_DEV_API_KEY:-mg_dev_local_key}"
test_key="${MAILGATE_DEV_TEST_KEY:-mg_dev_test_key}"
[[ "$dev_key" != "$test_key" ]] || { echo "error: MAILGATE_DEV_API_KEY and MAILGATE_DEV_TEST_KEY must differ" >&2; exit 1; }
api_keys_table="$(sed -n 's/^API_KEYS_TABLE=//p' "$state/functions.env")"
[[ -n "$api_keys_table" ]] || { echo "error: no API_KEYS_TABLE in $state/functions.env" >&2; exit 1; }
echo "==> seeding the local API keys (MAILGATE_DEV_API_KEY: live, MAILGATE_DEV_TEST_KEY: test) into $api_keys_table"
cargo run --quiet --locked -p mailgate-admin -- keys seed --key "$dev_key" \
  --label "local development" --scopes all --environment live --table "$api_keys_table"
cargo run --quiet --locked -p mailgate-admin -- keys seed --key "$test_key" \
  --label "local development (test)" --scopes all --environment test --table "$api_keys_table"

echo "==> building the functions"
cargo build --quiet --locked --workspace --bins

echo "==> starting cargo lambda watch on 127.0.0.1:$watch_port (log: $state/watch.log)"
PATH="$root/.venv/bin:$PATH" setsid cargo lambda watch -A 127.0.0.1 -P "$watch_port" \
  --env-file "$state/functions.env" >"$state/watch.log" 2>&1 &
pids+=($!)

ready=""
for _ in $(seq 1 600); do
  if "$root/.venv/bin/python" - "http://127.0.0.1:$watch_port/lambda-url/send-api/v1/health" <<'PY' 2>/dev/null
import sys, urllib.request
sys.exit(0 if urllib.request.urlopen(sys.argv[1], timeout=60).status == 200 else 1)
PY
  then ready=1; break; fi
  kill -0 "${pids[0]}" 2>/dev/null || { echo "error: cargo lambda watch exited; see $state/watch.log" >&2; tail -n 30 "$state/watch.log" >&2; exit 1; }
  sleep 0.5
done
[[ -n "$ready" ]] || { echo "error: send-api did not become healthy; see $state/watch.log" >&2; exit 1; }

echo "==> starting the local trigger runner (log: $state/triggers.log)"
setsid "$root/target/debug/mailgate-local" triggers --invoke-url "http://127.0.0.1:$watch_port" \
  >"$state/triggers.log" 2>&1 &
pids+=($!)

base="http://127.0.0.1:$watch_port/lambda-url"
cat <<TXT

mailgate is running locally (AWS emulator on http://127.0.0.1:$aws_port):
  API keys          live (sends through SES in moto): $dev_key
                    test (event simulator, never a provider): $test_key
                    e.g. to=bounced+1@simulator.mailgate.invalid with the test key (docs/sandbox.md)
  send-api          $base/send-api/v1/health
                    curl -s -H "Authorization: Bearer $dev_key" $base/send-api/v1/keys/self
  webhook-ses       $base/webhook-ses/
  webhook-sendgrid  $base/webhook-sendgrid/
  webhook-mailgun   $base/webhook-mailgun/
  webhook-postmark  $base/webhook-postmark/
  webhook-smtp2go   $base/webhook-smtp2go/
  unsubscribe       $base/unsubscribe/<token>  (the List-Unsubscribe link of bulk mail)
  event-processor   SQS (events queue) and EventBridge; invoke: cargo lambda invoke event-processor --invoke-address 127.0.0.1 --invoke-port $watch_port --data-file events/event-processor/sqs-batch.json
  send-worker       SQS (send queue)
  dispatcher        SQS (outbound queue)
  sweeper           schedule from infra/template.yaml
Logs: $state/watch.log, $state/triggers.log, $state/moto.log. Ctrl-C stops everything.
TXT
wait "${pids[@]}"
