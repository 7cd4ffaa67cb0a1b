#!/usr/bin/env bash
# `make bench`: the webhook ingestion, bounce classifier and event processor figures, one line
# each as `bench <name> <value> <unit>`, so runs can be compared.
#
#   A  tests/benches/sendgrid_batch.rs  verify + split + queue messages of a signed 1,000-event
#      SendGrid batch, and the processor's normalise of it (pure CPU, criterion underneath);
#      then, on the same file, the seed's Node path (benches/seed_sendgrid.mjs: node:crypto
#      ECDSA, JSON.parse, normalise) and OpenSSL's SHA-256 of the same bytes (the floor), with
#      mailgate's speedup over the seed and its multiple of the floor;
#      tests/benches/webhook_requests.rs  one typical request of each other provider (SES on
#      SNS with RSA-SHA256 and a warm certificate cache, Mailgun HMAC, Postmark and SMTP2GO
#      Basic);
#   B  tests/benches/ack_path.rs        DynamoDB and SQS calls (and moto wall time) per webhook
#      request, through the real handler against a private moto started here the way
#      `make test` starts it (free loopback port), and stopped whatever the outcome;
#   C  tests/benches/classifier.rs      the bounce classifier on the labelled Sisimai corpus:
#      suppression accuracy, wrongly suppressed addresses, cause-category accuracy and
#      throughput (pure CPU, so it runs before the stack starts);
#   F  tests/benches/inbound_parse.rs  inbound MIME parsing on the corpus of real-world shapes
#      (shared/core/tests/mime): messages and MiB per second (pure CPU);
#   D  tests/benches/processor.rs       the event processor on the same private moto: DynamoDB
#      writes and reads per event (correlated by our id, by the provider's id, and a hard
#      bounce that suppresses) and events per second for a 10-record SQS batch.
#   G  tests/benches/accept_path.rs     the synchronous accept path (`POST /v1/messages`) on the
#      same private moto, before (API key, suppression and create reads in turn) and after (one
#      guarded transaction): p50 wall time and DynamoDB calls per request, interleaved;
#   H  tests/benches/search.rs          message search on the same private moto: p50 of
#      GET /v1/messages by recipient (a page of 20 of 100) and by correlation_id, DynamoDB calls
#      per page and per created message.
#   E  tests/benches/cold_start.rs      cold start of every function's release bootstrap and of a
#      `lambda_runtime` hello-world (benches/hello-world): process start to the first
#      `invocation/next` against a Runtime API played on loopback, configuration and `ssm:`
#      secrets (local.env, as `make dev` stores them) resolved against the same private moto.
#
# Builds with the release profile (`cargo bench`), then runs for a few minutes on 2 cores.
# The full output of each part is kept in target/bench/; the closing lines are the figures.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
"$root/scripts/venv.sh"

out="$root/target/bench"
mkdir -p "$out"
benches=(--bench sendgrid_batch --bench webhook_requests --bench classifier --bench inbound_parse
  --bench ack_path --bench processor --bench accept_path --bench search --bench cold_start)

echo "==> building the benchmarks (release profile; the first build takes a while)"
cargo bench --locked -p mailgate-tests "${benches[@]}" --no-run

# The bootstraps part E starts: every function and the hello-world, as `make package` ships them.
bootstraps=(-p mailgate-hello-world)
for manifest in "$root"/functions/*/Cargo.toml; do
  bootstraps+=(-p "$(basename "$(dirname "$manifest")")")
done
echo "==> building the release bootstraps of every function and the hello-world"
cargo build --locked --release "${bootstraps[@]}"
target_dir="$(cargo metadata --locked --no-deps --format-version 1 |
  "$root/.venv/bin/python" -c 'import json, sys; print(json.load(sys.stdin)["target_directory"])')"

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

echo "==> A: signed 1,000-event SendGrid batch, verify + split + queue messages (about 60 s)"
run sendgrid_batch
batch="$(sed -n 's/^# sendgrid batch: .*, \(.*\)$/\1/p' "$out/sendgrid_batch.log" | head -n 1)"
sidecar="${batch%.json}.sig.json"
figure() { sed -n "s/^bench $1 \([0-9.]*\) .*/\1/p" "$2" | head -n 1; }
ours="$(figure sendgrid_batch_1000_verify_split_queue_messages "$out/sendgrid_batch.log")"
events=1000
bytes="$(wc -c <"$batch")"

echo "==> A: the seed's Node path on the same file (about 5 s)"
if command -v node >/dev/null 2>&1; then
  node "$root/benches/seed_sendgrid.mjs" "$batch" "$sidecar" >>"$out/sendgrid_batch.log"
  seed="$(figure seed_node_sendgrid_batch_1000 "$out/sendgrid_batch.log")"
  awk -v s="$seed" -v o="$ours" 'BEGIN { printf "bench sendgrid_speedup_vs_seed %.2f ratio\n", s / o }' \
    >>"$out/sendgrid_batch.log"
else
  echo "# node not found: seed_node_sendgrid_batch_1000 and sendgrid_speedup_vs_seed skipped" \
    | tee -a "$out/sendgrid_batch.log"
fi

echo "==> A: the floor, OpenSSL SHA-256 of the same bytes (about 3 s)"
if command -v openssl >/dev/null 2>&1; then
  # `openssl speed` on a buffer of the batch's size: thousands of bytes per second, last field.
  kbps="$(openssl speed -evp sha256 -bytes "$bytes" -seconds 3 2>/dev/null | awk '/^sha256 /{print $NF}' | tr -d k)"
  awk -v k="$kbps" -v b="$bytes" -v n="$events" -v o="$ours" 'BEGIN {
    floor = b / (k * 1000) * 1e9 / n
    printf "bench sha256_floor_openssl_sendgrid_batch_1000 %.0f ns_per_event\n", floor
    printf "bench sendgrid_multiple_of_sha256_floor %.2f ratio\n", o / floor
  }' >>"$out/sendgrid_batch.log"
else
  echo "# openssl not found: the SHA-256 floor is skipped" | tee -a "$out/sendgrid_batch.log"
fi

echo "==> A: one typical request of each other provider (about 20 s)"
run webhook_requests

echo "==> C: bounce classifier on the Sisimai corpus, accuracy and throughput (about 5 s)"
run classifier

echo "==> F: inbound MIME parsing on the corpus, throughput (about 4 s)"
run inbound_parse

port="$("$root/.venv/bin/python" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
state="$root/target/bench-stack/$port"
mkdir -p "$state"
cleanup() { MAILGATE_AWS_PORT="$port" MAILGATE_STATE_DIR="$state" "$root/scripts/local-stack.sh" stop >/dev/null || true; rm -rf "$state"; }
trap cleanup EXIT INT TERM

# The test-only webhook secrets of local.env (as `make dev` loads them), in a subshell so only
# provisioning sees them: it stores them in moto's SSM for part E's functions to resolve.
(
  while IFS='=' read -r key value; do
    [[ "$key" =~ ^[A-Z][A-Z0-9_]*$ ]] || continue
    [[ -n "${!key+x}" ]] || export "$key=$value"
  done <"$root/local.env"
  MAILGATE_AWS_PORT="$port" MAILGATE_STATE_DIR="$state" MAILGATE_ENVIRONMENT=bench \
    "$root/scripts/local-stack.sh" start
)
# shellcheck source=scripts/aws-env.sh
source "$root/scripts/aws-env.sh" "http://127.0.0.1:$port"
export MAILGATE_TEST_AWS_ENDPOINT="http://127.0.0.1:$port"

echo "==> B: AWS calls on the webhook ack path against moto at $MAILGATE_TEST_AWS_ENDPOINT"
run ack_path

echo "==> D: event processor, DynamoDB calls per event and 10-record batches against moto"
run processor

echo "==> G: send accept path, reads before the write vs one guarded write, against moto"
run accept_path
echo "==> H: message search, query p50 and DynamoDB calls against moto"
run search

echo "==> E: cold start of every function and of a hello-world, median of several runs (about 1 min)"
MAILGATE_COLD_START_BIN_DIR="$target_dir/release" MAILGATE_COLD_START_ENV_FILE="$state/functions.env" \
  run cold_start

echo "==> figures (logs: target/bench/{sendgrid_batch,webhook_requests,classifier,inbound_parse,ack_path,processor,accept_path,search,cold_start}.log)"
cat "$out/sendgrid_batch.log" "$out/webhook_requests.log" "$out/classifier.log" "$out/inbound_parse.log" \
  "$out/ack_path.log" "$out/processor.log" "$out/accept_path.log" "$out/search.log" "$out/cold_start.log" >"$out/all.log"
grep -h '^# ' "$out/all.log" || true
grep -h '^bench ' "$out/all.log" | tee "$out/figures.txt"
