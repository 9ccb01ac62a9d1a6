"""A Secrets Manager rotation function shaped as AWS's rotation template (tests/tests/roles.rs):
it does the work itself through its execution role, with boto3 (vendored beside it) signing
with the session credentials Lamina put in its environment, against the sandbox's AWS endpoint.

  createSecret  GetSecretValue AWSCURRENT; unless the token's version exists already,
                PutSecretValue(ClientRequestToken=token, VersionStages=["AWSPENDING"]) with a new
                random password
  setSecret     reads AWSPENDING by token (a real rotator would set it in the database)
  testSecret    reads AWSPENDING by token (a real rotator would log in with it)
  finishSecret  UpdateSecretVersionStage: AWSCURRENT moves to the token's version
"""
import json
import secrets
import string

import boto3
from botocore.exceptions import ClientError


def handler(event, context):
    arn, token, step = event["SecretId"], event["ClientRequestToken"], event["Step"]
    sm = boto3.client("secretsmanager")
    metadata = sm.describe_secret(SecretId=arn)
    if not metadata.get("RotationEnabled"):
        raise ValueError(f"secret {arn} is not enabled for rotation")
    versions = metadata.get("VersionIdsToStages", {})
    if token not in versions:
        if step != "createSecret":
            raise ValueError(f"secret version {token} has no stage for rotation of secret {arn}")
    elif "AWSCURRENT" in versions[token]:
        print(f"{step}: version {token} is already AWSCURRENT")
        return
    elif "AWSPENDING" not in versions[token]:
        raise ValueError(f"secret version {token} is not AWSPENDING for rotation of secret {arn}")
    print(f"STEP {step}")
    if step == "createSecret":
        create_secret(sm, arn, token)
    elif step in ("setSecret", "testSecret"):
        pending = sm.get_secret_value(SecretId=arn, VersionId=token, VersionStage="AWSPENDING")
        if not json.loads(pending["SecretString"]).get("password"):
            raise ValueError("the pending secret has no password")
    elif step == "finishSecret":
        finish_secret(sm, arn, token)
    else:
        raise ValueError(f"invalid step {step}")


def create_secret(sm, arn, token):
    current = json.loads(sm.get_secret_value(SecretId=arn, VersionStage="AWSCURRENT")["SecretString"])
    try:
        sm.get_secret_value(SecretId=arn, VersionId=token, VersionStage="AWSPENDING")
        print(f"createSecret: version {token} exists already")
    except ClientError as e:
        if e.response["Error"]["Code"] != "ResourceNotFoundException":
            raise
        alphabet = string.ascii_letters + string.digits
        current["password"] = "".join(secrets.choice(alphabet) for _ in range(32))
        sm.put_secret_value(
            SecretId=arn,
            ClientRequestToken=token,
            SecretString=json.dumps(current),
            VersionStages=["AWSPENDING"],
        )
        print(f"createSecret: put version {token} as AWSPENDING")


def finish_secret(sm, arn, token):
    current = None
    for version, stages in sm.describe_secret(SecretId=arn)["VersionIdsToStages"].items():
        if "AWSCURRENT" in stages:
            if version == token:
                return
            current = version
            break
    sm.update_secret_version_stage(
        SecretId=arn,
        VersionStage="AWSCURRENT",
        MoveToVersionId=token,
        RemoveFromVersionId=current,
    )
    print(f"finishSecret: AWSCURRENT moved to {token} from {current}")
