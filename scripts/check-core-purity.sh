#!/usr/bin/env bash
# The core crate must stay pure: no AWS SDK, Lambda runtime, HTTP client or tokio in its
# normal dependency tree.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
tree="$(cargo tree --locked -p mailgate-core -e normal --prefix none)"
if bad="$(grep -E '^(aws-|aws_|lambda_|reqwest|tokio|hyper)' <<<"$tree")"; then
  echo "error: mailgate-core depends on crates it must not:" >&2
  sort -u <<<"$bad" >&2
  exit 1
fi
echo "mailgate-core is pure ($(sort -u <<<"$tree" | wc -l) crates, none of aws-*, lambda_*, reqwest, tokio, hyper)"
