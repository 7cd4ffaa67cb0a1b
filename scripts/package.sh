#!/usr/bin/env bash
# Builds every Lambda function of infra/template.yaml for deployment and checks its size, then
# runs `sam build` with the project's pinned aws-sam-cli (see docs/deploy.md, "Packaging").
#
#   make package                 # arm64 (the template's architecture), then sam build
#   ARCH=x86_64 make package     # x86_64 bootstraps only (sam build would still build arm64)
#   SAM_BUILD=0 make package     # bootstraps and size check only
#
# Settings: ARCH (arm64 | x86_64, default arm64), MAX_BOOTSTRAP_MB (default 12, decimal MB),
# SAM_BUILD (1 | 0, default 1 for arm64, 0 for x86_64), SAM_BUILD_DIR (default target/sam).
# Needs no network beyond the package registries: cargo-lambda and zig come from .venv
# (scripts/requirements.txt), aws-sam-cli from .venv/sam (scripts/requirements-package.txt).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

arch="${ARCH:-arm64}"
max_mb="${MAX_BOOTSTRAP_MB:-12}"
case "$arch" in
  arm64 | aarch64) arch=arm64 target=aarch64-unknown-linux-gnu flag=--arm64 ;;
  x86_64 | x86-64 | amd64) arch=x86_64 target=x86_64-unknown-linux-gnu flag=--x86-64 ;;
  *)
    echo "error: ARCH must be arm64 or x86_64 (got '$arch')" >&2
    exit 2
    ;;
esac
if [[ "$arch" == arm64 ]]; then sam_build="${SAM_BUILD:-1}"; else sam_build="${SAM_BUILD:-0}"; fi
sam_build_dir="${SAM_BUILD_DIR:-target/sam}"

# The functions are the template's rust-cargolambda binaries: the template is the source of truth.
mapfile -t functions < <(sed -n 's/^ *Binary: *\([A-Za-z0-9_-]*\) *$/\1/p' infra/template.yaml)
if [[ ${#functions[@]} -eq 0 ]]; then
  echo "error: no 'Binary:' build properties found in infra/template.yaml" >&2
  exit 1
fi

# The Rust standard library for the target must be installed: cargo-lambda would otherwise ask
# rustup to download it, which needs the internet.
sysroot="$(rustc --print sysroot)"
if ! compgen -G "$sysroot/lib/rustlib/$target/lib/libstd-*.rlib" >/dev/null; then
  cat >&2 <<EOF
error: the Rust standard library for $target is not installed in the active toolchain
       ($sysroot), so the $arch functions cannot be built.
       Install it once with rustup (which downloads it):
           rustup target add $target
       or build x86_64 bootstraps instead (the template deploys arm64; change its
       Globals.Function.Architectures to x86_64 to deploy them):
           ARCH=x86_64 make package
EOF
  exit 3
fi

# cargo-lambda (and the zig it cross-links with, found as `python3 -m ziglang`) from .venv.
scripts/venv.sh
export PATH="$root/.venv/bin:$PATH"

# One function at a time, from its own directory: exactly the command `sam build` runs for the
# template's rust-cargolambda functions, so both select the same package (the same dependency
# features) and `sam build` finds every artifact fresh. (One `cargo lambda build` of all ten
# unifies features across them, and `sam build` would then rebuild everything.)
echo "==> cargo lambda build --release $flag, one function at a time (${#functions[@]} functions)"
start=$(date +%s)
for f in "${functions[@]}"; do
  (cd "functions/$f" && cargo lambda build --release "$flag" --locked --bin "$f")
done
echo "==> built in $(($(date +%s) - start)) s"

# Size of each bootstrap (unzipped: Lambda's limit is 250 MB unzipped, ours is much tighter).
limit=$((max_mb * 1000 * 1000))
over=0
printf '\n%-20s %-8s %12s %9s\n' function arch bytes MB
for f in "${functions[@]}"; do
  file="target/lambda/$f/bootstrap"
  if [[ ! -f "$file" ]]; then
    echo "error: $file was not built" >&2
    exit 1
  fi
  bytes=$(stat -c %s "$file")
  mb=$(awk -v b="$bytes" 'BEGIN { printf "%.2f", b / 1000000 }')
  mark=""
  if ((bytes > limit)); then
    mark="  > ${max_mb} MB"
    over=1
  fi
  printf '%-20s %-8s %12s %9s%s\n' "$f" "$arch" "$bytes" "$mb" "$mark"
done
if ((over)); then
  echo "error: a bootstrap is larger than ${max_mb} MB (MAX_BOOTSTRAP_MB)" >&2
  exit 1
fi

if [[ "$sam_build" != 1 ]]; then
  echo "==> sam build skipped (SAM_BUILD=$sam_build)"
  exit 0
fi

# aws-sam-cli in its own virtualenv: it pins an older boto3 than moto[server] in .venv.
sam_venv="$root/.venv/sam"
sam_req="$root/scripts/requirements-package.txt"
sam_stamp="$sam_venv/.requirements.sha256"
want="$(sha256sum "$sam_req" | cut -d' ' -f1)"
if [[ ! -x "$sam_venv/bin/sam" || ! -f "$sam_stamp" || "$(cat "$sam_stamp")" != "$want" ]]; then
  echo "==> setting up $sam_venv from scripts/requirements-package.txt"
  "${PYTHON:-python3}" -m venv "$sam_venv"
  "$sam_venv/bin/python" -m pip install --quiet --disable-pip-version-check -r "$sam_req"
  echo "$want" >"$sam_stamp"
fi

# rust-cargolambda runs `cargo lambda build --release --arm64 --bin <Binary>` in each CodeUri and
# copies the workspace's target/lambda/<Binary>/bootstrap: the builds above are reused. In the pinned
# SAM CLI (1.170) it is not a beta build method, so no --beta-features (which would turn on every
# experimental feature).
echo "==> sam build ($("$sam_venv/bin/sam" --version))"
start=$(date +%s)
SAM_CLI_TELEMETRY=0 "$sam_venv/bin/sam" build \
  --template infra/template.yaml --build-dir "$sam_build_dir"
echo "==> sam build done in $(($(date +%s) - start)) s: $sam_build_dir/template.yaml"
