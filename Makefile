# mailgate's commands. `make dev` and `make test` are the two that matter; see README.md.
.PHONY: dev test lint stack-up stack-down dev-reset clean bench contract package

## Run the whole system locally (moto, cargo lambda watch, local triggers) until Ctrl-C.
dev:
	@scripts/dev.sh

## Set up and run every test (unit and integration) against a private local AWS stack.
test:
	@scripts/test.sh

## Webhook ingestion figures as `bench <name> <value> <unit>` lines (starts its own private moto).
bench:
	@benches/bench.sh

## Release bootstraps of every function (cargo lambda, ARCH=arm64|x86_64), size check, sam build.
package:
	@scripts/package.sh

## The send API fuzzed against infra/openapi.yaml by schemathesis (private stack, cargo lambda watch).
contract:
	@scripts/contract.sh

## Formatting, clippy, cfn-lint and the purity check of the core crate.
lint:
	@scripts/venv.sh
	cargo fmt --all --check
	cargo clippy --locked --workspace --all-targets -- -D warnings
	.venv/bin/cfn-lint infra/template.yaml
	@scripts/check-core-purity.sh

## Start (or re-provision) the local AWS stack without the functions.
stack-up:
	@scripts/local-stack.sh start

## Stop the local AWS stack.
stack-down:
	@scripts/local-stack.sh stop

## Forget the local stack's state: stop moto (it keeps everything in memory).
dev-reset: stack-down

clean: stack-down
	rm -rf .dev target
