"""Drives Lamina's Lambda REST API with real boto3 and the AWS CLI (v1), and checks that forged
requests are refused on every route. Run by tests/tests/rest_boto3.rs and auth_refusals.rs.

    python lambda_rest.py flow PREFIX            # the boto3 + aws cli scenario
    python lambda_rest.py versions PREFIX        # versions and aliases through boto3 + aws cli
    python lambda_rest.py concurrency PREFIX LIMIT   # reserved + provisioned concurrency, account
                                                     # settings (LIMIT: the controller's --concurrency-limit)
    python lambda_rest.py fidelity PREFIX        # Publish, RevisionId, tags, layers, event invoke
                                                 # configs, name forms, kept configuration
    python lambda_rest.py refusals NAME          # every route refuses forged requests
    python lambda_rest.py replays NAME           # replays and unsigned x-amz-* headers are refused
    python lambda_rest.py big-upload NAME        # a signed upload just under the 50 MB zip limit works
    python lambda_rest.py unserved               # clients of services Lamina does not serve get
                                                 # their protocol's error, not a hang or HTML
    python lambda_rest.py expect-ok KEY SECRET   # the key works
    python lambda_rest.py expect-code CODE KEY SECRET   # the key gets error CODE

Environment: LAMINA_REST (http://HOST:PORT), LAMINA_CREDENTIALS (the admin credentials file),
AWS_CLI (path of the aws executable, for `flow`).
"""
import base64
import datetime
import hashlib
import hmac
import io
import json
import os
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
import zipfile

import boto3
import botocore
from botocore.config import Config

REST = os.environ["LAMINA_REST"]
with open(os.environ["LAMINA_CREDENTIALS"]) as f:
    CREDS = json.load(f)
ROLE = "arn:aws:iam::000000000000:role/lamina"


def client(key=None, secret=None):
    return boto3.client(
        "lambda",
        endpoint_url=REST,
        region_name="us-east-1",
        aws_access_key_id=key or CREDS["accessKeyId"],
        aws_secret_access_key=secret or CREDS["secretAccessKey"],
        config=Config(retries={"max_attempts": 1}, read_timeout=120),
    )


def zip_of(source):
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("app.py", source)
    return buf.getvalue()


V1 = """
import os
def handler(event, context):
    print("log line from version 1", event.get("marker", ""))
    if event.get("fail"):
        raise ValueError("asked to fail")
    cc = context.client_context.custom if context.client_context else None
    return {"version": 1, "event": event, "greeting": os.environ.get("GREETING"), "custom": cc}
"""
V2 = """
def handler(event, context):
    return {"version": 2}
"""


def error_code(fn, *args, **kwargs):
    try:
        fn(*args, **kwargs)
    except botocore.exceptions.ClientError as e:
        return e.response["Error"]["Code"], e.response["ResponseMetadata"]["HTTPStatusCode"]
    raise AssertionError(f"{fn.__name__} succeeded, an error was expected")


def check(cond, what):
    if not cond:
        raise AssertionError(what)
    print("ok:", what.split(":")[0], flush=True)


def flow(prefix):
    lam = client()
    names = [f"{prefix}-{i}" for i in range(3)]
    for n in names:
        c = lam.create_function(
            FunctionName=n,
            Runtime="python3.11",
            Role=ROLE,
            Handler="app.handler",
            Code={"ZipFile": zip_of(V1)},
            Timeout=30,
            Environment={"Variables": {"GREETING": "hello"}},
        )
        check(c["FunctionName"] == n and c["ResponseMetadata"]["HTTPStatusCode"] == 201, f"create: {c}")
    lam.get_waiter("function_active_v2").wait(FunctionName=names[0])
    check(lam.get_function(FunctionName=names[0])["Configuration"]["State"] == "Active", "waiter")

    # Sync invoke with the log tail and a client context; by ARN.
    arn = lam.get_function(FunctionName=names[0])["Configuration"]["FunctionArn"]
    ctx = base64.b64encode(json.dumps({"custom": {"who": "boto3"}}).encode()).decode()
    r = lam.invoke(FunctionName=arn, Payload=json.dumps({"x": 1}), LogType="Tail", ClientContext=ctx)
    body = json.loads(r["Payload"].read())
    check(r["StatusCode"] == 200 and body["version"] == 1, f"invoke sync: {r} {body}")
    check(body["event"] == {"x": 1} and body["greeting"] == "hello", f"invoke payload and env: {body}")
    check(body["custom"] == {"who": "boto3"}, f"client context: {body}")
    check(r["ExecutedVersion"] == "$LATEST", f"executed version: {r}")
    log = base64.b64decode(r["LogResult"]).decode()
    check("log line from version 1" in log and "REPORT RequestId" in log, f"log tail: {log}")

    # A function error still answers 200, with X-Amz-Function-Error.
    r = lam.invoke(FunctionName=names[0], Payload=json.dumps({"fail": True}))
    err = json.loads(r["Payload"].read())
    check(r["StatusCode"] == 200 and r.get("FunctionError") == "Unhandled", f"function error: {r}")
    check(err["errorType"] == "ValueError", f"error payload: {err}")

    # Async and dry run.
    r = lam.invoke(FunctionName=names[0], InvocationType="Event", Payload=json.dumps({"marker": "async-1"}))
    check(r["StatusCode"] == 202, f"invoke event: {r}")
    print("ASYNC_REQUEST_ID=" + r["ResponseMetadata"]["RequestId"], flush=True)
    r = lam.invoke(FunctionName=names[0], InvocationType="DryRun")
    check(r["StatusCode"] == 204, f"dry run: {r}")

    # Event invoke config.
    r = lam.put_function_event_invoke_config(
        FunctionName=names[0],
        MaximumRetryAttempts=1,
        MaximumEventAgeInSeconds=600,
        DestinationConfig={"OnFailure": {"Destination": "arn:aws:sqs:us-east-1:000000000000:failed"}},
    )
    got = lam.get_function_event_invoke_config(FunctionName=names[0])
    check(
        got["MaximumRetryAttempts"] == 1
        and got["MaximumEventAgeInSeconds"] == 600
        and got["DestinationConfig"]["OnFailure"]["Destination"].endswith(":failed"),
        f"event invoke config: {got}",
    )

    # Update code, then configuration; the waiter for updates works too.
    c = lam.update_function_code(FunctionName=names[0], ZipFile=zip_of(V2))
    lam.get_waiter("function_updated_v2").wait(FunctionName=names[0])
    r = json.loads(lam.invoke(FunctionName=names[0])["Payload"].read())
    check(r == {"version": 2} and c["LastUpdateStatus"] == "Successful", f"update code: {r}")
    c = lam.update_function_configuration(FunctionName=names[1], MemorySize=256, Environment={"Variables": {"A": "1"}})
    got = lam.get_function_configuration(FunctionName=names[1])
    check(got["MemorySize"] == 256 and got["Environment"]["Variables"] == {"A": "1"}, f"update configuration: {got}")

    # List with pagination (botocore's paginator follows NextMarker).
    page = lam.list_functions(MaxItems=1)
    check(len(page["Functions"]) == 1 and "NextMarker" in page, f"list page: {page}")
    seen, pages = [], 0
    for p in lam.get_paginator("list_functions").paginate(PaginationConfig={"PageSize": 1}):
        pages += 1
        seen += [f["FunctionName"] for f in p["Functions"]]
    check(all(n in seen for n in names) and pages >= 3 and len(seen) == len(set(seen)), f"paginate: {pages} {seen}")

    # Errors.
    check(error_code(lam.get_function, FunctionName=prefix + "-missing") == ("ResourceNotFoundException", 404), "get missing")
    check(error_code(lam.invoke, FunctionName=prefix + "-missing") == ("ResourceNotFoundException", 404), "invoke missing")
    check(error_code(lam.delete_function, FunctionName=prefix + "-missing") == ("ResourceNotFoundException", 404), "delete missing")
    dup = dict(FunctionName=names[0], Runtime="python3.11", Role=ROLE, Handler="app.handler", Code={"ZipFile": zip_of(V1)})
    check(error_code(lam.create_function, **dup) == ("ResourceConflictException", 409), "create duplicate")
    bad = dict(dup, FunctionName=prefix + "-bad", Runtime="cobol85")
    check(error_code(lam.create_function, **bad) == ("InvalidParameterValueException", 400), "invalid runtime")
    bad = dict(dup, FunctionName=prefix + "-bad", Code={"ZipFile": b"not a zip"})
    check(error_code(lam.create_function, **bad) == ("InvalidParameterValueException", 400), "invalid zip")
    check(
        error_code(lam.update_function_configuration, FunctionName=names[1], Handler="") [0]
        == "InvalidParameterValueException",
        "invalid handler",
    )
    check(error_code(lam.invoke, FunctionName=names[0], Payload=b"{not json")[0] == "InvalidRequestContentException", "invalid json")
    big = json.dumps({"pad": "x" * (7 * 1024 * 1024)})
    check(error_code(lam.invoke, FunctionName=names[0], Payload=big) == ("RequestTooLargeException", 413), "payload too large")

    # Delete.
    lam.delete_function(FunctionName=names[2])
    check(error_code(lam.get_function, FunctionName=names[2])[1] == 404, "delete")

    # The AWS CLI v1 against the same endpoint.
    aws = os.environ["AWS_CLI"]
    env = dict(
        os.environ,
        AWS_ACCESS_KEY_ID=CREDS["accessKeyId"],
        AWS_SECRET_ACCESS_KEY=CREDS["secretAccessKey"],
        AWS_DEFAULT_REGION="us-east-1",
    )
    base = [aws, "--endpoint-url", REST, "--output", "json", "lambda"]
    out = subprocess.run(base + ["get-function", "--function-name", names[1]], env=env, check=True, capture_output=True)
    check(json.loads(out.stdout)["Configuration"]["MemorySize"] == 256, "aws cli get-function")
    with tempfile.TemporaryDirectory() as d:
        res = os.path.join(d, "out.json")
        out = subprocess.run(
            base + ["invoke", "--function-name", names[1], "--payload", '{"cli": true}', "--log-type", "Tail", res],
            env=env, check=True, capture_output=True,
        )
        meta = json.loads(out.stdout)
        with open(res) as f:
            result = json.load(f)
        check(meta["StatusCode"] == 200 and result["event"] == {"cli": True}, f"aws cli invoke: {meta} {result}")
        check("REPORT RequestId" in base64.b64decode(meta["LogResult"]).decode(), "aws cli log tail")
    out = subprocess.run(base + ["get-function", "--function-name", prefix + "-missing"], env=env, capture_output=True)
    check(out.returncode != 0 and b"ResourceNotFoundException" in out.stderr, f"aws cli error: {out.stderr}")
    out = subprocess.run(base + ["list-functions"], env=dict(env, AWS_SECRET_ACCESS_KEY="wrong"), capture_output=True)
    check(out.returncode != 0 and b"InvalidSignatureException" in out.stderr, f"aws cli wrong secret: {out.stderr}")
    print("flow passed", flush=True)


def versioned_code(answer):
    return zip_of(
        "def handler(event, context):\n"
        f"    return {{'code': '{answer}', 'version': context.function_version,"
        " 'arn': context.invoked_function_arn}\n"
    )


def versions(prefix):
    lam = client()
    name = f"{prefix}-ver"
    lam.create_function(FunctionName=name, Runtime="python3.11", Role=ROLE, Handler="app.handler",
                        Code={"ZipFile": versioned_code("one")}, Timeout=30)
    lam.get_waiter("function_active_v2").wait(FunctionName=name)
    conf = lam.get_function_configuration(FunctionName=name)

    # PublishVersion with Lambda's preconditions (CodeSha256 in base64, RevisionId).
    stale = error_code(lam.publish_version, FunctionName=name, RevisionId="stale")
    check(stale == ("PreconditionFailedException", 412), f"publish with a stale revision: {stale}")
    v1 = lam.publish_version(FunctionName=name, Description="first", CodeSha256=conf["CodeSha256"],
                             RevisionId=conf["RevisionId"])
    check(v1["ResponseMetadata"]["HTTPStatusCode"] == 201 and v1["Version"] == "1"
          and v1["FunctionArn"].endswith(f":{name}:1") and v1["Description"] == "first", f"publish: {v1}")
    again = lam.publish_version(FunctionName=name)
    check(again["Version"] == "1", f"unchanged $LATEST publishes nothing new: {again}")
    lam.update_function_code(FunctionName=name, ZipFile=versioned_code("two"))
    lam.get_waiter("function_updated_v2").wait(FunctionName=name)
    v2 = lam.publish_version(FunctionName=name)
    check(v2["Version"] == "2" and v2["CodeSha256"] != v1["CodeSha256"], f"publish 2: {v2}")
    listed = [v["Version"] for v in lam.list_versions_by_function(FunctionName=name)["Versions"]]
    check(listed == ["$LATEST", "1", "2"], f"list versions: {listed}")
    pages = [[v["Version"] for v in p["Versions"]]
             for p in lam.get_paginator("list_versions_by_function").paginate(
                 FunctionName=name, PaginationConfig={"PageSize": 2})]
    check(pages == [["$LATEST", "1"], ["2"]], f"list versions by pages: {pages}")

    # Aliases.
    a = lam.create_alias(FunctionName=name, Name="live", FunctionVersion="1",
                         RoutingConfig={"AdditionalVersionWeights": {"2": 0.5}})
    check(a["ResponseMetadata"]["HTTPStatusCode"] == 201 and a["AliasArn"].endswith(f":{name}:live")
          and a["RoutingConfig"]["AdditionalVersionWeights"] == {"2": 0.5}, f"create alias: {a}")
    dup = error_code(lam.create_alias, FunctionName=name, Name="live", FunctionVersion="2")
    check(dup == ("ResourceConflictException", 409), f"duplicate alias: {dup}")
    missing = error_code(lam.create_alias, FunctionName=name, Name="other", FunctionVersion="9")
    check(missing == ("ResourceNotFoundException", 404), f"alias of a missing version: {missing}")
    bad = error_code(lam.create_alias, FunctionName=name, Name="12", FunctionVersion="1")
    check(bad == ("InvalidParameterValueException", 400), f"numeric alias name: {bad}")
    bad = error_code(lam.create_alias, FunctionName=name, Name="heavy", FunctionVersion="1",
                     RoutingConfig={"AdditionalVersionWeights": {"2": 1.5}})
    check(bad == ("InvalidParameterValueException", 400), f"weight above 1: {bad}")

    # Invoke with Qualifier, NAME:QUALIFIER and the alias's weights.
    r = lam.invoke(FunctionName=name, Qualifier="1", Payload="{}")
    body = json.loads(r["Payload"].read())
    check(r["ExecutedVersion"] == "1" and body["code"] == "one" and body["version"] == "1"
          and body["arn"].endswith(f":{name}:1"), f"invoke version 1: {r} {body}")
    r = lam.invoke(FunctionName=f"{name}:2", Payload="{}")
    body = json.loads(r["Payload"].read())
    check(r["ExecutedVersion"] == "2" and body["code"] == "two", f"invoke NAME:2: {r} {body}")
    seen = set()
    for _ in range(40):
        r = lam.invoke(FunctionName=name, Qualifier="live", Payload="{}")
        body = json.loads(r["Payload"].read())
        check(body["version"] == r["ExecutedVersion"] and body["arn"].endswith(f":{name}:live"),
              f"invoke live: {r} {body}")
        seen.add(r["ExecutedVersion"])
    check(seen == {"1", "2"}, f"a 50/50 alias ran both versions in 40 invocations: {seen}")
    missing = error_code(lam.invoke, FunctionName=name, Qualifier="9")
    check(missing == ("ResourceNotFoundException", 404), f"invoke a missing version: {missing}")

    u = lam.update_alias(FunctionName=name, Name="live", FunctionVersion="2",
                         RoutingConfig={"AdditionalVersionWeights": {}}, RevisionId=a["RevisionId"])
    check(u["FunctionVersion"] == "2" and u["RevisionId"] != a["RevisionId"], f"update alias: {u}")
    stale = error_code(lam.update_alias, FunctionName=name, Name="live", RevisionId=a["RevisionId"])
    check(stale == ("PreconditionFailedException", 412), f"update alias with a stale revision: {stale}")
    r = lam.invoke(FunctionName=name, Qualifier="live", Payload="{}")
    check(r["ExecutedVersion"] == "2", f"the alias update took effect: {r}")
    got = lam.get_alias(FunctionName=name, Name="live")
    check(got["FunctionVersion"] == "2" and got["Name"] == "live", f"get alias: {got}")
    names = lambda v: [x["Name"] for x in lam.list_aliases(FunctionName=name, FunctionVersion=v)["Aliases"]]
    check(names("2") == ["live"] and names("1") == [], f"list aliases by version: {names('2')} {names('1')}")

    # Qualified GetFunction / GetFunctionConfiguration / DeleteFunction.
    g = lam.get_function(FunctionName=name, Qualifier="1")["Configuration"]
    check(g["Version"] == "1" and g["CodeSha256"] == v1["CodeSha256"], f"get version 1: {g}")
    g = lam.get_function_configuration(FunctionName=name, Qualifier="live")
    check(g["Version"] == "2" and g["FunctionArn"].endswith(":live"), f"get configuration of the alias: {g}")
    used = error_code(lam.delete_function, FunctionName=name, Qualifier="2")
    check(used == ("ResourceConflictException", 409), f"delete a version an alias uses: {used}")
    lam.delete_function(FunctionName=name, Qualifier="1")
    gone = error_code(lam.get_function, FunctionName=name, Qualifier="1")
    check(gone == ("ResourceNotFoundException", 404), f"version 1 deleted: {gone}")

    # The AWS CLI v1.
    aws = os.environ["AWS_CLI"]
    env = dict(os.environ, AWS_ACCESS_KEY_ID=CREDS["accessKeyId"],
               AWS_SECRET_ACCESS_KEY=CREDS["secretAccessKey"], AWS_DEFAULT_REGION="us-east-1")
    base = [aws, "--endpoint-url", REST, "--output", "json", "lambda"]
    out = subprocess.run(base + ["list-aliases", "--function-name", name], env=env, check=True, capture_output=True)
    check([x["Name"] for x in json.loads(out.stdout)["Aliases"]] == ["live"], f"aws cli list-aliases: {out.stdout}")
    out = subprocess.run(base + ["list-versions-by-function", "--function-name", name], env=env, check=True,
                         capture_output=True)
    listed = [v["Version"] for v in json.loads(out.stdout)["Versions"]]
    check(listed == ["$LATEST", "2"], f"aws cli list-versions-by-function: {listed}")

    lam.delete_alias(FunctionName=name, Name="live")
    check(lam.list_aliases(FunctionName=name)["Aliases"] == [], "delete alias")
    lam.delete_function(FunctionName=name)
    check(error_code(lam.list_versions_by_function, FunctionName=name)[1] == 404, "delete the function")
    print("versions passed", flush=True)


INIT_TYPE_CODE = """
import os
def handler(event, context):
    print("ran version", context.function_version)
    return {"version": context.function_version,
            "init_type": os.environ.get("AWS_LAMBDA_INITIALIZATION_TYPE")}
"""


def wait_provisioned_ready(lam, name, qualifier, timeout_s=180):
    """Polls GetProvisionedConcurrencyConfig until READY (FAILED or the deadline fail)."""
    deadline = time.monotonic() + timeout_s
    while True:
        c = lam.get_provisioned_concurrency_config(FunctionName=name, Qualifier=qualifier)
        if c["Status"] == "READY":
            return c
        check(c["Status"] == "IN_PROGRESS", f"provisioned {qualifier} is in progress or ready: {c}")
        check(time.monotonic() < deadline, f"provisioned {qualifier} READY within {timeout_s} s: {c}")
        time.sleep(0.5)


def concurrency(prefix, limit):
    lam = client()
    name = f"{prefix}-conc"
    c = lam.create_function(FunctionName=name, Runtime="python3.11", Role=ROLE, Handler="app.handler",
                            Code={"ZipFile": zip_of(INIT_TYPE_CODE)}, Timeout=30, MemorySize=128)
    lam.get_waiter("function_active_v2").wait(FunctionName=name)

    # GetAccountSettings: the controller's limit, its unreserved share, the functions and their code.
    acct = lam.get_account_settings()
    lim, use = acct["AccountLimit"], acct["AccountUsage"]
    check(lim["ConcurrentExecutions"] == limit and lim["UnreservedConcurrentExecutions"] == limit
          and lim["CodeSizeZipped"] == 50 * 1024 * 1024 and lim["CodeSizeUnzipped"] == 250 * 1024 * 1024,
          f"account limits: {acct}")
    check(use["FunctionCount"] >= 1 and use["TotalCodeSize"] >= c["CodeSize"] > 0, f"account usage: {acct}")

    # Reserved concurrency: put, get (also in GetFunction), refusals that change nothing, delete.
    check("ReservedConcurrentExecutions" not in lam.get_function_concurrency(FunctionName=name)
          and "Concurrency" not in lam.get_function(FunctionName=name), "no reservation at first")
    r = lam.put_function_concurrency(FunctionName=name, ReservedConcurrentExecutions=5)
    check(r["ReservedConcurrentExecutions"] == 5, f"put function concurrency: {r}")
    r = lam.get_function_concurrency(FunctionName=name)
    check(r["ReservedConcurrentExecutions"] == 5, f"get function concurrency: {r}")
    g = lam.get_function(FunctionName=name)
    check(g["Concurrency"] == {"ReservedConcurrentExecutions": 5}, f"GetFunction shows the reservation: {g}")
    unreserved = lam.get_account_settings()["AccountLimit"]["UnreservedConcurrentExecutions"]
    check(unreserved == limit - 5, f"the reservation comes out of the unreserved share: {unreserved}")
    big = error_code(lam.put_function_concurrency, FunctionName=name, ReservedConcurrentExecutions=limit)
    check(big == ("InvalidParameterValueException", 400), f"a reservation of the whole limit: {big}")
    qual = error_code(lam.put_function_concurrency, FunctionName=f"{name}:1", ReservedConcurrentExecutions=1)
    check(qual == ("InvalidParameterValueException", 400), f"a qualified name: {qual}")
    check(lam.get_function_concurrency(FunctionName=name)["ReservedConcurrentExecutions"] == 5,
          "refused puts changed nothing")
    missing = error_code(lam.put_function_concurrency, FunctionName=prefix + "-missing",
                         ReservedConcurrentExecutions=1)
    check(missing == ("ResourceNotFoundException", 404), f"put on a missing function: {missing}")
    missing = error_code(lam.get_function_concurrency, FunctionName=prefix + "-missing")
    check(missing == ("ResourceNotFoundException", 404), f"get on a missing function: {missing}")

    # Reserved 0 disables the function: a sync invoke is throttled at once, with Lambda's reason.
    lam.put_function_concurrency(FunctionName=name, ReservedConcurrentExecutions=0)
    try:
        lam.invoke(FunctionName=name, Payload="{}")
        raise AssertionError("an invoke at reserved concurrency 0 succeeded")
    except botocore.exceptions.ClientError as e:
        err = e.response
        check(err["Error"]["Code"] == "TooManyRequestsException"
              and err["ResponseMetadata"]["HTTPStatusCode"] == 429
              and err.get("Reason") == "ReservedFunctionConcurrentInvocationLimitExceeded",
              f"throttled at reserved 0: {err}")
    r = lam.delete_function_concurrency(FunctionName=name)
    check(r["ResponseMetadata"]["HTTPStatusCode"] == 204, f"delete function concurrency: {r}")
    check("ReservedConcurrentExecutions" not in lam.get_function_concurrency(FunctionName=name)
          and "Concurrency" not in lam.get_function(FunctionName=name), "reservation deleted")
    check(lam.get_account_settings()["AccountLimit"]["UnreservedConcurrentExecutions"] == limit,
          "the unreserved share is whole again")
    r = lam.invoke(FunctionName=name, Payload="{}")
    check(r["StatusCode"] == 200 and json.loads(r["Payload"].read())["init_type"] == "on-demand",
          f"invoke after the reservation is gone: {r}")

    # Provisioned concurrency on a version and an alias.
    v1 = lam.publish_version(FunctionName=name)["Version"]
    lam.create_alias(FunctionName=name, Name="live", FunctionVersion=v1)
    latest = error_code(lam.put_provisioned_concurrency_config, FunctionName=name, Qualifier="$LATEST",
                        ProvisionedConcurrentExecutions=1)
    check(latest == ("InvalidParameterValueException", 400), f"provisioned $LATEST refused: {latest}")
    nover = error_code(lam.put_provisioned_concurrency_config, FunctionName=name, Qualifier="9",
                       ProvisionedConcurrentExecutions=1)
    check(nover == ("ResourceNotFoundException", 404), f"provisioned on a missing version: {nover}")
    nocfg = error_code(lam.get_provisioned_concurrency_config, FunctionName=name, Qualifier=v1)
    check(nocfg == ("ProvisionedConcurrencyConfigNotFoundException", 404), f"no configuration yet: {nocfg}")
    check(lam.list_provisioned_concurrency_configs(FunctionName=name)["ProvisionedConcurrencyConfigs"] == [],
          "nothing listed yet")

    p = lam.put_provisioned_concurrency_config(FunctionName=name, Qualifier=v1, ProvisionedConcurrentExecutions=2)
    check(p["ResponseMetadata"]["HTTPStatusCode"] == 202 and p["RequestedProvisionedConcurrentExecutions"] == 2
          and p["Status"] in ("IN_PROGRESS", "READY") and p["LastModified"], f"put provisioned: {p}")
    ready = wait_provisioned_ready(lam, name, v1)
    check(ready["AllocatedProvisionedConcurrentExecutions"] == 2
          and ready["AvailableProvisionedConcurrentExecutions"] == 2
          and ready["RequestedProvisionedConcurrentExecutions"] == 2, f"provisioned READY: {ready}")
    g = lam.get_function(FunctionName=name, Qualifier=v1)
    check(g["Configuration"]["Version"] == v1 and "Concurrency" not in g, f"get the provisioned version: {g}")

    # The first invocations of the version take the provisioned sandboxes: no init on the way.
    for qualifier in [v1, "live"]:
        r = lam.invoke(FunctionName=name, Qualifier=qualifier, Payload="{}", LogType="Tail")
        body = json.loads(r["Payload"].read())
        log = base64.b64decode(r["LogResult"]).decode()
        check(r["ExecutedVersion"] == v1 and body == {"version": v1, "init_type": "provisioned-concurrency"},
              f"invoke {qualifier} on a provisioned sandbox: {r} {body}")
        check("Init Duration" not in log and "REPORT RequestId" in log, f"no init in the log of {qualifier}: {log}")

    # A second configuration (on the alias), List with pagination, the AWS CLI.
    lam.put_provisioned_concurrency_config(FunctionName=name, Qualifier="live", ProvisionedConcurrentExecutions=1)
    wait_provisioned_ready(lam, name, "live")
    listed = lam.list_provisioned_concurrency_configs(FunctionName=name)["ProvisionedConcurrencyConfigs"]
    arns = sorted(c["FunctionArn"].rsplit(":", 1)[1] for c in listed)
    check(arns == sorted([v1, "live"]) and all(c["Status"] == "READY" for c in listed), f"list: {listed}")
    page = lam.list_provisioned_concurrency_configs(FunctionName=name, MaxItems=1)
    check(len(page["ProvisionedConcurrencyConfigs"]) == 1 and "NextMarker" in page, f"list page: {page}")
    pages = [[c["FunctionArn"] for c in p["ProvisionedConcurrencyConfigs"]]
             for p in lam.get_paginator("list_provisioned_concurrency_configs").paginate(
                 FunctionName=name, PaginationConfig={"PageSize": 1})]
    check(len(pages) == 2 and sorted(sum(pages, [])) == sorted(c["FunctionArn"] for c in listed),
          f"list by pages: {pages}")
    aws = os.environ["AWS_CLI"]
    env = dict(os.environ, AWS_ACCESS_KEY_ID=CREDS["accessKeyId"],
               AWS_SECRET_ACCESS_KEY=CREDS["secretAccessKey"], AWS_DEFAULT_REGION="us-east-1")
    base = [aws, "--endpoint-url", REST, "--output", "json", "lambda"]
    out = subprocess.run(base + ["get-provisioned-concurrency-config", "--function-name", name,
                                 "--qualifier", "live"], env=env, check=True, capture_output=True)
    got = json.loads(out.stdout)
    check(got["Status"] == "READY" and got["RequestedProvisionedConcurrentExecutions"] == 1,
          f"aws cli get-provisioned-concurrency-config: {got}")
    out = subprocess.run(base + ["put-function-concurrency", "--function-name", name,
                                 "--reserved-concurrent-executions", "7"], env=env, check=True, capture_output=True)
    check(json.loads(out.stdout) == {"ReservedConcurrentExecutions": 7}, f"aws cli put-function-concurrency: {out.stdout}")
    out = subprocess.run(base + ["get-account-settings"], env=env, check=True, capture_output=True)
    got = json.loads(out.stdout)
    check(got["AccountLimit"]["UnreservedConcurrentExecutions"] == limit - 7, f"aws cli get-account-settings: {got}")
    lam.delete_function_concurrency(FunctionName=name)

    # Delete: 204, then not found; the list empties.
    r = lam.delete_provisioned_concurrency_config(FunctionName=name, Qualifier=v1)
    check(r["ResponseMetadata"]["HTTPStatusCode"] == 204, f"delete provisioned: {r}")
    gone = error_code(lam.get_provisioned_concurrency_config, FunctionName=name, Qualifier=v1)
    check(gone == ("ProvisionedConcurrencyConfigNotFoundException", 404), f"deleted configuration: {gone}")
    again = error_code(lam.delete_provisioned_concurrency_config, FunctionName=name, Qualifier=v1)
    check(again == ("ProvisionedConcurrencyConfigNotFoundException", 404), f"delete twice: {again}")
    lam.delete_provisioned_concurrency_config(FunctionName=name, Qualifier="live")
    check(lam.list_provisioned_concurrency_configs(FunctionName=name)["ProvisionedConcurrencyConfigs"] == [],
          "every configuration deleted")
    missing = error_code(lam.list_provisioned_concurrency_configs, FunctionName=prefix + "-missing")
    check(missing == ("ResourceNotFoundException", 404), f"list on a missing function: {missing}")
    lam.delete_function(FunctionName=name)
    print("concurrency passed", flush=True)


# ------------------------------------------------------------------ an independent SigV4 signer


def sign(method, path, body, key, secret, when=None, query="", extra=None):
    """Signs like botocore does; returns the headers. `when` defaults to now; `extra` are more
    headers to sign (lower-case names)."""
    when = when or datetime.datetime.now(datetime.timezone.utc)
    amz_date = when.strftime("%Y%m%dT%H%M%SZ")
    date = amz_date[:8]
    host = urllib.parse.urlsplit(REST).netloc
    headers = {"host": host, "x-amz-date": amz_date, **(extra or {})}
    signed = ";".join(sorted(headers))
    canonical_headers = "".join(f"{k}:{headers[k]}\n" for k in sorted(headers))
    canonical_path = urllib.parse.quote(path, safe="/~")
    canonical = "\n".join(
        [method, canonical_path, query, canonical_headers, signed, hashlib.sha256(body).hexdigest()]
    )
    scope = f"{date}/us-east-1/lambda/aws4_request"
    to_sign = "\n".join(["AWS4-HMAC-SHA256", amz_date, scope, hashlib.sha256(canonical.encode()).hexdigest()])
    k = ("AWS4" + secret).encode()
    for part in [date, "us-east-1", "lambda", "aws4_request"]:
        k = hmac.new(k, part.encode(), hashlib.sha256).digest()
    sig = hmac.new(k, to_sign.encode(), hashlib.sha256).hexdigest()
    headers["authorization"] = f"AWS4-HMAC-SHA256 Credential={key}/{scope}, SignedHeaders={signed}, Signature={sig}"
    return headers


def send(method, path, body, headers):
    req = urllib.request.Request(REST + path, data=body if body else None, method=method)
    for k, v in headers.items():
        if k != "host":
            req.add_header(k, v)
    try:
        with urllib.request.urlopen(req, timeout=60) as r:
            return r.status, r.headers.get("x-amzn-ErrorType"), r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.headers.get("x-amzn-ErrorType"), e.read()


def refusals(name):
    key, secret = CREDS["accessKeyId"], CREDS["secretAccessKey"]
    create = json.dumps({"FunctionName": name + "-forged", "Runtime": "python3.11", "Role": ROLE,
                         "Handler": "app.handler", "Code": {"ZipFile": base64.b64encode(zip_of(V2)).decode()}}).encode()
    routes = [
        ("GET", "/2015-03-31/functions/", b""),
        ("POST", "/2015-03-31/functions", create),
        ("GET", f"/2015-03-31/functions/{name}", b""),
        ("GET", f"/2015-03-31/functions/{name}/configuration", b""),
        ("PUT", f"/2015-03-31/functions/{name}/code", json.dumps({"ZipFile": base64.b64encode(zip_of(V2)).decode()}).encode()),
        ("PUT", f"/2015-03-31/functions/{name}/configuration", b'{"MemorySize": 512}'),
        ("POST", f"/2015-03-31/functions/{name}/invocations", b'{"forged": true}'),
        ("PUT", f"/2019-09-25/functions/{name}/event-invoke-config", b'{"MaximumRetryAttempts": 0}'),
        ("GET", f"/2019-09-25/functions/{name}/event-invoke-config", b""),
        ("POST", f"/2015-03-31/functions/{name}/versions", b"{}"),
        ("GET", f"/2015-03-31/functions/{name}/versions", b""),
        ("POST", f"/2015-03-31/functions/{name}/aliases", b'{"Name": "forged", "FunctionVersion": "$LATEST"}'),
        ("GET", f"/2015-03-31/functions/{name}/aliases", b""),
        ("GET", f"/2015-03-31/functions/{name}/aliases/forged", b""),
        ("PUT", f"/2015-03-31/functions/{name}/aliases/forged", b'{"Description": "forged"}'),
        ("DELETE", f"/2015-03-31/functions/{name}/aliases/forged", b""),
        ("PUT", f"/2017-10-31/functions/{name}/concurrency", b'{"ReservedConcurrentExecutions": 0}'),
        ("GET", f"/2019-09-30/functions/{name}/concurrency", b""),
        ("DELETE", f"/2017-10-31/functions/{name}/concurrency", b""),
        ("GET", "/2016-08-19/account-settings", b""),
        ("PUT", f"/2019-09-30/functions/{name}/provisioned-concurrency?Qualifier=1",
         b'{"ProvisionedConcurrentExecutions": 1}'),
        ("GET", f"/2019-09-30/functions/{name}/provisioned-concurrency?Qualifier=1", b""),
        ("GET", f"/2019-09-30/functions/{name}/provisioned-concurrency?List=ALL", b""),
        ("DELETE", f"/2019-09-30/functions/{name}/provisioned-concurrency?Qualifier=1", b""),
        ("DELETE", f"/2015-03-31/functions/{name}", b""),
        ("GET", "/2015-03-31/no-such-route", b""),
    ]
    before = client().get_function_configuration(FunctionName=name)
    old = datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(minutes=10)
    future = datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(minutes=10)
    for method, target, body in routes:
        path, _, query = target.partition("?")
        other_query = f"{query}&x=1" if query else "x=1"
        cases = {
            "no credentials": ({}, body, "UnrecognizedClientException"),
            "unknown key": (sign(method, path, body, "LAMNOSUCHKEY", secret, query=query), body,
                            "UnrecognizedClientException"),
            "wrong secret": (sign(method, path, body, key, secret + "x", query=query), body,
                             "InvalidSignatureException"),
            "tampered body": (sign(method, path, body, key, secret, query=query), body + b" ",
                              "InvalidSignatureException"),
            "expired date": (sign(method, path, body, key, secret, when=old, query=query), body,
                             "InvalidSignatureException"),
            "future date": (sign(method, path, body, key, secret, when=future, query=query), body,
                            "InvalidSignatureException"),
            "other path": (sign(method, path + "x", body, key, secret, query=query), body,
                           "InvalidSignatureException"),
            "other query": (sign(method, path, body, key, secret, query=other_query), body,
                            "InvalidSignatureException"),
        }
        for case, (headers, sent, kind) in cases.items():
            status, got, text = send(method, target, sent, headers)
            check(status == 403 and got == kind, f"{method} {target} {case}: refused as {kind}, got {status} {got} {text[:200]}")
    # Nothing forged took effect: the function is unchanged and still there, no forged function.
    lam = client()
    conf = lam.get_function_configuration(FunctionName=name)
    check(conf["RevisionId"] == before["RevisionId"] and conf["MemorySize"] == before["MemorySize"],
          f"forged updates had no effect: {conf}")
    check(error_code(lam.get_function, FunctionName=name + "-forged")[1] == 404, "forged create had no effect")
    check([v["Version"] for v in lam.list_versions_by_function(FunctionName=name)["Versions"]] == ["$LATEST"]
          and lam.list_aliases(FunctionName=name)["Aliases"] == [], "forged publish and alias had no effect")
    check("ReservedConcurrentExecutions" not in lam.get_function_concurrency(FunctionName=name)
          and lam.list_provisioned_concurrency_configs(FunctionName=name)["ProvisionedConcurrencyConfigs"] == [],
          "forged concurrency settings had no effect")
    # The same signer with the right key and date is accepted: the refusals are about the forgery.
    status, _, _ = send("GET", "/2015-03-31/functions/", b"", sign("GET", "/2015-03-31/functions/", b"", key, secret))
    check(status == 200, f"the independent signer is accepted: {status}")
    print("refusals passed", flush=True)


def replays(name):
    """A captured signed request is not a ticket: replayed as is, or with an x-amz-* header
    added that it did not sign, it is refused; botocore's own retries re-sign and pass."""
    key, secret = CREDS["accessKeyId"], CREDS["secretAccessKey"]
    path = f"/2015-03-31/functions/{name}/invocations"
    body = b'{"replay": "first"}'
    captured = sign("POST", path, body, key, secret)
    status, kind, text = send("POST", path, body, captured)
    check(status == 200, f"the signed invoke runs: {status} {kind} {text[:200]}")
    status, kind, text = send("POST", path, body, captured)
    check(status == 403 and kind == "InvalidSignatureException" and b"replay" in text,
          f"the exact replay is refused: {status} {kind} {text[:200]}")
    context = base64.b64encode(json.dumps({"custom": {"forged": True}}).encode()).decode()
    for header, value in [("X-Amz-Log-Type", "Tail"), ("X-Amz-Invocation-Type", "Event"),
                          ("X-Amz-Client-Context", context)]:
        sent = json.dumps({"replay": header}).encode()
        headers = sign("POST", path, sent, key, secret)
        headers[header] = value
        status, kind, text = send("POST", path, sent, headers)
        check(status == 403 and kind == "InvalidSignatureException" and header.lower().encode() in text,
              f"an unsigned {header} added is refused, naming it: {status} {kind} {text[:200]}")
    # Signed, the same headers are honoured.
    sent = b'{"replay": "signed"}'
    headers = sign("POST", path, sent, key, secret, extra={"x-amz-invocation-type": "Event"})
    status, kind, text = send("POST", path, sent, headers)
    check(status == 202, f"a signed X-Amz-Invocation-Type is honoured: {status} {kind} {text[:200]}")
    # A mutating call made twice by boto3 (two signatures) and reads repeated are fine.
    lam = client()
    for _ in range(2):
        lam.put_function_concurrency(FunctionName=name, ReservedConcurrentExecutions=5)
        lam.invoke(FunctionName=name, Payload=b'{"replay": "boto3"}', LogType="Tail")
    signed_get = sign("GET", f"/2015-03-31/functions/{name}", b"", key, secret)
    for _ in range(2):
        status, kind, text = send("GET", f"/2015-03-31/functions/{name}", b"", signed_get)
        check(status == 200, f"a repeated read is not a replay: {status} {kind} {text[:200]}")
    print("replays passed", flush=True)


def big_upload(name):
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_STORED) as z:
        z.writestr("app.py", "def handler(event, context):\n    return event\n")
        z.writestr("blob.bin", os.urandom(49 << 20))
    code = buf.getvalue()
    check(49 << 20 < len(code) < 50 << 20, f"zip size {len(code)}")
    lam = client()
    conf = lam.create_function(FunctionName=name, Runtime="python3.11", Role=ROLE, Handler="app.handler",
                               Code={"ZipFile": code})
    check(conf["CodeSize"] == len(code), f"code size {conf['CodeSize']}")
    print("big upload passed", flush=True)


def other_client(service, secret=None):
    """A boto3 client of another service than Lambda, pointed at the same REST front."""
    return boto3.client(
        service,
        endpoint_url=REST,
        region_name="us-east-1",
        aws_access_key_id=CREDS["accessKeyId"],
        aws_secret_access_key=secret or CREDS["secretAccessKey"],
        config=Config(retries={"max_attempts": 1}, connect_timeout=5, read_timeout=15),
    )


def unserved():
    """Services Lamina does not serve (yet): each client gets its own protocol's error, parsed by
    botocore into a ClientError with a code, quickly; a forged signature is refused in the same
    shape; Lambda on the same port still works."""
    started = time.monotonic()
    # AWS JSON 1.0 (X-Amz-Target: AmazonSQS.ListQueues) and 1.1 (AWSEvents.ListRules).
    code = error_code(other_client("sqs").list_queues)
    check(code == ("UnknownOperationException", 400), f"sqs (aws json 1.0) is an unknown operation: got {code}")
    code = error_code(other_client("events").list_rules)
    check(code == ("UnknownOperationException", 400), f"events (aws json 1.1) is an unknown operation: got {code}")
    # The query protocol (Action=ListTopics in a form body, an XML answer).
    code = error_code(other_client("sns").list_topics)
    check(code == ("InvalidAction", 400), f"sns (query) is an invalid action: got {code}")
    # The front checks the signature first, and refuses in the client's protocol.
    for service, call in [("sqs", "list_queues"), ("sns", "list_topics")]:
        c = other_client(service, secret="not-the-secret")
        code = error_code(getattr(c, call))
        check(code == ("InvalidSignatureException", 403), f"{service}: a forged signature is refused: got {code}")
    client().list_functions()
    elapsed = time.monotonic() - started
    check(elapsed < 30, f"every answer came at once: took {elapsed:.1f}s")
    print("unserved passed", flush=True)


def main():
    mode = sys.argv[1]
    if mode == "flow":
        flow(sys.argv[2])
    elif mode == "versions":
        versions(sys.argv[2])
    elif mode == "concurrency":
        concurrency(sys.argv[2], int(sys.argv[3]))
    elif mode == "refusals":
        refusals(sys.argv[2])
    elif mode == "replays":
        replays(sys.argv[2])
    elif mode == "fidelity":
        import lambda_fidelity  # beside this script: Publish, tags, layers, kept configuration

        lambda_fidelity.fidelity(sys.argv[2])
    elif mode == "unserved":
        unserved()
    elif mode == "big-upload":
        big_upload(sys.argv[2])
    elif mode == "expect-ok":
        client(sys.argv[2], sys.argv[3]).list_functions()
        print("key accepted", flush=True)
    elif mode == "expect-code":
        code = error_code(client(sys.argv[3], sys.argv[4]).list_functions)
        check(code == (sys.argv[2], 403), f"key refused with {sys.argv[2]}: got {code}")
    else:
        raise SystemExit(f"unknown mode {mode}")


if __name__ == "__main__":
    main()
