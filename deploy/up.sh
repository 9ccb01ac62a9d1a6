#!/usr/bin/env bash
# Quick start: installs what is missing, builds, runs a single-node cluster (controller + worker) in
# the foreground on embedded defaults, and deploys + invokes an example function. Ctrl-C stops it.
#   LAMINA_DATA_DIR (default /var/lib/lamina)   LAMINA_LISTEN (default 127.0.0.1:9670)
#   LAMINA_REST_LISTEN (default 127.0.0.1:9680: the Lambda REST API for boto3 / the AWS CLI)
#   LAMINA_HTTP_LISTEN (default 127.0.0.1:9690: the HTTP gateway, function URLs and HTTP APIs)
# The controller creates the first admin access key at its first start, in
# $LAMINA_DATA_DIR/controller/auth/admin-credentials.json (mode 0600); fnctl uses it from there.
# Every endpoint is https: fnctl up creates a cluster CA at its first start in
# $LAMINA_DATA_DIR/tls/ca.pem (key 0600 beside it) and certificates for the controller and worker;
# fnctl trusts that CA (FNCTL_CA), boto3 with verify=CA, curl with --cacert CA.
set -euo pipefail
cd "$(dirname "$0")/.."
[ "$(id -u)" = 0 ] || { echo "deploy/up.sh: run as root: workers create namespaces and cgroups" >&2; exit 1; }
deploy/install-deps.sh
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/var/tmp/lamina-target}"
cargo build --workspace --bins --lib --locked
bin="$CARGO_TARGET_DIR/debug"
data="${LAMINA_DATA_DIR:-/var/lib/lamina}"
listen="${LAMINA_LISTEN:-127.0.0.1:9670}"
rest_listen="${LAMINA_REST_LISTEN:-127.0.0.1:9680}"
http_listen="${LAMINA_HTTP_LISTEN:-127.0.0.1:9690}"
export FNCTL_ENDPOINT="https://$listen"
export FNCTL_CREDENTIALS="$data/controller/auth/admin-credentials.json"
export FNCTL_CA="$data/tls/ca.pem"

fifo=$(mktemp -u); mkfifo "$fifo"
"$bin/fnctl" up --data-dir "$data" --listen "$listen" --rest-listen "$rest_listen" \
  --http-listen "$http_listen" >"$fifo" &
up=$!
trap 'kill -TERM $up 2>/dev/null; wait $up; rm -f "$fifo"' INT TERM EXIT
exec 3<"$fifo"
while read -r line <&3; do
  echo "$line"
  case "$line" in "lamina is up"*) break ;; esac
done
cat <&3 &

if ! "$bin/fnctl" get hello >/dev/null 2>&1; then
  "$bin/fnctl" create hello --runtime python3.11 --handler app.handler --code deploy/examples/hello-python
fi
echo "invoking the example: fnctl invoke hello --payload '{\"name\":\"Lamina\"}'"
"$bin/fnctl" invoke hello --payload '{"name":"Lamina"}'
if ! "$bin/fnctl" url get hello >/dev/null 2>&1; then
  "$bin/fnctl" url create hello --auth-type NONE >/dev/null
fi
# FunctionUrl is https://<url-id>.lambda-url.<region>.<domain>:<port>/; the gateway also serves it by path.
url_id=$("$bin/fnctl" url get hello -o json |
  sed -n 's#^ *"FunctionUrl": *"https\{0,1\}://\([a-z0-9]*\)\.lambda-url\..*#\1#p')
url_example="curl --cacert $FNCTL_CA https://$http_listen/$url_id/"
echo "calling the example's function URL: $url_example"
if command -v curl >/dev/null; then
  curl -sS --cacert "$FNCTL_CA" "https://$http_listen/$url_id/" && echo || echo "(the function URL did not answer; see the messages above)"
fi
echo "Lamina is running at $FNCTL_ENDPOINT (fnctl: $bin/fnctl, credentials: $FNCTL_CREDENTIALS)."
echo "TLS: every endpoint is https; the cluster CA is $FNCTL_CA (FNCTL_CA / fnctl --ca;"
echo "  boto3 verify=, AWS_CA_BUNDLE; curl --cacert)."
echo "Lambda REST API: https://$rest_listen — boto3.client('lambda', endpoint_url='https://$rest_listen',"
echo "  verify='$FNCTL_CA', region_name='us-east-1', aws_access_key_id=..., aws_secret_access_key=...)"
echo "  with the key in $FNCTL_CREDENTIALS;"
echo "  AWS CLI: aws --endpoint-url https://$rest_listen --ca-bundle $FNCTL_CA lambda list-functions"
echo "HTTP gateway: https://$http_listen — function URL of hello: $url_example"
echo "  (fnctl url create NAME --auth-type NONE|AWS_IAM; fnctl api create NAME, fnctl api route add ...)"
echo "Ctrl-C stops it."
wait $up
