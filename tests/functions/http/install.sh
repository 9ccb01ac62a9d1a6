#!/usr/bin/env bash
# Installs what the HTTP gateway tests (tests/tests/http_gateway.rs) need, from PyPI, into caches
# outside the clone, so that later runs are incremental:
#   LAMINA_HTTP_DEPS (default /var/tmp/lamina-http-deps)/python/   `pip install --target` of
#       aws-lambda-powertools, mangum and fastapi: wheels for CPython 3.11 x86_64 (the sandbox runs
#       the host's /usr/bin/python3.11), vendored unchanged into the test functions' zips beside
#       their source (tests/functions/http/*.py)
#   LAMINA_VENV (default /var/tmp/lamina-venv)   the tests' own virtualenv (boto3 comes from
#       deploy/test.sh): requests, and Powertools with its parser extra (pydantic) to parse every
#       event the gateway sends with Powertools' typed models, in the test process
# Run by deploy/test.sh; safe to run again (only what is missing is installed).
set -euo pipefail
dest="${LAMINA_HTTP_DEPS:-/var/tmp/lamina-http-deps}"
venv="${LAMINA_VENV:-/var/tmp/lamina-venv}"
POWERTOOLS_VERSION=3.37.0
MANGUM_VERSION=0.22.0
FASTAPI_VERSION=0.163.2
mkdir -p "$dest"
[ -x "$venv/bin/pip" ] || python3 -m venv "$venv"
pip=("$venv/bin/pip" install --quiet --disable-pip-version-check)

marker="$dest/python/.lamina-$POWERTOOLS_VERSION-$MANGUM_VERSION-$FASTAPI_VERSION"
if [ ! -f "$marker" ]; then
  rm -rf "$dest/python.new"
  "${pip[@]}" --target "$dest/python.new" --python-version 3.11 --platform manylinux2014_x86_64 \
    --implementation cp --only-binary=:all: \
    "aws-lambda-powertools==$POWERTOOLS_VERSION" "mangum==$MANGUM_VERSION" "fastapi==$FASTAPI_VERSION"
  # Compiled bytecode and the scripts' directory are not part of what a function needs.
  find "$dest/python.new" -name __pycache__ -type d -prune -exec rm -rf {} +
  rm -rf "$dest/python.new/bin"
  touch "$dest/python.new/.lamina-$POWERTOOLS_VERSION-$MANGUM_VERSION-$FASTAPI_VERSION"
  rm -rf "$dest/python" && mv "$dest/python.new" "$dest/python"
fi

if ! "$venv/bin/python" -c 'import requests, pydantic, aws_lambda_powertools.utilities.parser.models' 2>/dev/null; then
  "${pip[@]}" requests "aws-lambda-powertools[parser]==$POWERTOOLS_VERSION"
fi
echo "HTTP gateway test dependencies ready in $dest and $venv"
