"""The host side of tests/tests/roles.rs, with the real boto3 against Lamina's REST API.

  roles.py setup ALLOWED OTHER [PARAMETER]
                                   creates two secrets (and a SecureString parameter) with the
                                   admin key; prints the secrets' ARNs
  roles.py use AKID SECRET TOKEN SECRET_ID
                                   GetSecretValue signed with session credentials; prints
                                   {"code": "ok" | error code, "value": ...}
"""
import json
import os
import sys

import boto3
from botocore.exceptions import ClientError

REST = os.environ["LAMINA_REST"]


def admin(service):
    with open(os.environ["LAMINA_CREDENTIALS"]) as f:
        creds = json.load(f)
    return boto3.client(
        service,
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
    else:
        raise SystemExit(f"unknown mode {mode}")


if __name__ == "__main__":
    main()
