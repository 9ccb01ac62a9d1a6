"""Lambda REST API fidelity with real boto3 and the AWS CLI (issue 14, items 16-18): Publish on
create and code update, RevisionId, event invoke config routes, a missing layer as a 4xx, every
FunctionName form, FunctionVersion=ALL, tags, the layer routes, and configuration kept as sent
(Role, LoggingConfig, provided.al2/al2023) or refused (arm64, Active tracing).

Run through lambda_rest.py (`python lambda_rest.py fidelity PREFIX`), whose helpers it uses.
"""
import base64
import hashlib
import io
import json
import os
import subprocess
import tempfile
import zipfile

import botocore

from lambda_rest import CREDS, REST, ROLE, check, client, error_code, versioned_code, zip_of

PROVIDED_BOOTSTRAP = """#!/usr/bin/python3.11
import json, os, http.client
api = os.environ["AWS_LAMBDA_RUNTIME_API"]
conn = http.client.HTTPConnection(api)
while True:
    conn.request("GET", "/2018-06-01/runtime/invocation/next")
    r = conn.getresponse(); body = r.read()
    rid = r.getheader("Lambda-Runtime-Aws-Request-Id")
    out = json.dumps({"echo": json.loads(body), "exec_env": os.environ.get("AWS_EXECUTION_ENV")})
    conn.request("POST", f"/2018-06-01/runtime/invocation/{rid}/response", out)
    r = conn.getresponse(); r.read()
"""

ENV_CODE = """
import os
def handler(event, context):
    return {k: os.environ.get(k) for k in
            ["AWS_LAMBDA_LOG_FORMAT", "AWS_LAMBDA_LOG_LEVEL", "AWS_LAMBDA_LOG_GROUP_NAME"]}
"""

LAYER_CODE = """
def handler(event, context):
    with open("/opt/fidelity.txt") as f:
        return {"layer": f.read()}
"""


def aws_cli(*args):
    env = dict(os.environ, AWS_ACCESS_KEY_ID=CREDS["accessKeyId"],
               AWS_SECRET_ACCESS_KEY=CREDS["secretAccessKey"], AWS_DEFAULT_REGION="us-east-1")
    out = subprocess.run([os.environ["AWS_CLI"], "--endpoint-url", REST, "--output", "json", "lambda", *args],
                         env=env, capture_output=True)
    if out.returncode != 0:
        raise AssertionError(f"aws lambda {args}: {out.stderr.decode()}")
    return json.loads(out.stdout) if out.stdout.strip() else {}


def fidelity_publish(prefix):
    """Item 16: Publish=True on create and code update, RevisionId on UpdateFunctionCode."""
    lam = client()
    name = f"{prefix}-pub"
    c = lam.create_function(FunctionName=name, Runtime="python3.11", Role=ROLE, Handler="app.handler",
                            Code={"ZipFile": versioned_code("one")}, Publish=True)
    check(c["ResponseMetadata"]["HTTPStatusCode"] == 201 and c["Version"] == "1"
          and c["FunctionArn"].endswith(f":{name}:1"), f"create with Publish returns version 1: {c}")
    listed = [v["Version"] for v in lam.list_versions_by_function(FunctionName=name)["Versions"]]
    check(listed == ["$LATEST", "1"], f"create with Publish published: {listed}")
    lam.create_alias(FunctionName=name, Name="live", FunctionVersion="1")

    # update -> publish -> move the alias, the pipeline Publish=True exists for.
    rev = lam.get_function_configuration(FunctionName=name)["RevisionId"]
    u = lam.update_function_code(FunctionName=name, ZipFile=versioned_code("two"), Publish=True, RevisionId=rev)
    check(u["Version"] == "2" and u["FunctionArn"].endswith(f":{name}:2"), f"update with Publish: {u}")
    lam.update_alias(FunctionName=name, Name="live", FunctionVersion=u["Version"])
    r = json.loads(lam.invoke(FunctionName=name, Qualifier="live")["Payload"].read())
    check(r["code"] == "two" and r["version"] == "2", f"the alias runs the published update: {r}")

    # A stale RevisionId is refused and changes nothing.
    before = lam.get_function_configuration(FunctionName=name)
    stale = error_code(lam.update_function_code, FunctionName=name, ZipFile=versioned_code("three"), RevisionId=rev)
    check(stale == ("PreconditionFailedException", 412), f"update code with a stale revision: {stale}")
    after = lam.get_function_configuration(FunctionName=name)
    check(after["CodeSha256"] == before["CodeSha256"] and after["RevisionId"] == before["RevisionId"],
          f"the refused update changed nothing: {after}")
    stale = error_code(lam.update_function_configuration, FunctionName=name, MemorySize=256, RevisionId=rev)
    check(stale == ("PreconditionFailedException", 412), f"update configuration with a stale revision: {stale}")

    # The AWS CLI's --publish.
    with tempfile.TemporaryDirectory() as d:
        z = os.path.join(d, "code.zip")
        with open(z, "wb") as f:
            f.write(versioned_code("four"))
        out = aws_cli("update-function-code", "--function-name", name, "--zip-file", f"fileb://{z}",
                      "--publish", "--revision-id", after["RevisionId"])
    check(out["Version"] == "3", f"aws cli update-function-code --publish: {out}")
    lam.delete_function(FunctionName=name)


def fidelity_api(prefix):
    """Item 17: event invoke config routes, layer errors, partial ARNs, FunctionVersion=ALL,
    tags and the layer routes."""
    lam = client()
    name = f"{prefix}-api"
    lam.create_function(FunctionName=name, Runtime="python3.11", Role=ROLE, Handler="app.handler",
                        Code={"ZipFile": versioned_code("one")}, Tags={"team": "blue", "cost": "42"})
    lam.publish_version(FunctionName=name)

    # Event invoke config: Put, Update (keeps what is not given), List, Delete.
    lam.put_function_event_invoke_config(FunctionName=name, MaximumRetryAttempts=1, MaximumEventAgeInSeconds=600)
    u = lam.update_function_event_invoke_config(FunctionName=name, MaximumRetryAttempts=0)
    check(u["MaximumRetryAttempts"] == 0 and u["MaximumEventAgeInSeconds"] == 600, f"update keeps the age: {u}")
    listed = lam.list_function_event_invoke_configs(FunctionName=name)["FunctionEventInvokeConfigs"]
    check(len(listed) == 1 and listed[0]["MaximumRetryAttempts"] == 0, f"list event invoke configs: {listed}")
    r = lam.delete_function_event_invoke_config(FunctionName=name)
    check(r["ResponseMetadata"]["HTTPStatusCode"] == 204, f"delete event invoke config: {r}")
    gone = error_code(lam.get_function_event_invoke_config, FunctionName=name)
    check(gone == ("ResourceNotFoundException", 404), f"get after delete: {gone}")
    check(lam.list_function_event_invoke_configs(FunctionName=name)["FunctionEventInvokeConfigs"] == [],
          "nothing listed after delete")
    e = error_code(lam.update_function_event_invoke_config, FunctionName=name, MaximumRetryAttempts=1)
    check(e == ("ResourceNotFoundException", 404), f"update without a configuration: {e}")
    e = error_code(lam.delete_function_event_invoke_config, FunctionName=name)
    check(e == ("ResourceNotFoundException", 404), f"delete without a configuration: {e}")

    # A missing layer is a bad parameter (4xx: SDKs do not retry it), not a 500.
    missing = "arn:aws:lambda:us-east-1:000000000000:layer:no-such-layer:1"
    e = error_code(lam.create_function, FunctionName=f"{name}-nolayer", Runtime="python3.11", Role=ROLE,
                   Handler="app.handler", Code={"ZipFile": versioned_code("x")}, Layers=[missing])
    check(e == ("InvalidParameterValueException", 400), f"create with a missing layer: {e}")
    e = error_code(lam.update_function_configuration, FunctionName=name, Layers=[missing])
    check(e == ("InvalidParameterValueException", 400), f"update with a missing layer: {e}")
    e = error_code(lam.get_layer_version, LayerName="no-such-layer", VersionNumber=1)
    check(e == ("ResourceNotFoundException", 404), f"get a missing layer version: {e}")

    # Every FunctionName form of the model: partial ARN, with a qualifier, full ARN, NAME:QUALIFIER.
    partial = f"000000000000:function:{name}"
    check(lam.get_function(FunctionName=partial)["Configuration"]["FunctionName"] == name, "get by partial ARN")
    r = json.loads(lam.invoke(FunctionName=f"{partial}:1")["Payload"].read())
    check(r["version"] == "1", f"invoke by partial ARN with a qualifier: {r}")
    full = f"arn:aws:lambda:us-east-1:000000000000:function:{name}:1"
    check(lam.get_function_configuration(FunctionName=full)["Version"] == "1", "get by qualified ARN")
    check(lam.get_function_configuration(FunctionName=f"{name}:1")["Version"] == "1", "get by NAME:QUALIFIER")
    lam.put_function_event_invoke_config(FunctionName=partial, MaximumRetryAttempts=2)
    check(lam.get_function_event_invoke_config(FunctionName=partial)["MaximumRetryAttempts"] == 2,
          "event invoke config by partial ARN")

    # ListFunctions FunctionVersion=ALL shows the published versions too.
    seen = [(f["FunctionName"], f["Version"])
            for p in lam.get_paginator("list_functions").paginate(FunctionVersion="ALL")
            for f in p["Functions"]]
    check((name, "$LATEST") in seen and (name, "1") in seen, f"list ALL has the version: {seen}")
    plain = [(f["FunctionName"], f["Version"]) for f in lam.list_functions()["Functions"]]
    check((name, "1") not in plain, f"the default list has $LATEST only: {plain}")
    bad = error_code(lam.list_functions, FunctionVersion="SOME")
    check(bad == ("InvalidParameterValueException", 400), f"FunctionVersion must be ALL: {bad}")

    # Tags: on create, in GetFunction, Tag/Untag/ListTags, the AWS CLI.
    arn = lam.get_function_configuration(FunctionName=name)["FunctionArn"]
    g = lam.get_function(FunctionName=name)
    check(g["Tags"] == {"team": "blue", "cost": "42"}, f"GetFunction shows the tags of create: {g}")
    rev = g["Configuration"]["RevisionId"]
    lam.tag_resource(Resource=arn, Tags={"env": "prod", "team": "red"})
    check(lam.list_tags(Resource=arn)["Tags"] == {"team": "red", "cost": "42", "env": "prod"}, "tag resource")
    lam.untag_resource(Resource=arn, TagKeys=["cost", "env"])
    check(lam.list_tags(Resource=arn)["Tags"] == {"team": "red"}, "untag resource")
    check(lam.get_function_configuration(FunctionName=name)["RevisionId"] == rev, "tags change no revision")
    check(aws_cli("list-tags", "--resource", arn)["Tags"] == {"team": "red"}, "aws cli list-tags")
    e = error_code(lam.tag_resource, Resource=arn, Tags={"aws:reserved": "x"})
    check(e == ("InvalidParameterValueException", 400), f"a reserved tag key: {e}")
    e = error_code(lam.list_tags, Resource=f"arn:aws:lambda:us-east-1:000000000000:function:{prefix}-missing")
    check(e == ("ResourceNotFoundException", 404), f"tags of a missing function: {e}")

    # Layers over REST: publish, list, get (by number and by ARN), attach, delete.
    layer = f"{prefix}-lib"
    content = io.BytesIO()
    with zipfile.ZipFile(content, "w") as z:
        z.writestr("fidelity.txt", "from the layer")
    p = lam.publish_layer_version(LayerName=layer, Description="d1", Content={"ZipFile": content.getvalue()},
                                  CompatibleRuntimes=["python3.11"], LicenseInfo="MIT")
    check(p["ResponseMetadata"]["HTTPStatusCode"] == 201 and p["Version"] == 1
          and p["LayerVersionArn"].endswith(f":layer:{layer}:1") and p["LicenseInfo"] == "MIT"
          and p["Content"]["CodeSize"] == len(content.getvalue())
          and p["Content"]["CodeSha256"] == base64.b64encode(hashlib.sha256(content.getvalue()).digest()).decode(),
          f"publish layer version: {p}")
    p2 = lam.publish_layer_version(LayerName=layer, Content={"ZipFile": content.getvalue()})
    check(p2["Version"] == 2, f"second layer version: {p2}")
    layers = {l["LayerName"]: l for l in lam.list_layers()["Layers"]}
    check(layers[layer]["LatestMatchingVersion"]["Version"] == 2, f"list layers: {layers}")
    matching = {l["LayerName"]: l for l in lam.list_layers(CompatibleRuntime="python3.11")["Layers"]}
    check(matching[layer]["LatestMatchingVersion"]["Version"] == 1, f"list layers for a runtime: {matching}")
    versions = [v["Version"] for v in lam.list_layer_versions(LayerName=layer)["LayerVersions"]]
    check(versions == [2, 1], f"list layer versions: {versions}")
    pages = [[v["Version"] for v in pg["LayerVersions"]]
             for pg in lam.get_paginator("list_layer_versions").paginate(LayerName=layer,
                                                                         PaginationConfig={"PageSize": 1})]
    check(pages == [[2], [1]], f"list layer versions by pages: {pages}")
    g = lam.get_layer_version(LayerName=layer, VersionNumber=1)
    check(g["Description"] == "d1" and g["CompatibleRuntimes"] == ["python3.11"], f"get layer version: {g}")
    g = lam.get_layer_version_by_arn(Arn=p["LayerVersionArn"])
    check(g["Version"] == 1, f"get layer version by arn: {g}")
    fn = f"{name}-layered"
    lam.create_function(FunctionName=fn, Runtime="python3.11", Role=ROLE, Handler="app.handler",
                        Code={"ZipFile": zip_of(LAYER_CODE)}, Layers=[p["LayerVersionArn"]], Timeout=30)
    r = json.loads(lam.invoke(FunctionName=fn)["Payload"].read())
    check(r == {"layer": "from the layer"}, f"a function runs with the REST-published layer: {r}")
    r = lam.delete_layer_version(LayerName=layer, VersionNumber=1)
    check(r["ResponseMetadata"]["HTTPStatusCode"] == 204, f"delete layer version: {r}")
    e = error_code(lam.get_layer_version, LayerName=layer, VersionNumber=1)
    check(e == ("ResourceNotFoundException", 404), f"deleted layer version: {e}")
    r = lam.delete_layer_version(LayerName=layer, VersionNumber=1)
    check(r["ResponseMetadata"]["HTTPStatusCode"] == 204, "delete is idempotent, as in Lambda")
    lam.delete_layer_version(LayerName=layer, VersionNumber=2)
    lam.delete_function(FunctionName=fn)
    lam.delete_function(FunctionName=name)
    e = error_code(lam.list_tags, Resource=arn)
    check(e == ("ResourceNotFoundException", 404), f"tags go with the function: {e}")


def fidelity_config(prefix):
    """Item 18: what was sent is kept and returned, or refused with a clear error."""
    lam = client()
    role = "arn:aws:iam::123456789012:role/service-role/fidelity-role"
    logging = {"LogFormat": "JSON", "ApplicationLogLevel": "DEBUG", "SystemLogLevel": "WARN",
               "LogGroup": "/fidelity/group"}
    name = f"{prefix}-cfg"
    c = lam.create_function(FunctionName=name, Runtime="python3.11", Role=role, Handler="app.handler",
                            Code={"ZipFile": zip_of(ENV_CODE)}, Architectures=["x86_64"],
                            TracingConfig={"Mode": "PassThrough"}, LoggingConfig=logging)
    for got in (c, lam.get_function_configuration(FunctionName=name)):
        check(got["Role"] == role and got["Architectures"] == ["x86_64"]
              and got["TracingConfig"] == {"Mode": "PassThrough"} and got["LoggingConfig"] == logging,
              f"configuration kept as sent: {got}")
    r = json.loads(lam.invoke(FunctionName=name)["Payload"].read())
    check(r == {"AWS_LAMBDA_LOG_FORMAT": "JSON", "AWS_LAMBDA_LOG_LEVEL": "DEBUG",
                "AWS_LAMBDA_LOG_GROUP_NAME": "/fidelity/group"}, f"the function sees its LoggingConfig: {r}")
    other = "arn:aws:iam::123456789012:role/other"
    u = lam.update_function_configuration(FunctionName=name, Role=other, LoggingConfig={"LogFormat": "Text"})
    check(u["Role"] == other and u["LoggingConfig"] == {"LogFormat": "Text", "LogGroup": f"/aws/lambda/{name}"},
          f"update keeps what was sent: {u}")
    v = lam.publish_version(FunctionName=name)
    check(v["Role"] == other and v["LoggingConfig"]["LogFormat"] == "Text", f"a version keeps them: {v}")

    # What cannot be honoured is refused, naming the fix.
    for field, value, needle in [("Architectures", ["arm64"], "x86_64"),
                                 ("TracingConfig", {"Mode": "Active"}, "PassThrough"),
                                 ("LoggingConfig", {"LogFormat": "Text", "ApplicationLogLevel": "DEBUG"}, "JSON"),
                                 ("Role", "lamina", "IAM role ARN")]:
        try:
            lam.create_function(**{"FunctionName": f"{name}-bad", "Runtime": "python3.11", "Role": role,
                                   "Handler": "app.handler", "Code": {"ZipFile": zip_of(ENV_CODE)}, field: value})
            raise AssertionError(f"{field}={value} was accepted")
        except botocore.exceptions.ClientError as e:
            err = e.response["Error"]
            check(err["Code"] == "InvalidParameterValueException" and needle in err["Message"],
                  f"{field}={value} refused: {err}")
    e = error_code(lam.update_function_code, FunctionName=name, ZipFile=zip_of(ENV_CODE), Architectures=["arm64"])
    check(e == ("InvalidParameterValueException", 400), f"update code to arm64: {e}")
    e = error_code(lam.update_function_configuration, FunctionName=name, TracingConfig={"Mode": "Active"})
    check(e == ("InvalidParameterValueException", 400), f"update to Active tracing: {e}")

    # provided.al2 and provided.al2023 are runtimes of their own: kept, reported, run.
    for runtime in ["provided.al2", "provided.al2023"]:
        fn = f"{prefix}-{runtime.replace('.', '-')}"
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w") as z:
            info = zipfile.ZipInfo("bootstrap")
            info.external_attr = 0o755 << 16
            z.writestr(info, PROVIDED_BOOTSTRAP)
        c = lam.create_function(FunctionName=fn, Runtime=runtime, Role=role, Handler="x.handler",
                                Code={"ZipFile": buf.getvalue()}, Timeout=30)
        check(c["Runtime"] == runtime and lam.get_function(FunctionName=fn)["Configuration"]["Runtime"] == runtime,
              f"{runtime} is reported as sent: {c}")
        r = json.loads(lam.invoke(FunctionName=fn, Payload=json.dumps({"n": 1}))["Payload"].read())
        check(r == {"echo": {"n": 1}, "exec_env": None}, f"{runtime} runs its bootstrap: {r}")
        lam.delete_function(FunctionName=fn)
    got = aws_cli("get-function-configuration", "--function-name", name)
    check(got["Role"] == other and got["Architectures"] == ["x86_64"], f"aws cli sees the same: {got}")
    lam.delete_function(FunctionName=name)


def fidelity(prefix):
    """Runs the three scenarios (each on its own functions), reporting every one that fails."""
    failed = []
    for scenario in (fidelity_publish, fidelity_api, fidelity_config):
        try:
            scenario(prefix)
        except (AssertionError, botocore.exceptions.ClientError) as e:
            print(f"FAILED {scenario.__name__}: {e}", flush=True)
            failed.append(scenario.__name__)
    if failed:
        raise SystemExit(f"fidelity failed: {', '.join(failed)}")
    print("fidelity passed", flush=True)
