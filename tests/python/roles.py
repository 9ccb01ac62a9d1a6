"""The host side of tests/tests/roles.rs, with the real boto3 against Lamina's REST API.

  roles.py setup ALLOWED OTHER [PARAMETER]
                                   creates two secrets (and a SecureString parameter) with the
                                   admin key; prints the secrets' ARNs
  roles.py use AKID SECRET TOKEN SECRET_ID
                                   GetSecretValue signed with session credentials; prints
                                   {"code": "ok" | error code, "value": ...}
  roles.py json-secrets NAME...    creates secrets valued {"username", "password": "old-password"}
                                   with the admin key; prints their ARNs
  roles.py rotate OK_SECRET OK_FN DENIED_SECRET DENIED_FN
                                   RotateSecret (RotateImmediately) of each secret through its
                                   rotation function; checks the stages, values and
                                   DescribeSecret; prints what it saw
"""
import json
import os
import sys

import boto3
from botocore.config import Config
from botocore.exceptions import ClientError

REST = os.environ["LAMINA_REST"]


def admin(service, config=None):
    with open(os.environ["LAMINA_CREDENTIALS"]) as f:
        creds = json.load(f)
    return boto3.client(
        service,
        config=config,
        endpoint_url=REST,
        region_name="us-east-1",
        aws_access_key_id=creds["accessKeyId"],
        aws_secret_access_key=creds["secretAccessKey"],
    )


def main():
    mode = sys.argv[1]
    if mode == "setup":
        sm = admin("secretsmanager")
        arns = {}
        for name, value in ((sys.argv[2], "value-of-allowed"), (sys.argv[3], "value-of-other")):
            arns[name] = sm.create_secret(Name=name, SecretString=value)["ARN"]
        if len(sys.argv) > 4:
            ssm = admin("ssm")
            ssm.put_parameter(Name=sys.argv[4], Value="parameter-value", Type="SecureString")
        print(json.dumps(arns))
    elif mode == "use":
        akid, secret, token, secret_id = sys.argv[2:6]
        sm = boto3.client(
            "secretsmanager",
            endpoint_url=REST,
            region_name="us-east-1",
            aws_access_key_id=akid,
            aws_secret_access_key=secret,
            aws_session_token=token,
        )
        try:
            value = sm.get_secret_value(SecretId=secret_id)["SecretString"]
            print(json.dumps({"code": "ok", "value": value}))
        except ClientError as e:
            print(json.dumps({"code": e.response["Error"]["Code"], "message": e.response["Error"].get("Message", "")}))
    elif mode == "json-secrets":
        sm = admin("secretsmanager")
        value = json.dumps({"username": "app", "password": "old-password"})
        print(json.dumps({n: sm.create_secret(Name=n, SecretString=value)["ARN"] for n in sys.argv[2:]}))
    elif mode == "rotate":
        print(json.dumps(rotate(*sys.argv[2:6])))
    else:
        raise SystemExit(f"unknown mode {mode}")


def fn_arn(name):
    return f"arn:aws:lambda:us-east-1:000000000000:function:{name}"


def stages(sm, secret_id):
    return {k: sorted(v) for k, v in sm.describe_secret(SecretId=secret_id)["VersionIdsToStages"].items()}


def password(sm, secret_id, **kwargs):
    return json.loads(sm.get_secret_value(SecretId=secret_id, **kwargs)["SecretString"])["password"]


def rotate(ok_secret, ok_fn, denied_secret, denied_fn):
    """RotateSecret through a rotation function that does the work with its role, and through one
    whose role lacks PutSecretValue."""
    # RotateSecret answers once the four steps ran (cold starts importing boto3): no retry of a
    # slow answer, which would start a second rotation.
    sm = admin("secretsmanager", Config(read_timeout=300, retries={"max_attempts": 1}))
    out = {}
    old = sm.get_secret_value(SecretId=ok_secret)["VersionId"]
    r = sm.rotate_secret(SecretId=ok_secret, RotationLambdaARN=fn_arn(ok_fn), RotateImmediately=True)
    new = r["VersionId"]
    out["answer"] = {"arn": r["ARN"], "new": new, "old": old}
    out["current"] = password(sm, ok_secret, VersionStage="AWSCURRENT")
    out["current_version"] = sm.get_secret_value(SecretId=ok_secret)["VersionId"]
    out["previous"] = password(sm, ok_secret, VersionStage="AWSPREVIOUS")
    out["previous_version"] = sm.get_secret_value(SecretId=ok_secret, VersionStage="AWSPREVIOUS")["VersionId"]
    try:
        sm.get_secret_value(SecretId=ok_secret, VersionStage="AWSPENDING")
        out["pending"] = "present"
    except ClientError as e:
        out["pending"] = e.response["Error"]["Code"]
    out["stages"] = stages(sm, ok_secret)
    d = sm.describe_secret(SecretId=ok_secret)
    out["rotation_enabled"] = d["RotationEnabled"]
    out["rotation_lambda"] = d.get("RotationLambdaARN")
    out["last_rotated"] = "LastRotatedDate" in d
    # A second rotation: the new password moves on again, the first rotated one is AWSPREVIOUS.
    second = sm.rotate_secret(SecretId=ok_secret, RotateImmediately=True)["VersionId"]
    out["second"] = {
        "current_is_second": sm.get_secret_value(SecretId=ok_secret)["VersionId"] == second,
        "previous_is_first": sm.get_secret_value(SecretId=ok_secret, VersionStage="AWSPREVIOUS")["VersionId"] == new,
        "stages": stages(sm, ok_secret),
    }

    # The rotation function's role lacks PutSecretValue: createSecret fails, nothing moves.
    before = sm.get_secret_value(SecretId=denied_secret)["VersionId"]
    try:
        sm.rotate_secret(SecretId=denied_secret, RotationLambdaARN=fn_arn(denied_fn), RotateImmediately=True)
        out["denied"] = {"code": "ok"}
    except ClientError as e:
        out["denied"] = {"code": e.response["Error"]["Code"], "message": e.response["Error"].get("Message", "")}
    out["denied"]["current_version_unchanged"] = sm.get_secret_value(SecretId=denied_secret)["VersionId"] == before
    out["denied"]["current"] = password(sm, denied_secret)
    out["denied"]["stages"] = stages(sm, denied_secret)
    out["denied"]["last_rotated"] = "LastRotatedDate" in sm.describe_secret(SecretId=denied_secret)
    return out


if __name__ == "__main__":
    main()
