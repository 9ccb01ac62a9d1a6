#!/usr/bin/env bash
# The whole test suite, as root: formatting, lints, unit tests and end-to-end tests with real
# controller/worker processes, real sandboxes and real RocksDB.
set -euo pipefail
cd "$(dirname "$0")/.."
[ "$(id -u)" = 0 ] || { echo "deploy/test.sh: run as root: the tests create namespaces and cgroups" >&2; exit 1; }
deploy/install-deps.sh
# One target directory outside the clone, one profile: RocksDB's C++ is built once and reused.
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/var/tmp/lamina-target}"
export RUST_BACKTRACE="${RUST_BACKTRACE:-1}"
# Real boto3 and AWS CLI v1 from PyPI for the REST API tests (tests/python/lambda_rest.py), in their
# own virtualenv, cached outside the clone.
export LAMINA_VENV="${LAMINA_VENV:-/var/tmp/lamina-venv}"
if ! "$LAMINA_VENV/bin/python" -c 'import boto3, awscli' 2>/dev/null; then
  python3 -m venv "$LAMINA_VENV"
  "$LAMINA_VENV/bin/pip" install --quiet --disable-pip-version-check boto3 awscli
fi
# The official AWS runtime interface clients (awslambdaric, aws-lambda-ric, lambda_runtime) that
# tests/tests/runtime_clients.rs runs unchanged, from their registries, cached outside the clone.
export LAMINA_CLIENTS="${LAMINA_CLIENTS:-/var/tmp/lamina-clients}"
tests/clients/install.sh
# Powertools, mangum and FastAPI vendored into the HTTP gateway tests' functions (tests/functions/http/),
# requests and Powertools' parser models for the tests themselves, from PyPI, cached outside the clone.
export LAMINA_HTTP_DEPS="${LAMINA_HTTP_DEPS:-/var/tmp/lamina-http-deps}"
tests/functions/http/install.sh
cargo fmt --all -- --check
cargo build --workspace --bins --lib --locked
cargo clippy --workspace --all-targets --locked -- -D warnings
cargo test --workspace --locked --no-fail-fast
