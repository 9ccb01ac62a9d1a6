"""boto3's invoke_with_response_stream against Lamina's REST API (event-stream framing).

Usage: response_stream.py FUNCTION PAYLOAD_JSON. Prints one JSON line per event as it arrives:
{"chunk": TEXT, "at_ms": EPOCH_MS} for each PayloadChunk, then {"complete": {...}} with the
InvokeComplete fields, and first a {"start": {...}} line with the response metadata.
"""
import json
import os
import sys
import time

import boto3
from botocore.config import Config

with open(os.environ["LAMINA_CREDENTIALS"]) as f:
    CREDS = json.load(f)

lam = boto3.client(
    "lambda",
    endpoint_url=os.environ["LAMINA_REST"],
    region_name="us-east-1",
    aws_access_key_id=CREDS["accessKeyId"],
    aws_secret_access_key=CREDS["secretAccessKey"],
    config=Config(retries={"max_attempts": 1}, read_timeout=120),
)
resp = lam.invoke_with_response_stream(
    FunctionName=sys.argv[1], Payload=sys.argv[2].encode(), LogType="Tail"
)
print(json.dumps({"start": {
    "status": resp["StatusCode"],
    "executed_version": resp.get("ExecutedVersion"),
    "request_id": resp["ResponseMetadata"]["RequestId"],
}}), flush=True)
for event in resp["EventStream"]:
    if "PayloadChunk" in event:
        text = event["PayloadChunk"]["Payload"].decode()
        print(json.dumps({"chunk": text, "at_ms": int(time.time() * 1000)}), flush=True)
    elif "InvokeComplete" in event:
        print(json.dumps({"complete": event["InvokeComplete"]}), flush=True)
