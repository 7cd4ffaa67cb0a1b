#!/usr/bin/env bash
# The local AWS stack: moto's server on loopback (scripts/moto_server.py: requests served one at a
# time but SQS long polls, as moto's backends are not thread-safe) with every table, queue and the
# SES identity of infra/template.yaml provisioned into it.
#
#   scripts/local-stack.sh start    start moto (if not already answering) and provision; idempotent
#   scripts/local-stack.sh stop     stop the moto this script started
#   scripts/local-stack.sh status   say whether it answers
#
# Settings (environment): MAILGATE_AWS_PORT (default 4566), MAILGATE_STATE_DIR (default .dev),
# MAILGATE_ENVIRONMENT (default local), MAILGATE_SES_IDENTITY (default example.com).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
port="${MAILGATE_AWS_PORT:-4566}"
state="${MAILGATE_STATE_DIR:-$root/.dev}"
pidfile="$state/moto.pid"
endpoint="http://127.0.0.1:$port"

# shellcheck source=scripts/aws-env.sh
source "$root/scripts/aws-env.sh" "$endpoint"

answers() {
  "$root/.venv/bin/python" - "$endpoint" <<'PY' 2>/dev/null
import sys, urllib.request
try:
    urllib.request.urlopen(sys.argv[1] + "/moto-api/data.json", timeout=1).read()
except Exception:
    sys.exit(1)
PY
}

start() {
  "$root/scripts/venv.sh"
  mkdir -p "$state"
  if answers; then
    echo "==> moto already answers on $endpoint"
  else
    echo "==> starting moto on $endpoint (log: $state/moto.log)"
    setsid "$root/.venv/bin/python" "$root/scripts/moto_server.py" -H 127.0.0.1 -p "$port" >"$state/moto.log" 2>&1 &
    echo $! >"$pidfile"
    for _ in $(seq 1 100); do
      answers && break
      if ! kill -0 "$(cat "$pidfile")" 2>/dev/null; then
        echo "error: moto exited; see $state/moto.log" >&2
        tail -n 20 "$state/moto.log" >&2 || true
        exit 1
      fi
      sleep 0.2
    done
    answers || { echo "error: moto did not answer on $endpoint within 20 s" >&2; exit 1; }
  fi
  echo "==> provisioning tables, queues and the SES identity from infra/template.yaml"
  # One-click unsubscribe links are signed with the test-only key of local.env, stored in the
  # emulator's Parameter Store like the webhook secrets.
  cargo run --quiet --locked -p mailgate-local -- provision --env-file "$state/functions.env" \
    --param "UnsubscribeSigningKeys=ssm:/mailgate/${MAILGATE_ENVIRONMENT:-local}/unsubscribe-signing-keys" \
    --param "LocalFunctionUrlBase=http://127.0.0.1:${MAILGATE_WATCH_PORT:-9000}/lambda-url" \
    --param "SimulatorEventDelaySeconds=${SIMULATOR_EVENT_DELAY_SECONDS:-5}"
}

stop() {
  if [[ -f "$pidfile" ]]; then
    pid="$(cat "$pidfile")"
    if kill -0 "$pid" 2>/dev/null; then
      kill "$pid" 2>/dev/null || true
      for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
      kill -9 "$pid" 2>/dev/null || true
      echo "==> stopped moto ($pid)"
    fi
    rm -f "$pidfile"
  fi
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  status) if answers; then echo "moto answers on $endpoint"; else echo "moto is not running on $endpoint"; exit 1; fi ;;
  *) echo "usage: $0 start|stop|status" >&2; exit 2 ;;
esac
