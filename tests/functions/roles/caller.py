"""A function with an execution role (tests/tests/roles.rs): boto3, vendored beside it, signs with
the session credentials Lamina put in its environment and reaches Lamina's APIs through the
sandbox's AWS endpoint (AWS_ENDPOINT_URL); the Parameters and Secrets extension answers on
localhost:2773."""
import json
import os
import urllib.error
import urllib.parse
import urllib.request

import boto3
from botocore.exceptions import ClientError


def error_code(call):
    try:
        call()
        return "ok"
    except ClientError as e:
        return e.response["Error"]["Code"]


def extension(path, token):
    req = urllib.request.Request("http://localhost:2773" + path)
    if token is not None:
        req.add_header("X-Aws-Parameters-Secrets-Token", token)
    try:
        with urllib.request.urlopen(req, timeout=20) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, None


def handler(event, context):
    sm = boto3.client("secretsmanager")
    lam = boto3.client("lambda")
    allowed, other = event["allowed_secret"], event["other_secret"]
    out = {"endpoint": os.environ.get("AWS_ENDPOINT_URL")}
    out["allowed_secret"] = sm.get_secret_value(SecretId=allowed)["SecretString"]
    out["other_secret"] = error_code(lambda: sm.get_secret_value(SecretId=other))
    answer = lam.invoke(FunctionName=event["allowed_function"], Payload=b'{"from": "caller"}')
    out["allowed_function"] = json.loads(answer["Payload"].read())
    out["other_function"] = error_code(
        lambda: lam.invoke(FunctionName=event["other_function"], Payload=b"{}")
    )
    out["list_functions"] = error_code(lambda: lam.list_functions())
    # The sandbox's endpoint forwards only what its own session key signed.
    foreign = boto3.client(
        "secretsmanager",
        aws_access_key_id="LAMFOREIGNKEY",
        aws_secret_access_key="not-a-secret",
        aws_session_token="",
    )
    out["foreign_key"] = error_code(lambda: foreign.get_secret_value(SecretId=allowed))

    token = os.environ["AWS_SESSION_TOKEN"]
    path = "/secretsmanager/get?secretId=" + urllib.parse.quote(allowed, safe="")
    status, body = extension(path, token)
    out["extension"] = {"status": status, "body": body}
    # The extension's cache: a new value written meanwhile is not seen until the TTL runs out,
    # while GetSecretValue itself sees it at once.
    sm.put_secret_value(SecretId=allowed, SecretString="value-of-allowed-2")
    out["extension_again"] = extension(path, token)[1]
    out["allowed_secret_now"] = sm.get_secret_value(SecretId=allowed)["SecretString"]
    parameter = event["parameter"]
    pstatus, pbody = extension(
        "/systemsmanager/parameters/get?withDecryption=true&name="
        + urllib.parse.quote(parameter, safe=""),
        token,
    )
    out["extension_parameter"] = {"status": pstatus, "body": pbody}
    out["extension_without_token"] = extension(path, None)[0]
    out["extension_wrong_token"] = extension(path, "not-the-token")[0]
    other_path = "/secretsmanager/get?secretId=" + urllib.parse.quote(other, safe="")
    out["extension_other_secret"] = extension(other_path, token)[0]
    if event.get("reveal_credentials"):
        out["credentials"] = {
            k: os.environ[k]
            for k in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN")
        }
    return out
