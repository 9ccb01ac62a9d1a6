"""Drives Lamina's HTTP gateway (function URLs and HTTP APIs) over real TCP with real clients:
Python's urllib, http.client and requests, curl, and boto3 for the function URL management API.
Run by tests/tests/http_gateway.rs, one scenario per cluster:

    python http_gateway.py frameworks   # Powertools and FastAPI/mangum apps through URLs and both
                                        # payload formats; a RESPONSE_STREAM URL streams
    python http_gateway.py events       # every event parsed with Powertools' typed models; response
                                        # mapping, CORS, AWS_IAM, limits, precedence, throttles, errors
    python http_gateway.py manage       # boto3: create/get/update/list/delete function URLs, errors

Environment: LAMINA_HTTP (HOST:PORT of the public listener), LAMINA_REST (http://HOST:PORT),
LAMINA_CREDENTIALS (the admin credentials file), LAMINA_HTTP_SETUP (JSON: what the Rust test
created: function names, URL ids, API ids). Lines `EVENT <kind> <json>` give the Rust test the events
to parse with the `aws_lambda_events` crate; `KEY=VALUE` lines give it values to check.
"""
import base64
import http.client
import json
import os
import re
import secrets
import socket
import string
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid

import boto3
import botocore
import requests
from aws_lambda_powertools.utilities.parser.models import (
    APIGatewayProxyEventModel,
    APIGatewayProxyEventV2Model,
    LambdaFunctionUrlModel,
)
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.config import Config
from botocore.credentials import Credentials

HTTP = os.environ["LAMINA_HTTP"]
HOST, PORT = HTTP.rsplit(":", 1)
REST = os.environ["LAMINA_REST"]
with open(os.environ["LAMINA_CREDENTIALS"]) as f:
    CREDS = json.load(f)
SETUP = json.loads(os.environ.get("LAMINA_HTTP_SETUP", "{}"))
ACCOUNT = "000000000000"
ROLE = "arn:aws:iam::000000000000:role/lamina"
SESSION = requests.Session()


def check(cond, what):
    if not cond:
        raise AssertionError(what)
    print("ok:", what.split(":")[0], flush=True)


def lam():
    return boto3.client(
        "lambda",
        endpoint_url=REST,
        region_name="us-east-1",
        aws_access_key_id=CREDS["accessKeyId"],
        aws_secret_access_key=CREDS["secretAccessKey"],
        config=Config(retries={"max_attempts": 1}, read_timeout=120),
    )


def url_host(url_id):
    return f"{url_id}.lambda-url.us-east-1.localhost"


def api_host(api_id):
    return f"{api_id}.execute-api.us-east-1.localhost"


def url_id_of(function_url):
    """The id of a FunctionUrl, checking its form: http://<32 chars>.lambda-url.us-east-1.localhost:PORT/"""
    m = re.fullmatch(r"http://([a-z0-9]{32})\.lambda-url\.us-east-1\.localhost:(\d+)/", function_url)
    assert m, f"FunctionUrl {function_url!r} is not http://<32-char id>.lambda-url.us-east-1.localhost:PORT/"
    assert m.group(2) == PORT, f"FunctionUrl {function_url!r} names port {m.group(2)}, the listener is on {PORT}"
    return m.group(1)


def get(host, path, method="GET", **kw):
    """requests to 127.0.0.1:PORT with `Host: host:PORT` (the virtual-host form)."""
    headers = {"Host": f"{host}:{PORT}", **kw.pop("headers", {})}
    kw.setdefault("timeout", 60)
    kw.setdefault("allow_redirects", False)
    return SESSION.request(method, f"http://{HTTP}{path}", headers=headers, **kw)


def via_path(resource_id, path, method="GET", **kw):
    """requests in the path form: http://127.0.0.1:PORT/<id>/path (no Host trick)."""
    kw.setdefault("timeout", 60)
    kw.setdefault("allow_redirects", False)
    return SESSION.request(method, f"http://{HTTP}/{resource_id}{path}", **kw)


def raw(method, path, headers, body=None, host=None):
    """http.client with full control of the header list (repeated headers); answers
    (status, [(name, value)...], body bytes)."""
    conn = http.client.HTTPConnection(HOST, int(PORT), timeout=60)
    conn.putrequest(method, path, skip_host=True, skip_accept_encoding=True)
    conn.putheader("Host", f"{host}:{PORT}" if host else HTTP)
    for k, v in headers:
        conn.putheader(k, v)
    if body is not None:
        conn.putheader("Content-Length", str(len(body)))
    conn.endheaders(body)
    resp = conn.getresponse()
    data = resp.read()
    out = (resp.status, resp.getheaders(), data)
    conn.close()
    return out


def header_values(headers, name):
    return [v for k, v in headers if k.lower() == name.lower()]


def echo_event(resp):
    assert resp.status_code == 200, f"{resp.status_code} {resp.headers} {resp.text[:2000]}"
    return resp.json()["event"]


def curl(*args):
    out = subprocess.run(["curl", "-sS", "--max-time", "60", *args], capture_output=True, text=True)
    assert out.returncode == 0, f"curl {args}: {out.returncode} {out.stderr}"
    return out.stdout


def curl_status(*args):
    """curl -i: (status, headers dict lower-cased, body)."""
    text = curl("-i", *args)  # text mode: \r\n arrives as \n
    head, _, body = text.partition("\n\n")
    lines = head.split("\n")
    status = int(lines[0].split()[1])
    headers = {}
    for line in lines[1:]:
        k, _, v = line.partition(":")
        headers.setdefault(k.strip().lower(), []).append(v.strip())
    return status, headers, body


def print_event(kind, event):
    print(f"EVENT {kind} {json.dumps(event, separators=(',', ':'))}", flush=True)


def check_time_fields(ctx, what):
    check(re.fullmatch(r"\d{2}/[A-Z][a-z]{2}/\d{4}:\d{2}:\d{2}:\d{2} \+0000", ctx.get("time", "")),
          f"{what} requestContext.time in API Gateway's format: {ctx.get('time')!r}")
    epoch = ctx.get("timeEpoch") or ctx.get("requestTimeEpoch")
    check(isinstance(epoch, int) and abs(epoch - time.time() * 1000) < 120_000,
          f"{what} requestContext.timeEpoch is now in ms: {epoch!r}")


# ---------------------------------------------------------------------------------- frameworks


def frameworks():
    pt_url, fa_url, stream_url = SETUP["pt_url"], SETUP["fa_url"], SETUP["stream_url"]

    # Powertools' LambdaFunctionUrlResolver, through the host form (requests) and the path form (urllib).
    r = get(url_host(pt_url), "/items/42?q=blue", headers={"User-Agent": "lamina-test/1"})
    check(r.status_code == 200 and r.headers["content-type"] == "application/json",
          f"powertools url GET: {r.status_code} {r.headers} {r.text}")
    check(r.json() == {"kind": "url", "item": "42", "q": "blue", "tags": None, "agent": "lamina-test/1",
                       "method": "GET", "path": "/items/42"}, f"powertools url GET body: {r.text}")
    with urllib.request.urlopen(urllib.request.Request(
            f"http://{HTTP}/{pt_url}/echo", method="POST", data=json.dumps({"a": [1, 2]}).encode(),
            headers={"Content-Type": "application/json"}), timeout=60) as resp:
        body = json.loads(resp.read())
        check(resp.status == 200 and body == {"kind": "url", "json": {"a": [1, 2]}, "base64": False},
              f"powertools url POST via urllib, path form: {resp.status} {body}")
    st, hs, body = raw("GET", "/teapot", [], host=url_host(pt_url))
    check(st == 418 and body == b"short and stout", f"powertools url custom response: {st} {body}")
    check(header_values(hs, "x-tea") == ["earl grey, assam"], f"2.0 headers comma-joined: {hs}")
    check(sorted(header_values(hs, "set-cookie")) == ["lid=on; Secure", "pot=1; Secure"],
          f"2.0 cookies become Set-Cookie headers: {hs}")
    r = get(url_host(pt_url), "/nowhere")
    check(r.status_code == 404 and r.json() == {"powertools": "not found"}, f"powertools 404: {r.status_code} {r.text}")

    # Powertools' APIGatewayRestResolver (payload 1.0) and APIGatewayHttpResolver (2.0) behind APIs.
    for kind, api in (("rest", SETUP["pt_v1"]), ("http", SETUP["pt_v2"])):
        r = get(api_host(api), "/items/7?q=z&tag=a&tag=b", headers={"User-Agent": "lamina-test/2"})
        check(r.status_code == 200, f"powertools {kind} API GET: {r.status_code} {r.text}")
        want = {"kind": kind, "item": "7", "q": "z", "tags": ["a", "b"] if kind == "rest" else None,
                "agent": "lamina-test/2", "method": "GET", "path": "/items/7"}
        check(r.json() == want, f"powertools {kind} API body: {r.text} != {want}")
        r = via_path(api, "/echo", "POST", json={"n": kind})
        check(r.status_code == 200 and r.json()["json"] == {"n": kind}, f"powertools {kind} API POST, path form: {r.text}")
        st, hs, body = raw("GET", "/teapot", [], host=api_host(api))
        check(st == 418 and body == b"short and stout", f"powertools {kind} custom response: {st}")
        tea = header_values(hs, "x-tea")
        # 1.0: Powertools answers with multiValueHeaders: two header lines; 2.0: one, comma-joined.
        want_tea = ["earl grey", "assam"] if kind == "rest" else ["earl grey, assam"]
        check(tea == want_tea, f"powertools {kind} X-Tea {tea} == {want_tea}: {hs}")
        check(sorted(header_values(hs, "set-cookie")) == ["lid=on; Secure", "pot=1; Secure"],
              f"powertools {kind} cookies: {hs}")

    # FastAPI behind mangum, through the URL and both payload formats.
    for kind, ident, host in (("url", fa_url, url_host(fa_url)), ("1.0", SETUP["fa_v1"], api_host(SETUP["fa_v1"])),
                              ("2.0", SETUP["fa_v2"], api_host(SETUP["fa_v2"]))):
        r = get(host, "/hello/bob?greeting=hi")
        check(r.status_code == 200 and r.json() == {"message": "hi, bob"}, f"fastapi {kind} GET: {r.status_code} {r.text}")
        r = via_path(ident, "/items", "POST", json={"name": "pen", "price": 1.5, "tags": ["x"]},
                     headers={"X-Request-Note": "n1"})
        check(r.status_code == 201 and r.json() == {"created": {"name": "pen", "price": 1.5, "tags": ["x"]},
                                                    "note": "n1", "total": 3.0},
              f"fastapi {kind} POST with a pydantic body: {r.status_code} {r.text}")
        r = get(host, "/items", "POST", json={"name": "pen"})
        check(r.status_code == 422 and r.json()["detail"][0]["loc"] == ["body", "price"],
              f"fastapi {kind} validation error: {r.status_code} {r.text}")
        st, hs, body = raw("GET", "/inspect?a=1&a=2&b=x%20y",
                           [("Cookie", "c1=v1; c2=v2"), ("X-Multi", "m")], host=host)
        got = json.loads(body)
        check(st == 200 and got["path"] == "/inspect" and got["query"] == [["a", "1"], ["a", "2"], ["b", "x y"]],
              f"fastapi {kind} query: {st} {got}")
        check(got["cookies"] == {"c1": "v1", "c2": "v2"} and got["x_multi"] == "m", f"fastapi {kind} cookies, headers: {got}")
        st, hs, body = raw("GET", "/cookies", [], host=host)
        check(st == 200 and body == b"cookies set", f"fastapi {kind} text: {st} {body}")
        cookies = sorted(c.split(";")[0] for c in header_values(hs, "set-cookie"))
        check(cookies == ["first=1", "second=2"], f"fastapi {kind} two Set-Cookie headers: {hs}")
        r = get(host, "/no/such/route")
        check(r.status_code == 404 and r.json() == {"detail": "Not Found"}, f"fastapi {kind} 404: {r.status_code} {r.text}")

    # curl, with the virtual host resolved by curl itself (*.localhost is loopback).
    st, hs, body = curl_status(f"http://{url_host(fa_url)}:{PORT}/hello/curl")
    check(st == 200 and json.loads(body) == {"message": "hello, curl"}, f"curl to the URL's own name: {st} {body}")
    st, hs, body = curl_status("-X", "POST", "-H", "Content-Type: application/json", "--data", '{"x":1}',
                               f"http://{api_host(SETUP['pt_v2'])}:{PORT}/echo")
    check(st == 200 and json.loads(body)["json"] == {"x": 1}, f"curl POST to an API's own name: {st} {body}")

    stream(stream_url)
    print("frameworks passed", flush=True)


def stream(url_id):
    """A RESPONSE_STREAM URL: status and headers from the prelude, chunked body, the first chunk in
    the client's hands well before the function writes the last one (it stamps the time)."""
    conn = http.client.HTTPConnection(HOST, int(PORT), timeout=60)
    sent = time.time()
    conn.request("GET", f"/{url_id}/streamed/path?pause=1500")
    resp = conn.getresponse()
    check(resp.status == 201, f"stream status from the prelude: {resp.status} {resp.getheaders()}")
    check(resp.getheader("x-streamed") == "yes" and resp.getheader("content-type", "").startswith("text/plain"),
          f"stream headers from the prelude: {resp.getheaders()}")
    check(resp.getheader("transfer-encoding") == "chunked", f"stream is chunked: {resp.getheaders()}")
    first = resp.read1(65536)
    first_at = time.time() * 1000
    rest = b""
    while True:
        chunk = resp.read1(65536)
        if not chunk:
            break
        rest += chunk
    conn.close()
    body = (first + rest).decode()
    check(body.startswith("first chunk for /streamed/path\n"), f"stream body: {body!r}")
    m = re.search(r"last chunk written at (\d+)\n$", body)
    check(m is not None, f"stream last chunk: {body!r}")
    last_written = int(m.group(1))
    check(b"last chunk" not in first, f"the first read holds only the first chunk: {first!r}")
    check(first_at < last_written - 700,
          f"first chunk received at {first_at:.0f}, {last_written - first_at:.0f} ms before the function wrote "
          f"the last one at {last_written} (request sent at {sent * 1000:.0f})")
    print(f"STREAM_FIRST_CHUNK_LEAD_MS={last_written - first_at:.0f}", flush=True)

    # The same through requests (stream=True) and curl.
    r = SESSION.get(f"http://{HTTP}/{url_id}/again?pause=800", stream=True, timeout=60)
    chunks = []
    for c in r.iter_content(chunk_size=None):
        chunks.append((time.time() * 1000, c))
    text = b"".join(c for _, c in chunks).decode()
    m = re.search(r"last chunk written at (\d+)\n$", text)
    check(r.status_code == 201 and m and chunks[0][0] < int(m.group(1)) - 300,
          f"requests streams too: {r.status_code} {[(round(t), c) for t, c in chunks]}")
    out = curl("-N", f"http://{url_host(url_id)}:{PORT}/curl?pause=10")
    check(out.startswith("first chunk for /curl\n") and "last chunk written at" in out, f"curl streamed: {out!r}")


# ---------------------------------------------------------------------------------- events


def events():
    client = lam()
    echo, iam_fn, throttled = SETUP["echo"], SETUP["echo_iam"], SETUP["echo_throttled"]
    cors = {"AllowOrigins": ["https://example.com"], "AllowMethods": ["GET", "POST"],
            "AllowHeaders": ["x-custom"], "ExposeHeaders": ["x-echo"], "MaxAge": 300}
    u = client.create_function_url_config(FunctionName=echo, AuthType="NONE", Cors=cors)
    check(u["ResponseMetadata"]["HTTPStatusCode"] == 201 and u["AuthType"] == "NONE", f"boto3 create URL: {u}")
    uid = url_id_of(u["FunctionUrl"])
    check(u["Cors"]["AllowOrigins"] == ["https://example.com"] and u["Cors"]["MaxAge"] == 300, f"cors kept: {u['Cors']}")
    print(f"ECHO_URL_ID={uid}", flush=True)
    url_events(uid)
    url_responses(uid)
    url_cors(uid)
    url_limits(uid, echo)
    url_iam(client, iam_fn)

    # A throttled function (reserved concurrency 0) answers 429.
    t = client.create_function_url_config(FunctionName=throttled, AuthType="NONE")
    client.put_function_concurrency(FunctionName=throttled, ReservedConcurrentExecutions=0)
    r = via_path(url_id_of(t["FunctionUrl"]), "/x")
    check(r.status_code == 429, f"throttled function -> 429: {r.status_code} {r.text}")

    v2_ctx = api_v2_events(SETUP["api_v2"], SETUP["api_bare"])
    api_v1_events(SETUP["api_v1"])
    # Last, so that a miss here leaves every other check run: an HTTP API's events carry the API
    # owner's account (only a NONE function URL's caller is "anonymous").
    check(v2_ctx["accountId"] == ACCOUNT, f"v2 requestContext.accountId is the account: {v2_ctx['accountId']!r}")
    print("events passed", flush=True)


def url_events(uid):
    ua = "lamina-events/1.0"
    st, hs, body = raw(
        "GET", "/some/path?a=1&a=2&b=x%20y",
        [("User-Agent", ua), ("X-Rep", "1"), ("X-Rep", "2"), ("X-Mixed-Case", "Yes"),
         ("Cookie", "c1=v1; c2=v2")],
        host=url_host(uid))
    check(st == 200, f"url GET: {st} {body[:500]}")
    ev = json.loads(body)["event"]
    print_event("url", ev)
    LambdaFunctionUrlModel.model_validate(ev)
    check(True, "the URL event parses with Powertools' LambdaFunctionUrlModel")
    check(ev["version"] == "2.0" and ev["routeKey"] == "$default", f"url version, routeKey: {ev}")
    check(ev["rawPath"] == "/some/path" and ev["rawQueryString"] == "a=1&a=2&b=x%20y", f"url rawPath, rawQueryString: {ev}")
    check(ev.get("cookies") == ["c1=v1", "c2=v2"], f"url cookies: {ev.get('cookies')}")
    headers = ev["headers"]
    check(all(k == k.lower() for k in headers), f"url headers lower-cased: {list(headers)}")
    check(headers.get("x-rep") == "1,2", f"repeated headers comma-joined: {headers.get('x-rep')!r}")
    check(headers.get("x-mixed-case") == "Yes" and headers.get("user-agent") == ua, f"url header values: {headers}")
    check(ev.get("queryStringParameters") == {"a": "1,2", "b": "x y"}, f"url queryStringParameters: {ev.get('queryStringParameters')}")
    ctx = ev["requestContext"]
    # A NONE URL's caller is anonymous (as in Lambda); a signed one's is the account (below).
    check(ctx["accountId"] == "anonymous" and ctx["apiId"] == uid and ctx["domainPrefix"] == uid, f"url requestContext ids: {ctx}")
    check(ctx["domainName"].split(":")[0] == url_host(uid), f"url domainName: {ctx['domainName']}")
    h = ctx["http"]
    check(h == {"method": "GET", "path": "/some/path", "protocol": "HTTP/1.1", "sourceIp": "127.0.0.1", "userAgent": ua},
          f"url requestContext.http: {h}")
    check(ctx["routeKey"] == "$default" and ctx["stage"] == "$default" and ctx["requestId"], f"url routeKey, stage, requestId: {ctx}")
    check_time_fields(ctx, "url")
    check(ev["isBase64Encoded"] is False and not ev.get("body"), f"url GET has no body: {ev.get('body')!r}")
    check("authorizer" not in ctx or not ctx["authorizer"], f"a NONE URL has no authorizer: {ctx.get('authorizer')}")

    # The path form: /<id> is stripped; through urllib.
    with urllib.request.urlopen(f"http://{HTTP}/{uid}/path/form?x=1", timeout=60) as resp:
        ev = json.loads(resp.read())["event"]
    check(ev["rawPath"] == "/path/form" and ev["rawQueryString"] == "x=1" and ev["requestContext"]["http"]["path"] == "/path/form",
          f"path form strips the id: {ev['rawPath']} {ev['rawQueryString']}")
    check(ev["requestContext"]["apiId"] == uid, f"path form apiId: {ev['requestContext']}")
    # Query strings: keys without a value, empty values, escapes (decoded in the parameters only).
    ev = echo_event(via_path(uid, "/q?flag&e=&x=%2F%20y"))
    check(ev["rawQueryString"] == "flag&e=&x=%2F%20y", f"rawQueryString kept as sent: {ev['rawQueryString']!r}")
    check(ev["queryStringParameters"] == {"flag": "", "e": "", "x": "/ y"}, f"queryStringParameters: {ev['queryStringParameters']}")
    # The root of the URL.
    ev = echo_event(via_path(uid, "/"))
    check(ev["rawPath"] == "/", f"path form root: {ev['rawPath']!r}")

    # A text body, then a binary one (base64 with isBase64Encoded).
    ev = echo_event(get(url_host(uid), "/post", "POST", json={"k": "v"}))
    print_event("url", ev)
    LambdaFunctionUrlModel.model_validate(ev)
    check(ev["body"] == '{"k": "v"}' and ev["isBase64Encoded"] is False, f"text body: {ev['body']!r} {ev['isBase64Encoded']}")
    check(ev["requestContext"]["http"]["method"] == "POST", "url POST method")
    blob = bytes(range(256)) * 4
    ev = echo_event(get(url_host(uid), "/bin", "POST", data=blob, headers={"Content-Type": "application/octet-stream"}))
    check(ev["isBase64Encoded"] is True and base64.b64decode(ev["body"]) == blob, f"binary body base64: {ev['body'][:40]!r}")


def url_responses(uid):
    r = get(url_host(uid), "/raw")
    check(r.status_code == 200 and r.headers["content-type"].startswith("application/json")
          and r.json() == {"plain": True, "items": [1, 2, 3]}, f"a non-response result is a 200 JSON body: {r.status_code} {r.headers} {r.text}")
    r = get(url_host(uid), "/binary")
    check(r.status_code == 200 and r.content == bytes(range(256)) and r.headers["content-type"] == "application/octet-stream",
          f"isBase64Encoded responses are decoded: {r.status_code} {r.headers} {r.content[:20]!r}")
    st, hs, body = raw("GET", "/cookies", [], host=url_host(uid))
    check(st == 201 and body == b"cookies" and header_values(hs, "x-single") == ["one"], f"mapped response: {st} {hs} {body}")
    check(sorted(header_values(hs, "set-cookie")) == ["c1=1; Path=/", "c2=2"], f"cookies -> Set-Cookie: {hs}")
    r = get(url_host(uid), "/redirect")
    check(r.status_code == 302 and r.headers["location"] == "/elsewhere", f"redirect: {r.status_code} {r.headers}")
    r = get(url_host(uid), "/fail")
    check(r.status_code == 502, f"a function error answers 502: {r.status_code} {r.text}")
    check("failed on purpose" not in r.text, f"the 502 does not leak the function's error: {r.text}")


def url_cors(uid):
    marker = f"/cors-probe-{uuid.uuid4().hex}"
    st, hs, body = raw("OPTIONS", marker, [("Origin", "https://example.com"), ("Access-Control-Request-Method", "POST"),
                                          ("Access-Control-Request-Headers", "x-custom")], host=url_host(uid))
    h = {k.lower(): v for k, v in hs}
    check(st in (200, 204), f"preflight answered: {st} {hs} {body}")
    check(h.get("access-control-allow-origin") == "https://example.com", f"preflight allow-origin: {hs}")
    check("POST" in h.get("access-control-allow-methods", "").upper(), f"preflight allow-methods: {hs}")
    check("x-custom" in h.get("access-control-allow-headers", "").lower(), f"preflight allow-headers: {hs}")
    check(h.get("access-control-max-age") == "300", f"preflight max-age: {hs}")
    print(f"PREFLIGHT_MARKER={marker}", flush=True)
    r = get(url_host(uid), "/cors-get", headers={"Origin": "https://example.com"})
    check(r.status_code == 200 and r.headers.get("access-control-allow-origin") == "https://example.com",
          f"an allowed origin's response carries allow-origin: {r.headers}")
    check("x-echo" in r.headers.get("access-control-expose-headers", "").lower(), f"expose-headers: {r.headers}")
    r = get(url_host(uid), "/cors-get", headers={"Origin": "https://evil.example"})
    check(r.status_code == 200 and r.headers.get("access-control-allow-origin") in (None, ""),
          f"another origin gets no allow-origin: {r.headers}")


def send_oversized(host, path, size):
    """POST `size` bytes; the server may answer 413 before reading them all (and close)."""
    s = socket.create_connection((HOST, int(PORT)), timeout=60)
    s.sendall(f"POST {path} HTTP/1.1\r\nHost: {host}:{PORT}\r\nContent-Type: application/octet-stream\r\n"
              f"Content-Length: {size}\r\nConnection: close\r\n\r\n".encode())
    chunk = b"x" * 65536
    sent = 0
    try:
        while sent < size:
            n = min(len(chunk), size - sent)
            s.sendall(chunk[:n])
            sent += n
    except (BrokenPipeError, ConnectionResetError):
        pass
    data = b""
    try:
        while True:
            d = s.recv(65536)
            if not d:
                break
            data += d
    except (ConnectionResetError, socket.timeout):
        pass
    s.close()
    return data


def url_limits(uid, echo):
    data = send_oversized(url_host(uid), "/big", 6 * 1024 * 1024 + 1024)
    check(data.startswith(b"HTTP/1.1 413"), f"a body over 6 MB answers 413: {data[:300]!r}")
    # Just under the limit is served (base64 of a binary body must still fit: send text).
    r = get(url_host(uid), "/almost", "POST", data=b"y" * (5 * 1024 * 1024), headers={"Content-Type": "text/plain"})
    check(r.status_code == 200 and len(r.json()["event"]["body"]) == 5 * 1024 * 1024, f"a 5 MB body is served: {r.status_code}")

    # Bad input: malformed HTTP and oversized headers get 4xx answers, never a crash.
    for what, request, codes in (
        ("malformed HTTP", b"NOT HTTP AT ALL\r\n\r\n", (b"400",)),
        ("a bad request line", b"GET /x HTTP/9.9\r\nHost: x\r\n\r\n", (b"400", b"505")),
        ("40 KB of headers", f"GET /x HTTP/1.1\r\nHost: {url_host(uid)}:{PORT}\r\nX-Big: {'a' * 40960}\r\n\r\n".encode(),
         (b"431", b"400")),
    ):
        s = socket.create_connection((HOST, int(PORT)), timeout=30)
        s.sendall(request)
        data = b""
        try:
            while b"\r\n" not in data:
                d = s.recv(4096)
                if not d:
                    break
                data += d
        except ConnectionResetError:
            pass
        s.close()
        check(any(data.startswith(b"HTTP/1.1 " + c) for c in codes), f"{what} -> {codes}: {data[:200]!r}")

    # Many idle connections do not stop the gateway from serving.
    import resource
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, 8192), hard))
    idle = [socket.create_connection((HOST, int(PORT)), timeout=30) for _ in range(2000)]
    try:
        r = requests.get(f"http://{HTTP}/{uid}/after-idle", timeout=30)
        check(r.status_code == 200, f"served beside 2000 idle connections: {r.status_code}")
    finally:
        for c in idle:
            c.close()

    # Unknown URL ids: 403 in Lambda's shape, naming nothing that exists.
    other = "".join(secrets.choice(string.ascii_lowercase + string.digits) for _ in range(32))
    for r in (get(url_host(other), "/x"), via_path(other, "/x")):
        check(r.status_code == 403, f"unknown URL id -> 403: {r.status_code} {r.text}")
        r.json()
        check(uid not in r.text and echo not in r.text and other not in r.text, f"the 403 names nothing: {r.text}")
    # A host that is neither form, and a path that is no id.
    r = SESSION.get(f"http://{HTTP}/", timeout=60)
    check(r.status_code in (403, 404) and uid not in r.text, f"the bare listener root: {r.status_code} {r.text}")
    r = get("example.com", "/x")
    check(r.status_code in (403, 404) and uid not in r.text, f"a foreign Host: {r.status_code} {r.text}")
    # Management routes are not on the public listener.
    r = SESSION.get(f"http://{HTTP}/2015-03-31/functions/", timeout=60)
    check(r.status_code in (403, 404) and echo not in r.text, f"no management API on the public port: {r.status_code} {r.text}")


def signed(method, uid, path, body=b"", key=None, secret=None, headers=None):
    """A request signed with SigV4 (service lambda, us-east-1) for the URL's own host name."""
    url = f"http://{url_host(uid)}:{PORT}{path}"
    req = AWSRequest(method=method, url=url, data=body, headers=dict(headers or {}))
    creds = Credentials(key or CREDS["accessKeyId"], secret or CREDS["secretAccessKey"])
    SigV4Auth(creds, "lambda", "us-east-1").add_auth(req)
    return dict(req.headers.items())


def url_iam(client, fn):
    u = client.create_function_url_config(FunctionName=fn, AuthType="AWS_IAM")
    uid = url_id_of(u["FunctionUrl"])
    check(u["AuthType"] == "AWS_IAM", f"AWS_IAM URL: {u}")
    r = get(url_host(uid), "/iam")
    check(r.status_code == 403, f"AWS_IAM refuses unsigned: {r.status_code} {r.text}")
    check(fn not in r.text, f"the refusal names nothing: {r.text}")
    r = via_path(uid, "/iam")
    check(r.status_code == 403, f"AWS_IAM refuses unsigned, path form: {r.status_code}")
    h = signed("GET", uid, "/iam", secret="not-the-secret-" + "x" * 25)
    r = get(url_host(uid), "/iam", headers=h)
    check(r.status_code == 403, f"AWS_IAM refuses a wrong secret: {r.status_code} {r.text}")
    h = signed("GET", uid, "/iam", key="AKIANOSUCHKEY0000000")
    r = get(url_host(uid), "/iam", headers=h)
    check(r.status_code == 403, f"AWS_IAM refuses an unknown key: {r.status_code} {r.text}")
    h = signed("GET", uid, "/signed-for-this")
    r = get(url_host(uid), "/but-sent-that", headers=h)
    check(r.status_code == 403, f"AWS_IAM refuses a signature over another path: {r.status_code}")
    h = signed("POST", uid, "/post", body=b'{"a":1}', headers={"Content-Type": "application/json"})
    r = get(url_host(uid), "/post", "POST", data=b'{"a":2}', headers=h)
    check(r.status_code == 403, f"AWS_IAM refuses a tampered body: {r.status_code}")

    h = signed("GET", uid, "/iam?x=1")
    r = get(url_host(uid), "/iam?x=1", headers=h)
    ev = echo_event(r)
    check(True, "AWS_IAM serves a request signed with the admin key")
    print_event("url", ev)
    LambdaFunctionUrlModel.model_validate(ev)
    iam = (ev["requestContext"].get("authorizer") or {}).get("iam") or {}
    check(iam.get("accessKey") == CREDS["accessKeyId"], f"authorizer.iam.accessKey: {ev['requestContext'].get('authorizer')}")
    check(iam.get("accountId") == ACCOUNT and ev["requestContext"]["accountId"] == ACCOUNT, f"authorizer.iam.accountId: {iam}")
    h = signed("POST", uid, "/post", body=b'{"a":1}', headers={"Content-Type": "application/json"})
    ev = echo_event(get(url_host(uid), "/post", "POST", data=b'{"a":1}', headers=h))
    check(ev["body"] == '{"a":1}', f"a signed POST is served with its body: {ev['body']!r}")


def api_v2_events(api, bare):
    ev = echo_event(get(api_host(api), "/items/42?x=1", headers={"X-Rep": "r"}))
    print_event("v2", ev)
    APIGatewayProxyEventV2Model.model_validate(ev)
    check(True, "the 2.0 API event parses with Powertools' APIGatewayProxyEventV2Model")
    check(ev["version"] == "2.0" and ev["routeKey"] == "GET /items/{id}" and ev["requestContext"]["routeKey"] == "GET /items/{id}",
          f"v2 routeKey: {ev['routeKey']}")
    check(ev.get("pathParameters") == {"id": "42"}, f"v2 pathParameters: {ev.get('pathParameters')}")
    check(ev["rawPath"] == "/items/42" and ev["rawQueryString"] == "x=1", f"v2 rawPath: {ev['rawPath']}")
    ctx = ev["requestContext"]
    check(ctx["apiId"] == api and ctx["domainPrefix"] == api and ctx["domainName"].split(":")[0] == api_host(api)
          and ctx["stage"] == "$default", f"v2 requestContext: {ctx}")
    check(ctx["http"]["method"] == "GET" and ctx["http"]["sourceIp"] == "127.0.0.1", f"v2 http: {ctx['http']}")
    check_time_fields(ctx, "v2")
    ev = echo_event(via_path(api, "/items/43"))
    check(ev["routeKey"] == "GET /items/{id}" and ev["rawPath"] == "/items/43", f"v2 path form: {ev['routeKey']} {ev['rawPath']}")

    # Route precedence: literal > {var} > {proxy+}; a method beats ANY; $default last.
    for method, path, want, params in (
        ("GET", "/items/special", "GET /items/special", None),
        ("GET", "/items/9", "GET /items/{id}", {"id": "9"}),
        ("POST", "/items/9", "ANY /items/{id}", {"id": "9"}),
        ("GET", "/items/a/b/c", "ANY /items/{proxy+}", {"proxy": "a/b/c"}),
        ("DELETE", "/elsewhere/x", "$default", None),
    ):
        ev = echo_event(get(api_host(api), path, method))
        check(ev["routeKey"] == want and (ev.get("pathParameters") or None) == params,
              f"{method} {path} -> {want} {params}: got {ev['routeKey']} {ev.get('pathParameters')}")

    r = get(api_host(api), "/raw")
    check(r.status_code == 200 and r.json() == {"plain": True, "items": [1, 2, 3]}, f"v2 raw result: {r.status_code} {r.text}")
    r = get(api_host(api), "/x/fail")
    check(r.status_code == 502 and r.json() == {"message": "Internal Server Error"}, f"v2 function error -> 502: {r.status_code} {r.text}")

    data = send_oversized(api_host(api), "/items/big", 6 * 1024 * 1024 + 1024)
    check(data.startswith(b"HTTP/1.1 413"), f"an API request over 6 MB answers 413: {data[:300]!r}")

    # A throttled route (rate 1/s, burst 1).
    codes = []
    for _ in range(6):
        r = get(api_host(api), "/limited")
        codes.append(r.status_code)
        if r.status_code == 429:
            check(r.json() == {"message": "Too Many Requests"}, f"throttle body: {r.text}")
    check(codes[0] == 200 and 429 in codes, f"route throttle answers 429 past its burst: {codes}")

    # Unknown APIs and routes: 404 {"message":"Not Found"}, naming nothing.
    other = "".join(secrets.choice(string.ascii_lowercase + string.digits) for _ in range(10))
    for r in (get(api_host(other), "/items/1"), via_path(other, "/items/1")):
        check(r.status_code == 404 and r.json() == {"message": "Not Found"}, f"unknown API -> 404: {r.status_code} {r.text}")
    r = get(api_host(bare), "/only")
    check(r.status_code == 200, f"the bare API's one route: {r.status_code} {r.text}")
    for method, path in (("GET", "/nothing"), ("POST", "/only")):
        r = get(api_host(bare), path, method)
        check(r.status_code == 404 and r.json() == {"message": "Not Found"}, f"unknown route {method} {path} -> 404: {r.status_code} {r.text}")
    return ctx


def api_v1_events(api):
    st, hs, body = raw("GET", "/v1/7?q=a&q=b&r=1", [("X-Rep", "1"), ("X-Rep", "2"), ("User-Agent", "ua-v1"),
                                                   ("Cookie", "k=v")], host=api_host(api))
    check(st == 200, f"v1 GET: {st} {body[:300]}")
    ev = json.loads(body)["event"]
    print_event("v1", ev)
    APIGatewayProxyEventModel.model_validate(ev)
    check(True, "the 1.0 API event parses with Powertools' APIGatewayProxyEventModel")
    check(ev["resource"] == "/v1/{id}" and ev["path"] == "/v1/7" and ev["httpMethod"] == "GET", f"v1 resource, path, method: {ev}")
    mvh = {k.lower(): v for k, v in ev["multiValueHeaders"].items()}
    hd = {k.lower(): v for k, v in ev["headers"].items()}
    check(mvh.get("x-rep") == ["1", "2"] and hd.get("x-rep") == "2", f"v1 headers (last) and multiValueHeaders (all): {hd} {mvh}")
    check(hd.get("user-agent") == "ua-v1" and hd.get("cookie") == "k=v", f"v1 headers: {hd}")
    check(ev["queryStringParameters"] == {"q": "b", "r": "1"}, f"v1 queryStringParameters (last value): {ev['queryStringParameters']}")
    check(ev["multiValueQueryStringParameters"] == {"q": ["a", "b"], "r": ["1"]}, f"v1 multiValueQueryStringParameters: {ev['multiValueQueryStringParameters']}")
    check(ev["pathParameters"] == {"id": "7"} and ev.get("stageVariables") is None, f"v1 pathParameters, stageVariables: {ev}")
    check(ev.get("body") is None and ev["isBase64Encoded"] is False, f"v1 GET body: {ev.get('body')!r}")
    ctx = ev["requestContext"]
    check(ctx["resourcePath"] == "/v1/{id}" and ctx["httpMethod"] == "GET" and ctx["stage"] == "$default"
          and ctx["apiId"] == api and ctx["accountId"] == ACCOUNT and ctx["requestId"], f"v1 requestContext: {ctx}")
    check(ctx["identity"]["sourceIp"] == "127.0.0.1", f"v1 identity: {ctx['identity']}")

    ev = echo_event(via_path(api, "/other/8", "POST", data="plain text", headers={"Content-Type": "text/plain"}))
    print_event("v1", ev)
    APIGatewayProxyEventModel.model_validate(ev)
    check(ev["resource"] == "/{proxy+}" and ev["pathParameters"] == {"proxy": "other/8"} and ev["path"] == "/other/8",
          f"v1 greedy route: {ev['resource']} {ev['pathParameters']} {ev['path']}")
    check(ev["body"] == "plain text" and ev["isBase64Encoded"] is False and ev["queryStringParameters"] is None,
          f"v1 POST body: {ev['body']!r} {ev['queryStringParameters']!r}")

    st, hs, body = raw("GET", "/x/cookies", [], host=api_host(api))
    check(st == 201 and body == b"cookies", f"v1 mapped response: {st} {body}")
    check(header_values(hs, "x-multi") == ["a", "b"], f"v1 multiValueHeaders are honoured: {hs}")
    check(sorted(header_values(hs, "set-cookie")) == ["m1=1", "m2=2"], f"v1 Set-Cookie from multiValueHeaders: {hs}")
    check(header_values(hs, "x-single") == ["one"], f"v1 headers: {hs}")
    r = get(api_host(api), "/x/binary")
    check(r.status_code == 200 and r.content == bytes(range(256)), f"v1 base64 response: {r.status_code}")
    r = get(api_host(api), "/x/fail")
    check(r.status_code == 502, f"v1 function error -> 502: {r.status_code} {r.text}")


# ---------------------------------------------------------------------------------- manage


def manage():
    client = lam()
    fn, bare = SETUP["managed"], SETUP["no_url"]
    c = client.create_function_url_config(FunctionName=fn, AuthType="NONE")
    check(c["ResponseMetadata"]["HTTPStatusCode"] == 201, f"create: {c}")
    uid = url_id_of(c["FunctionUrl"])
    check(c["FunctionArn"] == f"arn:aws:lambda:us-east-1:{ACCOUNT}:function:{fn}", f"FunctionArn: {c['FunctionArn']}")
    check(c["AuthType"] == "NONE" and c.get("InvokeMode", "BUFFERED") == "BUFFERED", f"defaults: {c}")
    check(re.match(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}", c["CreationTime"]), f"CreationTime ISO-8601: {c['CreationTime']}")
    try:
        client.create_function_url_config(FunctionName=fn, AuthType="NONE")
        raise AssertionError("a second create succeeded")
    except client.exceptions.ResourceConflictException as e:
        check(e.response["ResponseMetadata"]["HTTPStatusCode"] == 409, f"second create: ResourceConflictException: {e}")
    g = client.get_function_url_config(FunctionName=fn)
    check(g["FunctionUrl"] == c["FunctionUrl"] and g["AuthType"] == "NONE" and g["LastModifiedTime"], f"get: {g}")
    check(via_path(uid, "/").status_code == 200, "the new URL serves")

    u = client.update_function_url_config(FunctionName=fn, AuthType="AWS_IAM",
                                          Cors={"AllowOrigins": ["*"], "AllowMethods": ["*"]})
    check(u["AuthType"] == "AWS_IAM" and u["Cors"]["AllowOrigins"] == ["*"] and u["FunctionUrl"] == c["FunctionUrl"],
          f"update: {u}")
    check(via_path(uid, "/").status_code == 403, "after the update to AWS_IAM, unsigned requests are refused")
    u = client.update_function_url_config(FunctionName=fn, AuthType="NONE", InvokeMode="BUFFERED")
    check(u["AuthType"] == "NONE" and u["Cors"]["AllowOrigins"] == ["*"], f"an update without Cors keeps it: {u}")
    check(via_path(uid, "/").status_code == 200, "NONE again: served")

    # A URL for an alias beside the unqualified one.
    v = client.publish_version(FunctionName=fn)
    client.create_alias(FunctionName=fn, Name="live", FunctionVersion=v["Version"])
    a = client.create_function_url_config(FunctionName=fn, Qualifier="live", AuthType="NONE")
    aid = url_id_of(a["FunctionUrl"])
    check(aid != uid and a["FunctionArn"].endswith(f":function:{fn}:live"), f"alias URL: {a}")
    r = via_path(aid, "/")
    check(r.status_code == 200 and r.json()["arn"].endswith(f":function:{fn}:live"),
          f"the alias URL invokes the alias: {r.status_code} {r.text[:300]}")
    r = via_path(uid, "/")
    check(r.status_code == 200 and r.json()["arn"].endswith(f":function:{fn}"), f"the unqualified URL: {r.text[:300]}")
    lst = client.list_function_url_configs(FunctionName=fn)["FunctionUrlConfigs"]
    check(sorted(x["FunctionUrl"] for x in lst) == sorted([c["FunctionUrl"], a["FunctionUrl"]]), f"list: {lst}")

    for what, call in (
        ("get of a function without a URL", lambda: client.get_function_url_config(FunctionName=bare)),
        ("create for a missing function", lambda: client.create_function_url_config(FunctionName="no-such-fn-http", AuthType="NONE")),
        ("get of a missing function", lambda: client.get_function_url_config(FunctionName="no-such-fn-http")),
        ("delete of none", lambda: client.delete_function_url_config(FunctionName=bare)),
    ):
        try:
            call()
            raise AssertionError(f"{what} succeeded")
        except client.exceptions.ResourceNotFoundException as e:
            check(e.response["ResponseMetadata"]["HTTPStatusCode"] == 404, f"{what}: ResourceNotFoundException")
    for what, kwargs in (("a bad AuthType", {"AuthType": "OPEN"}),
                         ("a bad InvokeMode", {"AuthType": "NONE", "InvokeMode": "FAST"})):
        try:
            client.create_function_url_config(FunctionName=bare, **kwargs)
            raise AssertionError(f"{what} was accepted")
        except (client.exceptions.InvalidParameterValueException, botocore.exceptions.ClientError) as e:
            code = e.response["Error"]["Code"]
            check(code in ("InvalidParameterValueException", "ValidationException"), f"{what}: {code}")

    d = client.delete_function_url_config(FunctionName=fn, Qualifier="live")
    check(d["ResponseMetadata"]["HTTPStatusCode"] == 204, f"delete: {d['ResponseMetadata']}")
    try:
        client.get_function_url_config(FunctionName=fn, Qualifier="live")
        raise AssertionError("get after delete succeeded")
    except client.exceptions.ResourceNotFoundException:
        check(True, "get after delete: ResourceNotFoundException")
    check(via_path(aid, "/").status_code == 403, "a deleted URL answers 403")
    check(via_path(uid, "/").status_code == 200, "the other URL still serves")
    print(f"MANAGED_URL_ID={uid}", flush=True)
    print("manage passed", flush=True)


if __name__ == "__main__":
    {"frameworks": frameworks, "events": events, "manage": manage}[sys.argv[1]]()
