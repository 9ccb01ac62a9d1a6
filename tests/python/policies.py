"""Policies (issue 17, part 3) through the real boto3 `lambda` client: a key limited by its
policy is refused (403 AccessDeniedException) on every Lambda REST route but the one it may
call; AddPermission/GetPolicy/RemovePermission with botocore's shapes and errors. Run by
tests/tests/policies.rs.

    python policies.py limited ALLOWED OTHER KEY SECRET
        the key invokes ALLOWED and is refused everything else
    python policies.py resource-policy F G KEY SECRET
        the admin grants KEY lambda:InvokeFunction on F with AddPermission, then takes it away
    python policies.py url-status HOST:PORT URL_ID KEY SECRET
        the HTTP status of a GET of the AWS_IAM function URL URL_ID signed with KEY

Environment: LAMINA_REST (http://HOST:PORT), LAMINA_CREDENTIALS (the admin credentials file).
Prints one JSON object; exits non-zero on the first unexpected answer.
"""
import io
import json
import os
import sys
import zipfile

import boto3
from botocore.config import Config
from botocore.exceptions import ClientError

REST = os.environ["LAMINA_REST"]
with open(os.environ["LAMINA_CREDENTIALS"]) as f:
    ADMIN = json.load(f)
ROLE = "arn:aws:iam::000000000000:role/lamina"
ARN = "arn:aws:lambda:us-east-1:000000000000:function:"


def client(key=None, secret=None):
    return boto3.client(
        "lambda",
        endpoint_url=REST,
        region_name="us-east-1",
        aws_access_key_id=key or ADMIN["accessKeyId"],
        aws_secret_access_key=secret or ADMIN["secretAccessKey"],
        config=Config(retries={"max_attempts": 1}, read_timeout=120),
    )


def zip_of(source):
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("app.py", source)
    return buf.getvalue()


def fail(message, **details):
    print(json.dumps({"error": message, **details}, default=str))
    sys.exit(1)


def code_of(call):
    """The error code of `call()` ("ok" when it succeeds) and the HTTP status."""
    try:
        call()
        return "ok", 200
    except ClientError as e:
        return e.response["Error"]["Code"], e.response["ResponseMetadata"]["HTTPStatusCode"]


def expect(what, call, code, status):
    got = code_of(call)
    if got != (code, status):
        fail(f"{what}: expected {code} ({status}), got {got[0]} ({got[1]})")


def invoke_ok(c, name):
    r = c.invoke(FunctionName=name, Payload=b'{"n": 1}')
    payload = json.loads(r["Payload"].read())
    if r["StatusCode"] != 200 or "FunctionError" in r:
        fail(f"invoke {name}: {r['StatusCode']} {payload}")
    return payload


def limited(allowed, other, key, secret):
    c = client(key, secret)
    payload = invoke_ok(c, allowed)
    zip_file = zip_of("def handler(e, c):\n    return 1\n")
    # Every Lambda route but InvokeFunction on `allowed`, with arguments that would otherwise
    # work (or fail later than the policy check).
    calls = {
        "Invoke(other)": lambda: c.invoke(FunctionName=other, Payload=b"{}"),
        "Invoke(allowed:1)": lambda: c.invoke(FunctionName=allowed, Qualifier="1", Payload=b"{}"),
        "InvokeWithResponseStream(other)": lambda: c.invoke_with_response_stream(FunctionName=other, Payload=b"{}"),
        "InvokeAsync(other)": lambda: c.invoke(FunctionName=other, InvocationType="Event", Payload=b"{}"),
        "GetFunction": lambda: c.get_function(FunctionName=allowed),
        "GetFunctionConfiguration": lambda: c.get_function_configuration(FunctionName=allowed),
        "ListFunctions": lambda: c.list_functions(),
        "CreateFunction": lambda: c.create_function(
            FunctionName=allowed + "-new", Runtime="python3.11", Role=ROLE,
            Handler="app.handler", Code={"ZipFile": zip_file}),
        "UpdateFunctionCode": lambda: c.update_function_code(FunctionName=allowed, ZipFile=zip_file),
        "UpdateFunctionConfiguration": lambda: c.update_function_configuration(
            FunctionName=allowed, Description="changed"),
        "DeleteFunction": lambda: c.delete_function(FunctionName=allowed),
        "PublishVersion": lambda: c.publish_version(FunctionName=allowed),
        "ListVersionsByFunction": lambda: c.list_versions_by_function(FunctionName=allowed),
        "CreateAlias": lambda: c.create_alias(FunctionName=allowed, Name="live", FunctionVersion="$LATEST"),
        "GetAlias": lambda: c.get_alias(FunctionName=allowed, Name="live"),
        "UpdateAlias": lambda: c.update_alias(FunctionName=allowed, Name="live", Description="x"),
        "DeleteAlias": lambda: c.delete_alias(FunctionName=allowed, Name="live"),
        "ListAliases": lambda: c.list_aliases(FunctionName=allowed),
        "PutFunctionConcurrency": lambda: c.put_function_concurrency(
            FunctionName=allowed, ReservedConcurrentExecutions=1),
        "GetFunctionConcurrency": lambda: c.get_function_concurrency(FunctionName=allowed),
        "DeleteFunctionConcurrency": lambda: c.delete_function_concurrency(FunctionName=allowed),
        "GetAccountSettings": lambda: c.get_account_settings(),
        "PutProvisionedConcurrencyConfig": lambda: c.put_provisioned_concurrency_config(
            FunctionName=allowed, Qualifier="live", ProvisionedConcurrentExecutions=1),
        "GetProvisionedConcurrencyConfig": lambda: c.get_provisioned_concurrency_config(
            FunctionName=allowed, Qualifier="live"),
        "ListProvisionedConcurrencyConfigs": lambda: c.list_provisioned_concurrency_configs(
            FunctionName=allowed),
        "DeleteProvisionedConcurrencyConfig": lambda: c.delete_provisioned_concurrency_config(
            FunctionName=allowed, Qualifier="live"),
        "PutFunctionEventInvokeConfig": lambda: c.put_function_event_invoke_config(
            FunctionName=allowed, MaximumRetryAttempts=0),
        "UpdateFunctionEventInvokeConfig": lambda: c.update_function_event_invoke_config(
            FunctionName=allowed, MaximumRetryAttempts=1),
        "GetFunctionEventInvokeConfig": lambda: c.get_function_event_invoke_config(FunctionName=allowed),
        "DeleteFunctionEventInvokeConfig": lambda: c.delete_function_event_invoke_config(
            FunctionName=allowed),
        "ListFunctionEventInvokeConfigs": lambda: c.list_function_event_invoke_configs(
            FunctionName=allowed),
        "TagResource": lambda: c.tag_resource(Resource=ARN + allowed, Tags={"k": "v"}),
        "UntagResource": lambda: c.untag_resource(Resource=ARN + allowed, TagKeys=["k"]),
        "ListTags": lambda: c.list_tags(Resource=ARN + allowed),
        "PublishLayerVersion": lambda: c.publish_layer_version(
            LayerName="l", Content={"ZipFile": zip_file}),
        "ListLayers": lambda: c.list_layers(),
        "ListLayerVersions": lambda: c.list_layer_versions(LayerName="l"),
        "GetLayerVersion": lambda: c.get_layer_version(LayerName="l", VersionNumber=1),
        "GetLayerVersionByArn": lambda: c.get_layer_version_by_arn(
            Arn="arn:aws:lambda:us-east-1:000000000000:layer:l:1"),
        "DeleteLayerVersion": lambda: c.delete_layer_version(LayerName="l", VersionNumber=1),
        "CreateFunctionUrlConfig": lambda: c.create_function_url_config(
            FunctionName=allowed, AuthType="NONE"),
        "GetFunctionUrlConfig": lambda: c.get_function_url_config(FunctionName=allowed),
        "UpdateFunctionUrlConfig": lambda: c.update_function_url_config(
            FunctionName=allowed, AuthType="AWS_IAM"),
        "DeleteFunctionUrlConfig": lambda: c.delete_function_url_config(FunctionName=allowed),
        "ListFunctionUrlConfigs": lambda: c.list_function_url_configs(FunctionName=allowed),
        "AddPermission": lambda: c.add_permission(
            FunctionName=allowed, StatementId="s", Action="lambda:InvokeFunction", Principal="*"),
        "GetPolicy": lambda: c.get_policy(FunctionName=allowed),
        "RemovePermission": lambda: c.remove_permission(FunctionName=allowed, StatementId="s"),
    }
    refused, wrong = [], {}
    for name, call in calls.items():
        got = code_of(call)
        if got == ("AccessDeniedException", 403):
            refused.append(name)
        else:
            wrong[name] = got
    if wrong:
        fail("calls the policy does not allow were not refused", wrong=wrong)
    # Still allowed after all that.
    invoke_ok(c, allowed)
    print(json.dumps({"invoked": payload, "refused": refused}))


def resource_policy(f, g, key, secret):
    admin, c = client(), client(key, secret)
    expect("the key before AddPermission", lambda: c.invoke(FunctionName=f, Payload=b"{}"),
           "AccessDeniedException", 403)
    expect("GetPolicy before AddPermission", lambda: admin.get_policy(FunctionName=f),
           "ResourceNotFoundException", 404)
    r = admin.add_permission(FunctionName=f, StatementId="let-key-invoke",
                             Action="lambda:InvokeFunction", Principal=key)
    statement = json.loads(r["Statement"])
    want = {"Sid": "let-key-invoke", "Effect": "Allow",
            "Principal": {"AWS": "arn:aws:iam::000000000000:user/" + key},
            "Action": "lambda:InvokeFunction", "Resource": ARN + f}
    if statement != want:
        fail("AddPermission's Statement", got=statement, want=want)
    if r["ResponseMetadata"]["HTTPStatusCode"] != 201:
        fail("AddPermission's status", got=r["ResponseMetadata"]["HTTPStatusCode"])
    # A service's permission beside it, with its conditions as Lambda writes them.
    admin.add_permission(FunctionName=f, StatementId="s3", Action="lambda:InvokeFunction",
                         Principal="s3.amazonaws.com", SourceArn="arn:aws:s3:::bucket",
                         SourceAccount="123456789012")
    policy = admin.get_policy(FunctionName=f)
    doc = json.loads(policy["Policy"])
    if doc.get("Version") != "2012-10-17" or [s["Sid"] for s in doc["Statement"]] != ["let-key-invoke", "s3"]:
        fail("GetPolicy's Policy", got=doc)
    if doc["Statement"][1].get("Condition") != {
            "StringEquals": {"AWS:SourceAccount": "123456789012"},
            "ArnLike": {"AWS:SourceArn": "arn:aws:s3:::bucket"}}:
        fail("the s3 statement's conditions", got=doc["Statement"][1])
    if not policy.get("RevisionId"):
        fail("GetPolicy has no RevisionId", got=policy)
    expect("a duplicate StatementId", lambda: admin.add_permission(
        FunctionName=f, StatementId="s3", Action="lambda:InvokeFunction", Principal="*"),
        "ResourceConflictException", 409)
    expect("a bad Action", lambda: admin.add_permission(
        FunctionName=f, StatementId="x", Action="s3:GetObject", Principal="*"),
        "InvalidParameterValueException", 400)
    expect("AddPermission on a missing function", lambda: admin.add_permission(
        FunctionName=f + "-missing", StatementId="x", Action="lambda:InvokeFunction", Principal="*"),
        "ResourceNotFoundException", 404)
    # The grant: exactly InvokeFunction on f.
    invoked = invoke_ok(c, f)
    expect("the key on another function", lambda: c.invoke(FunctionName=g, Payload=b"{}"),
           "AccessDeniedException", 403)
    expect("the key on another action", lambda: c.get_function(FunctionName=f),
           "AccessDeniedException", 403)
    expect("RemovePermission with a stale RevisionId", lambda: admin.remove_permission(
        FunctionName=f, StatementId="let-key-invoke", RevisionId="stale"),
        "PreconditionFailedException", 412)
    r = admin.remove_permission(FunctionName=f, StatementId="let-key-invoke",
                                RevisionId=policy["RevisionId"])
    if r["ResponseMetadata"]["HTTPStatusCode"] != 204:
        fail("RemovePermission's status", got=r["ResponseMetadata"]["HTTPStatusCode"])
    expect("the key after RemovePermission", lambda: c.invoke(FunctionName=f, Payload=b"{}"),
           "AccessDeniedException", 403)
    expect("removing it again", lambda: admin.remove_permission(
        FunctionName=f, StatementId="let-key-invoke"), "ResourceNotFoundException", 404)
    left = json.loads(admin.get_policy(FunctionName=f)["Policy"])
    if [s["Sid"] for s in left["Statement"]] != ["s3"]:
        fail("the policy after RemovePermission", got=left)
    admin.remove_permission(FunctionName=f, StatementId="s3")
    expect("GetPolicy after the last statement went", lambda: admin.get_policy(FunctionName=f),
           "ResourceNotFoundException", 404)
    print(json.dumps({"invoked": invoked, "statement": statement}))


def url_status(http, url_id, key, secret):
    import requests
    from botocore.auth import SigV4Auth
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import Credentials

    port = http.rsplit(":", 1)[1]
    host = f"{url_id}.lambda-url.us-east-1.localhost:{port}"
    req = AWSRequest(method="GET", url=f"http://{host}/policies", data=b"")
    SigV4Auth(Credentials(key, secret), "lambda", "us-east-1").add_auth(req)
    headers = {**dict(req.headers.items()), "Host": host}
    r = requests.get(f"http://{http}/policies", headers=headers, timeout=60)
    print(json.dumps({"status": r.status_code}))


if __name__ == "__main__":
    mode, args = sys.argv[1], sys.argv[2:]
    if mode == "limited":
        limited(*args)
    elif mode == "resource-policy":
        resource_policy(*args)
    elif mode == "url-status":
        url_status(*args)
    else:
        fail(f"unknown mode {mode}")
