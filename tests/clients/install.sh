#!/usr/bin/env bash
# Installs the official AWS Lambda runtime interface clients that tests/tests/runtime_clients.rs runs
# unchanged inside Lamina sandboxes, from their own registries, into a cache outside the clone
# (LAMINA_CLIENTS, default /var/tmp/lamina-clients) so that later runs are incremental:
#   python/   awslambdaric (PyPI), `pip install --target`: vendored into a function zip as is
#   node/     aws-lambda-ric@3.3.0 (npm; 4.x needs Node 22) with its native addon built here
#             (cmake, autoconf, automake, libtool: deploy/install-deps.sh)
#   rust-target/release/bootstrap   tests/clients/rust-fn built on the `lambda_runtime` crate (crates.io)
# Run by deploy/test.sh; safe to run again (only what is missing or changed is redone).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
dest="${LAMINA_CLIENTS:-/var/tmp/lamina-clients}"
venv="${LAMINA_VENV:-/var/tmp/lamina-venv}"
AWSLAMBDARIC_VERSION=4.2.2
AWS_LAMBDA_RIC_VERSION=3.3.0
mkdir -p "$dest"

# Python: wheels for CPython 3.11 (the sandbox runs the host's /usr/bin/python3.11).
py_marker="$dest/python/awslambdaric-$AWSLAMBDARIC_VERSION.dist-info"
if [ ! -d "$py_marker" ]; then
  pip="$venv/bin/pip"
  [ -x "$pip" ] || { python3 -m venv "$venv"; pip="$venv/bin/pip"; }
  rm -rf "$dest/python.new"
  "$pip" install --quiet --disable-pip-version-check --target "$dest/python.new" \
    --python-version 3.11 --only-binary=:all: "awslambdaric==$AWSLAMBDARIC_VERSION"
  rm -rf "$dest/python" && mv "$dest/python.new" "$dest/python"
fi

# Node: install without scripts, then build the addon explicitly (npm 11 skips dependency install
# scripts unless allowed; an explicit rebuild runs them on every npm version).
node_pkg="$dest/node/node_modules/aws-lambda-ric"
if [ ! -f "$node_pkg/dist/rapid-client.node" ] \
  || ! grep -q "\"version\": \"$AWS_LAMBDA_RIC_VERSION\"" "$node_pkg/package.json"; then
  rm -rf "$dest/node" && mkdir -p "$dest/node"
  (
    cd "$dest/node"
    echo '{"name":"lamina-node-client-fn","version":"1.0.0","private":true}' > package.json
    export npm_config_nodedir="${npm_config_nodedir:-/usr}"
    npm install --silent --no-audit --no-fund --ignore-scripts "aws-lambda-ric@$AWS_LAMBDA_RIC_VERSION"
    npm rebuild --silent --foreground-scripts aws-lambda-ric > rebuild.log 2>&1 \
      || { cat rebuild.log >&2; exit 1; }
  )
  [ -f "$node_pkg/dist/rapid-client.node" ] \
    || { echo "install.sh: aws-lambda-ric built no dist/rapid-client.node: see $dest/node/rebuild.log" >&2; exit 1; }
fi

# Rust: its own target directory; cargo decides what is stale.
CARGO_TARGET_DIR="$dest/rust-target" cargo build --quiet --release --locked \
  --manifest-path "$here/rust-fn/Cargo.toml"
echo "runtime clients ready in $dest"
