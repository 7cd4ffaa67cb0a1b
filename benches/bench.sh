#!/usr/bin/env bash
# `make bench`: the webhook ingestion, bounce classifier and event processor figures, one line
# each as `bench <name> <value> <unit>`, so runs can be compared.
#
#   A  tests/benches/sendgrid_batch.rs  verify + split + queue messages of a signed 1,000-event
#      SendGrid batch (pure CPU, criterion underneath);
#   B  tests/benches/ack_path.rs        DynamoDB and SQS calls (and moto wall time) per webhook
#      request, through the real handler against a private moto started here the way
#      `make test` starts it (free loopback port), and stopped whatever the outcome;
#   C  tests/benches/classifier.rs      the bounce classifier on the labelled Sisimai corpus:
#      suppression accuracy, wrongly suppressed addresses, cause-category accuracy and
#      throughput (pure CPU, so it runs before the stack starts);
#   E  tests/benches/inbound_parse.rs  inbound MIME parsing on the corpus of real-world shapes
#      (shared/core/tests/mime): messages and MiB per second (pure CPU);
#   D  tests/benches/processor.rs       the event processor on the same private moto: DynamoDB
#      writes and reads per event (correlated by our id, by the provider's id, and a hard
#      bounce that suppresses) and events per second for a 10-record SQS batch.
#
# Builds with the release profile (`cargo bench`), then runs for a few minutes on 2 cores.
# The full output of each part is kept in target/bench/; the closing lines are the figures.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
"$root/scripts/venv.sh"

out="$root/target/bench"
mkdir -p "$out"
benches=(--bench sendgrid_batch --bench classifier --bench inbound_parse --bench ack_path --bench processor)

echo "==> building the benchmarks (release profile; the first build takes a while)"
cargo bench --locked -p mailgate-tests "${benches[@]}" --no-run

# Runs one bench target with its output in target/bench/<name>.log; shows the log's end on failure.
run() {
  local name="$1" log="$out/$1.log" started="$SECONDS"
  if ! cargo bench --locked -p mailgate-tests --bench "$name" >"$log" 2>&1; then
    echo "error: the $name benchmark failed; the end of $log:" >&2
    tail -n 40 "$log" >&2
    return 1
  fi
  echo "    done in $((SECONDS - started)) s"
}

echo "==> A: signed 1,000-event SendGrid batch, verify + split + queue messages (about 40 s)"
run sendgrid_batch

echo "==> C: bounce classifier on the Sisimai corpus, accuracy and throughput (about 5 s)"
run classifier

echo "==> E: inbound MIME parsing on the corpus, throughput (about 4 s)"
run inbound_parse

port="$("$root/.venv/bin/python" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
state="$root/target/bench-stack/$port"
mkdir -p "$state"
cleanup() { MAILGATE_AWS_PORT="$port" MAILGATE_STATE_DIR="$state" "$root/scripts/local-stack.sh" stop >/dev/null || true; rm -rf "$state"; }
trap cleanup EXIT INT TERM

MAILGATE_AWS_PORT="$port" MAILGATE_STATE_DIR="$state" MAILGATE_ENVIRONMENT=bench \
  "$root/scripts/local-stack.sh" start
# shellcheck source=scripts/aws-env.sh
source "$root/scripts/aws-env.sh" "http://127.0.0.1:$port"
export MAILGATE_TEST_AWS_ENDPOINT="http://127.0.0.1:$port"

echo "==> B: AWS calls on the webhook ack path against moto at $MAILGATE_TEST_AWS_ENDPOINT"
run ack_path

echo "==> D: event processor, DynamoDB calls per event and 10-record batches against moto"
run processor

echo "==> figures (logs: target/bench/{sendgrid_batch,classifier,inbound_parse,ack_path,processor}.log)"
cat "$out/sendgrid_batch.log" "$out/classifier.log" "$out/inbound_parse.log" "$out/ack_path.log" "$out/processor.log" >"$out/all.log"
grep -h '^# ' "$out/all.log" || true
grep -h '^bench ' "$out/all.log" | tee "$out/figures.txt"
