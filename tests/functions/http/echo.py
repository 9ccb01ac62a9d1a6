"""Returns what the HTTP gateway sent, for the tests to parse with typed event models; a few paths
answer in the other shapes a function may answer in (tests/tests/http_gateway.rs)."""
import base64
import json


def handler(event, context):
    path = event.get("rawPath") or event.get("path") or ""
    # One log line per invocation: the tests look for it (a CORS preflight must leave none).
    print("ECHO", path, flush=True)
    last = path.rstrip("/").rsplit("/", 1)[-1]
    if last == "fail":
        raise RuntimeError("the function failed on purpose")
    if last == "raw":
        # Not a response object: a 2.0 integration answers 200 application/json with it as body.
        return {"plain": True, "items": [1, 2, 3]}
    if last == "binary":
        return {
            "statusCode": 200,
            "headers": {"content-type": "application/octet-stream"},
            "body": base64.b64encode(bytes(range(256))).decode(),
            "isBase64Encoded": True,
        }
    if last == "cookies":
        return {
            "statusCode": 201,
            "headers": {"content-type": "text/plain", "x-single": "one"},
            "multiValueHeaders": {"X-Multi": ["a", "b"], "Set-Cookie": ["m1=1", "m2=2"]},
            "cookies": ["c1=1; Path=/", "c2=2"],
            "body": "cookies",
        }
    if last == "redirect":
        return {"statusCode": 302, "headers": {"location": "/elsewhere"}, "body": ""}
    return {
        "statusCode": 200,
        "headers": {"content-type": "application/json", "x-echo": "yes"},
        "body": json.dumps(
            {"event": event, "function": context.function_name, "arn": context.invoked_function_arn}
        ),
    }
