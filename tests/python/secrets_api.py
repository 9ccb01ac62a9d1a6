"""Secrets Manager and SSM Parameter Store on Lamina's REST front, driven by the real boto3
(Named secrets_api.py, not secrets.py, which would hide the standard library's `secrets` module
from every script in this folder.) Driven by the real `secretsmanager` and `ssm` clients (run by
tests/tests/secrets.rs).

    python secrets_api.py secrets PREFIX                 # create/get/put/describe/list/delete/restore
    python secrets_api.py parameters PREFIX              # put/get/decrypt/by path/versions/delete
    python secrets_api.py rotation PREFIX OK_FN FAIL_FN  # RotateSecret through a rotation function
    python secrets_api.py store PREFIX SECRET PARAM PLAIN  # stores values for the at-rest check

Environment: LAMINA_REST (http://HOST:PORT), LAMINA_CREDENTIALS (the admin credentials file).
"""
import datetime
import json
import os
import sys
import uuid

import boto3
import botocore
from botocore.config import Config

REST = os.environ["LAMINA_REST"]
with open(os.environ["LAMINA_CREDENTIALS"]) as f:
    CREDS = json.load(f)


def client(service, key=None, secret=None):
    return boto3.client(
        service,
        endpoint_url=REST,
        region_name="us-east-1",
        aws_access_key_id=key or CREDS["accessKeyId"],
        aws_secret_access_key=secret or CREDS["secretAccessKey"],
        config=Config(retries={"max_attempts": 1}, read_timeout=120),
    )


def check(cond, what):
    if not cond:
        raise AssertionError(what)
    print("ok:", what.split(":")[0], flush=True)


def raises(exception, fn, **kwargs):
    """Calls fn, which must fail with botocore's exception class `exception`."""
    try:
        fn(**kwargs)
    except exception as e:
        return e
    raise AssertionError(f"{fn.__name__}({kwargs}) did not raise {exception.__name__}")


def stages(sm, secret_id):
    return sm.describe_secret(SecretId=secret_id)["VersionIdsToStages"]


def secrets(prefix):
    sm = client("secretsmanager")
    name = f"{prefix}/db"
    created = sm.create_secret(
        Name=name,
        SecretString='{"password":"first"}',
        Description="the database",
        Tags=[{"Key": "team", "Value": "core"}],
    )
    arn = created["ARN"]
    check(arn.startswith(f"arn:aws:secretsmanager:us-east-1:000000000000:secret:{name}-"), f"ARN: {arn}")
    check(len(arn) - len(f"arn:aws:secretsmanager:us-east-1:000000000000:secret:{name}-") == 6, "six random characters end the ARN")
    first = created["VersionId"]

    got = sm.get_secret_value(SecretId=name)
    check(got["SecretString"] == '{"password":"first"}' and got["VersionStages"] == ["AWSCURRENT"], "get by name")
    check(isinstance(got["CreatedDate"], datetime.datetime), "CreatedDate is a timestamp")
    check(sm.get_secret_value(SecretId=arn)["VersionId"] == first, "get by ARN")

    # ClientRequestToken: a retry is the same version, another value with it is refused.
    token = str(uuid.uuid4())
    put = sm.put_secret_value(SecretId=arn, ClientRequestToken=token, SecretString="second")
    check(put["VersionId"] == token and put["VersionStages"] == ["AWSCURRENT"], "put a new current version")
    again = sm.put_secret_value(SecretId=arn, ClientRequestToken=token, SecretString="second")
    check(again["VersionId"] == token, "a retried put is the same version")
    raises(sm.exceptions.ResourceExistsException, sm.put_secret_value, SecretId=arn, ClientRequestToken=token, SecretString="other")
    st = stages(sm, name)
    check(st[token] == ["AWSCURRENT"] and st[first] == ["AWSPREVIOUS"], f"AWSCURRENT moved, the old one is AWSPREVIOUS: {st}")
    prev = sm.get_secret_value(SecretId=name, VersionStage="AWSPREVIOUS")
    check(prev["SecretString"] == '{"password":"first"}', "the previous value by stage")
    check(sm.get_secret_value(SecretId=name, VersionId=first)["SecretString"] == '{"password":"first"}', "by version id")

    # Binary values, a pending stage, a third version deprecating the first.
    pending = sm.put_secret_value(SecretId=name, SecretBinary=b"\x00\x01bin", VersionStages=["AWSPENDING"])
    check(sm.get_secret_value(SecretId=name)["SecretString"] == "second", "a pending version leaves AWSCURRENT")
    check(sm.get_secret_value(SecretId=name, VersionStage="AWSPENDING")["SecretBinary"] == b"\x00\x01bin", "binary values round-trip")
    third = sm.put_secret_value(SecretId=name, SecretString="third")["VersionId"]
    st = stages(sm, name)
    check(first not in st and st[token] == ["AWSPREVIOUS"] and st[third] == ["AWSCURRENT"], f"stages after a third version: {st}")
    versions = sm.list_secret_version_ids(SecretId=name, IncludeDeprecated=True)["Versions"]
    check(len(versions) == 4, f"four versions kept, one deprecated: {versions}")
    sm.update_secret_version_stage(SecretId=name, VersionStage="AWSCURRENT", MoveToVersionId=pending["VersionId"], RemoveFromVersionId=third)
    check(sm.get_secret_value(SecretId=name)["SecretBinary"] == b"\x00\x01bin", "UpdateSecretVersionStage moves AWSCURRENT")
    raises(sm.exceptions.InvalidParameterException, sm.update_secret_version_stage, SecretId=name, VersionStage="AWSCURRENT", MoveToVersionId=third)

    d = sm.describe_secret(SecretId=name)
    check(d["Description"] == "the database" and d["Tags"] == [{"Key": "team", "Value": "core"}], "describe")
    check(d["RotationEnabled"] is False and "DeletedDate" not in d, "describe: no rotation, not deleted")
    sm.update_secret(SecretId=name, Description="the main database")
    check(sm.describe_secret(SecretId=name)["Description"] == "the main database", "UpdateSecret")

    # Errors through botocore's exception classes.
    raises(sm.exceptions.ResourceNotFoundException, sm.get_secret_value, SecretId=f"{prefix}/none")
    raises(sm.exceptions.ResourceExistsException, sm.create_secret, Name=name, SecretString="x")
    raises(sm.exceptions.InvalidParameterException, sm.create_secret, Name=f"{prefix}/bad name!", SecretString="x")
    raises(sm.exceptions.ResourceNotFoundException, sm.get_secret_value, SecretId=name, VersionId=str(uuid.uuid4()))

    # ListSecrets pages (the paginator follows NextToken) and filters.
    for i in range(5):
        sm.create_secret(Name=f"{prefix}/list/{i}", SecretString=f"v{i}")
    flt = [{"Key": "name", "Values": [f"{prefix}/list/"]}]
    page = sm.list_secrets(MaxResults=2, Filters=flt, SortBy="name")
    check(len(page["SecretList"]) == 2 and "NextToken" in page, "a page of two and a token")
    listed = [s["Name"] for p in sm.get_paginator("list_secrets").paginate(Filters=flt, SortBy="name", PaginationConfig={"PageSize": 2}) for s in p["SecretList"]]
    check(listed == [f"{prefix}/list/{i}" for i in range(5)], f"paginated listing: {listed}")
    entry = [s for s in sm.list_secrets(Filters=[{"Key": "name", "Values": [name]}])["SecretList"] if s["Name"] == name][0]
    check("SecretVersionsToStages" in entry and "SecretString" not in entry, "list entries carry stages, never values")
    raises(sm.exceptions.InvalidNextTokenException, sm.list_secrets, NextToken="bogus")

    # Deletion with a recovery window, restore, force.
    raises(sm.exceptions.InvalidParameterException, sm.delete_secret, SecretId=name, RecoveryWindowInDays=3)
    deleted = sm.delete_secret(SecretId=name, RecoveryWindowInDays=7)
    days = (deleted["DeletionDate"] - datetime.datetime.now(datetime.timezone.utc)).total_seconds() / 86400
    check(6.9 < days <= 7.0, f"deletion in 7 days: {days}")
    raises(sm.exceptions.InvalidRequestException, sm.get_secret_value, SecretId=name)
    raises(sm.exceptions.InvalidRequestException, sm.put_secret_value, SecretId=name, SecretString="x")
    check("DeletedDate" in sm.describe_secret(SecretId=name), "a deleted secret is described with its DeletedDate")
    names = [s["Name"] for s in sm.list_secrets(Filters=[{"Key": "name", "Values": [prefix]}])["SecretList"]]
    check(name not in names, "a deleted secret is not listed")
    planned = [s["Name"] for s in sm.list_secrets(IncludePlannedDeletion=True, Filters=[{"Key": "name", "Values": [prefix]}])["SecretList"]]
    check(name in planned, "IncludePlannedDeletion lists it")
    raises(sm.exceptions.InvalidRequestException, sm.create_secret, Name=name, SecretString="x")
    sm.restore_secret(SecretId=name)
    check(sm.get_secret_value(SecretId=name)["SecretBinary"] == b"\x00\x01bin", "restored with its versions")
    sm.delete_secret(SecretId=arn, ForceDeleteWithoutRecovery=True)
    raises(sm.exceptions.ResourceNotFoundException, sm.describe_secret, SecretId=name)
    recreated = sm.create_secret(Name=name, SecretString="new")
    check(recreated["ARN"] != arn, "a force-deleted name can be reused, with a new ARN")
    raises(sm.exceptions.ResourceNotFoundException, sm.get_secret_value, SecretId=arn)
    print("secrets passed", flush=True)


def parameters(prefix):
    ssm = client("ssm")
    base = f"/{prefix}"
    r = ssm.put_parameter(Name=f"{base}/url", Value="http://one", Type="String", Description="where")
    check(r["Version"] == 1 and r["Tier"] == "Standard", "put a String")
    raises(ssm.exceptions.ParameterAlreadyExists, ssm.put_parameter, Name=f"{base}/url", Value="x", Type="String")
    check(ssm.put_parameter(Name=f"{base}/url", Value="http://two", Overwrite=True)["Version"] == 2, "overwrite makes version 2")
    p = ssm.get_parameter(Name=f"{base}/url")["Parameter"]
    check(p["Value"] == "http://two" and p["Version"] == 2 and p["Type"] == "String", "get the newest")
    check(p["ARN"] == f"arn:aws:ssm:us-east-1:000000000000:parameter{base}/url", f"ARN: {p['ARN']}")
    v1 = ssm.get_parameter(Name=f"{base}/url:1")["Parameter"]
    check(v1["Value"] == "http://one" and v1["Selector"] == ":1", "a name:version selector")
    raises(ssm.exceptions.ParameterVersionNotFound, ssm.get_parameter, Name=f"{base}/url:7")
    raises(ssm.exceptions.ParameterNotFound, ssm.get_parameter, Name=f"{base}/none")
    raises(ssm.exceptions.UnsupportedParameterType, ssm.put_parameter, Name=f"{base}/n", Value="1", Type="Number")

    ssm.put_parameter(Name=f"{base}/list", Value="a,b,c", Type="StringList")
    ssm.put_parameter(Name=f"{base}/db/password", Value="pa55word", Type="SecureString")
    ssm.put_parameter(Name=f"{base}/db/deep/key", Value="k", Type="SecureString", KeyId="alias/mine")
    enc = ssm.get_parameter(Name=f"{base}/db/password")["Parameter"]
    check(enc["Type"] == "SecureString" and enc["Value"] != "pa55word" and "pa55word" not in enc["Value"], "a SecureString is answered encrypted")
    dec = ssm.get_parameter(Name=f"{base}/db/password", WithDecryption=True)["Parameter"]
    check(dec["Value"] == "pa55word", "WithDecryption decrypts")

    got = ssm.get_parameters(Names=[f"{base}/url", f"{base}/db/password", f"{base}/missing"], WithDecryption=True)
    values = {p["Name"]: p["Value"] for p in got["Parameters"]}
    check(values == {f"{base}/url": "http://two", f"{base}/db/password": "pa55word"}, f"GetParameters: {values}")
    check(got["InvalidParameters"] == [f"{base}/missing"], "GetParameters names the missing ones")

    one = ssm.get_parameters_by_path(Path=base)["Parameters"]
    check(sorted(p["Name"] for p in one) == [f"{base}/list", f"{base}/url"], f"one level: {[p['Name'] for p in one]}")
    pages = list(ssm.get_paginator("get_parameters_by_path").paginate(Path=base, Recursive=True, WithDecryption=True, PaginationConfig={"PageSize": 2}))
    every = {p["Name"]: p["Value"] for page in pages for p in page["Parameters"]}
    check(len(pages) == 2 and len(every) == 4 and every[f"{base}/db/deep/key"] == "k", f"recursive, paginated: {every}")

    history = ssm.get_parameter_history(Name=f"{base}/url")["Parameters"]
    check([h["Version"] for h in history] == [1, 2] and history[0]["Description"] == "where", "history")
    key = ssm.get_parameter_history(Name=f"{base}/db/deep/key")["Parameters"][0]
    check(key["KeyId"] == "alias/mine", "the KeyId is kept")

    ssm.delete_parameter(Name=f"{base}/url")
    raises(ssm.exceptions.ParameterNotFound, ssm.delete_parameter, Name=f"{base}/url")
    raises(ssm.exceptions.ParameterNotFound, ssm.get_parameter, Name=f"{base}/url:1")
    r = ssm.delete_parameters(Names=[f"{base}/list", f"{base}/nope"])
    check(r["DeletedParameters"] == [f"{base}/list"] and r["InvalidParameters"] == [f"{base}/nope"], "DeleteParameters")
    print("parameters passed", flush=True)


def rotation(prefix, ok_fn, fail_fn):
    sm = client("secretsmanager")
    name = f"{prefix}/rotated"
    arn = sm.create_secret(Name=name, SecretString="old-password")["ARN"]
    old = sm.get_secret_value(SecretId=name)["VersionId"]
    fn_arn = lambda fn: f"arn:aws:lambda:us-east-1:000000000000:function:{fn}"

    # The createSecret step must leave a version with the token: a function that does not write
    # it (these have no role: tests/tests/roles.rs rotates through a function with one) fails the
    # rotation there.
    e = raises(sm.exceptions.InvalidRequestException, sm.rotate_secret, SecretId=name, RotationLambdaARN=fn_arn(ok_fn))
    check("createSecret" in str(e), f"no pending version fails at createSecret: {e}")
    check(sm.get_secret_value(SecretId=name)["VersionId"] == old, "AWSCURRENT unchanged")

    # The pending version as createSecret would put it (PutSecretValue, AWSPENDING).
    token = str(uuid.uuid4())
    sm.put_secret_value(SecretId=name, ClientRequestToken=token, SecretString="new-password", VersionStages=["AWSPENDING"])

    # A function failing at finishSecret: AWSCURRENT stays, the pending version stays.
    e = raises(sm.exceptions.InvalidRequestException, sm.rotate_secret, SecretId=name, ClientRequestToken=token, RotationLambdaARN=fn_arn(fail_fn))
    check("finishSecret" in str(e) and "refusing to finish" in str(e), f"the failing step is named: {e}")
    st = stages(sm, name)
    check(st[old] == ["AWSCURRENT"] and st[token] == ["AWSPENDING"], f"a failed rotation moves nothing: {st}")
    check(sm.get_secret_value(SecretId=name)["SecretString"] == "old-password", "the old value is still current")

    # As in AWS, Secrets Manager does not move AWSCURRENT itself: a finishSecret that succeeds
    # without moving it leaves the rotation incomplete, AWSPENDING in place.
    e = raises(sm.exceptions.InvalidRequestException, sm.rotate_secret, SecretId=name, ClientRequestToken=token, RotationLambdaARN=fn_arn(ok_fn))
    check("finishSecret" in str(e) and "AWSCURRENT" in str(e), f"an incomplete finishSecret is named: {e}")
    st = stages(sm, name)
    check(st[old] == ["AWSCURRENT"] and st[token] == ["AWSPENDING"], f"an incomplete rotation moves nothing: {st}")
    check("LastRotatedDate" not in sm.describe_secret(SecretId=name), "no LastRotatedDate after an incomplete rotation")

    # AWSCURRENT moved as finishSecret would (UpdateSecretVersionStage), then the rotation retried
    # with the same token: it completes, and Secrets Manager takes AWSPENDING off.
    sm.update_secret_version_stage(SecretId=name, VersionStage="AWSCURRENT", MoveToVersionId=token, RemoveFromVersionId=old)
    r = sm.rotate_secret(SecretId=arn, ClientRequestToken=token, RotationLambdaARN=fn_arn(ok_fn), RotationRules={"AutomaticallyAfterDays": 30})
    check(r["VersionId"] == token and r["ARN"] == arn, "RotateSecret answers the new version")
    st = stages(sm, name)
    check(st == {token: ["AWSCURRENT"], old: ["AWSPREVIOUS"]}, f"stages after rotation: {st}")
    check(sm.get_secret_value(SecretId=name)["SecretString"] == "new-password", "the new value is current")
    d = sm.describe_secret(SecretId=name)
    check(d["RotationEnabled"] and d["RotationLambdaARN"] == fn_arn(ok_fn) and d["RotationRules"]["AutomaticallyAfterDays"] == 30, "rotation configuration described")
    check("LastRotatedDate" in d, "LastRotatedDate set")
    print(f"ROTATION_TOKEN={token}", flush=True)
    print(f"SECRET_ARN={arn}", flush=True)
    print("rotation passed", flush=True)


def store(prefix, secret, param, plain):
    sm = client("secretsmanager")
    ssm = client("ssm")
    sm.create_secret(Name=f"{prefix}/at-rest", SecretString=secret)
    sm.put_secret_value(SecretId=f"{prefix}/at-rest", SecretBinary=secret.encode() + b"-binary")
    ssm.put_parameter(Name=f"/{prefix}/at-rest", Value=param, Type="SecureString")
    ssm.put_parameter(Name=f"/{prefix}/plain", Value=plain, Type="String")
    check(sm.get_secret_value(SecretId=f"{prefix}/at-rest", VersionStage="AWSPREVIOUS")["SecretString"] == secret, "stored")
    print("store passed", flush=True)


def limited(prefix):
    """A key whose policy allows reading `PREFIX/allowed` (secret) and `/PREFIX/allowed`
    (parameter) only."""
    sm, ssm = client("secretsmanager"), client("ssm")
    sm.create_secret(Name=f"{prefix}/allowed", SecretString="yes")
    sm.create_secret(Name=f"{prefix}/other", SecretString="no")
    ssm.put_parameter(Name=f"/{prefix}/allowed", Value="yes", Type="SecureString")
    ssm.put_parameter(Name=f"/{prefix}/other", Value="no", Type="String")
    key, secret = os.environ["LIMITED_KEY_ID"], os.environ["LIMITED_SECRET"]
    lsm, lssm = client("secretsmanager", key, secret), client("ssm", key, secret)

    def denied(fn, **kwargs):
        try:
            fn(**kwargs)
        except botocore.exceptions.ClientError as e:
            code = e.response["Error"]["Code"], e.response["ResponseMetadata"]["HTTPStatusCode"]
            check(code == ("AccessDeniedException", 403), f"{fn.__name__} {kwargs} is refused: {code}")
            return
        raise AssertionError(f"{fn.__name__}({kwargs}) was allowed")

    check(lsm.get_secret_value(SecretId=f"{prefix}/allowed")["SecretString"] == "yes", "the allowed secret is read")
    check(lsm.describe_secret(SecretId=f"{prefix}/allowed")["Name"] == f"{prefix}/allowed", "and described")
    denied(lsm.get_secret_value, SecretId=f"{prefix}/other")
    denied(lsm.put_secret_value, SecretId=f"{prefix}/allowed", SecretString="x")
    denied(lsm.delete_secret, SecretId=f"{prefix}/allowed", ForceDeleteWithoutRecovery=True)
    denied(lsm.create_secret, Name=f"{prefix}/new", SecretString="x")
    denied(lsm.list_secrets)
    check(lssm.get_parameter(Name=f"/{prefix}/allowed", WithDecryption=True)["Parameter"]["Value"] == "yes", "the allowed parameter is read")
    denied(lssm.get_parameter, Name=f"/{prefix}/other")
    denied(lssm.put_parameter, Name=f"/{prefix}/allowed", Value="x", Overwrite=True)
    denied(lssm.delete_parameter, Name=f"/{prefix}/allowed")
    denied(lssm.get_parameters_by_path, Path=f"/{prefix}")
    got = lssm.get_parameters(Names=[f"/{prefix}/allowed"], WithDecryption=True)["Parameters"]
    check([p["Value"] for p in got] == ["yes"], "GetParameters of the allowed one")
    check(sm.get_secret_value(SecretId=f"{prefix}/allowed")["SecretString"] == "yes", "nothing changed")
    print("limited passed", flush=True)


def main():
    mode = sys.argv[1]
    if mode == "secrets":
        secrets(sys.argv[2])
    elif mode == "parameters":
        parameters(sys.argv[2])
    elif mode == "rotation":
        rotation(sys.argv[2], sys.argv[3], sys.argv[4])
    elif mode == "limited":
        limited(sys.argv[2])
    elif mode == "store":
        store(*sys.argv[2:6])
    else:
        raise SystemExit(f"unknown mode {mode}")


if __name__ == "__main__":
    main()
