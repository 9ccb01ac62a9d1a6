"""A function without an execution role: it must find no AWS credentials in its environment and
nothing listening on the role endpoints' ports (tests/tests/roles.rs)."""
import os
import socket


def refused(port):
    s = socket.socket()
    s.settimeout(5)
    try:
        s.connect(("127.0.0.1", port))
        return False
    except ConnectionRefusedError:
        return True
    finally:
        s.close()


def handler(event, context):
    names = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL")
    return {
        "present": [n for n in names if n in os.environ],
        "aws_endpoint_refused": refused(9002),
        "extension_refused": refused(2773),
        "echo": event,
    }
