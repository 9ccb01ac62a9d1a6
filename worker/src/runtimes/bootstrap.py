"""Lamina's Python runtime bootstrap: a stdlib-only Lambda Runtime API client.

Run as `python3.11 /var/runtime/bootstrap.py` inside the sandbox. Reads AWS_LAMBDA_RUNTIME_API
(host:port), _HANDLER (`path/module.func`) and LAMBDA_TASK_ROOT (default /var/task), imports the
handler once, then loops: GET next, call the handler, POST the response or the error. Error shapes,
messages and log lines follow AWS's Python runtime (awslambdaric).
"""

# Imports are on every cold start's path: http.client (email, ssl: ~20 ms), decimal and traceback
# are not imported here; `RuntimeClient` speaks HTTP/1.1 on a plain socket, the others are imported
# where needed.
import importlib
import json
import logging
import os
import socket
import sys
import time

API_PREFIX = "/2018-06-01/runtime"
_OWN_FILES = {__file__, os.path.abspath(__file__)}
ERROR_TYPE_HEADER = "Lambda-Runtime-Function-Error-Type"


class Response:
    """Status and headers of one Runtime API response (header names case-insensitive)."""

    def __init__(self, status, headers):
        self.status = status
        self._headers = headers

    def getheader(self, name, default=None):
        return self._headers.get(name.lower(), default)


def _header_value(value):
    """A header value without CR, LF or other control characters (no header injection)."""
    return "".join(c for c in str(value) if c >= " " and c != "\x7f")


class RuntimeClient:
    """One keep-alive HTTP/1.1 connection to the Runtime API, reconnected when the server closed it.

    A small client on a plain socket: the worker's server always sends Content-Length (chunked is
    understood too); http.client would cost ~20 ms of imports on every cold start.
    """

    def __init__(self, address):
        host, _, port = address.rpartition(":")
        self.host = host or "127.0.0.1"
        self.port = int(port)
        self.sock = None
        self.rfile = None

    def _connect(self):
        sock = socket.create_connection((self.host, self.port))
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.sock = sock
        self.rfile = sock.makefile("rb")

    def close(self):
        for f in (self.rfile, self.sock):
            if f is not None:
                try:
                    f.close()
                except OSError:
                    pass
        self.sock = None
        self.rfile = None

    def _line(self):
        line = self.rfile.readline(65537)
        if len(line) > 65536:
            raise ConnectionError("runtime api sent a header line over 64 KB")
        return line

    def _exchange(self, method, path, body, headers):
        lines = ["%s %s HTTP/1.1" % (method, path), "Host: %s:%d" % (self.host, self.port)]
        for name, value in headers.items():
            lines.append("%s: %s" % (name, _header_value(value)))
        if body is None:
            body = b""
        elif isinstance(body, str):
            body = body.encode("utf-8")
        if method != "GET" or body:
            lines.append("Content-Length: %d" % len(body))
        head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
        if len(body) <= 65536:
            self.sock.sendall(head + body)
        else:
            self.sock.sendall(head)
            self.sock.sendall(body)
        status_line = self._line()
        if not status_line:
            raise ConnectionError("runtime api closed the connection")
        parts = status_line.split(None, 2)
        if len(parts) < 2 or not parts[0].startswith(b"HTTP/"):
            raise ConnectionError("runtime api sent a bad status line: %r" % status_line[:100])
        status = int(parts[1])
        headers = {}
        while True:
            line = self._line()
            if line in (b"\r\n", b"\n", b""):
                break
            name, _, value = line.decode("latin-1").partition(":")
            headers[name.strip().lower()] = value.strip()
        if "content-length" in headers:
            length = int(headers["content-length"])
            data = self.rfile.read(length)
            if len(data) != length:
                raise ConnectionError("runtime api closed the connection mid-body")
        elif headers.get("transfer-encoding", "").lower() == "chunked":
            chunks = []
            while True:
                size = int(self._line().split(b";", 1)[0].strip() or b"0", 16)
                if size == 0:
                    while self._line() not in (b"\r\n", b"\n", b""):
                        pass
                    break
                chunks.append(self.rfile.read(size))
                self._line()
            data = b"".join(chunks)
        else:
            data = self.rfile.read()
            headers["connection"] = "close"
        if headers.get("connection", "").lower() == "close":
            self.close()
        return status, Response(status, headers), data

    def request(self, method, path, body=None, headers=None):
        """Returns (status, response, body). Retries once on a connection the server closed."""
        for attempt in (0, 1):
            if self.sock is None:
                self._connect()
            try:
                return self._exchange(method, path, body, headers or {})
            except (ConnectionError, OSError, ValueError):
                self.close()
                if attempt == 1:
                    raise

    def next(self):
        return self.request("GET", API_PREFIX + "/invocation/next")

    def post(self, path, body, error_type=None):
        flush_logs()
        headers = {"Content-Type": "application/json"}
        if error_type:
            headers[ERROR_TYPE_HEADER] = error_type
        status, _, data = self.request("POST", API_PREFIX + path, body=body, headers=headers)
        if status != 202:
            print(
                "[WARNING] runtime api answered %d to POST %s: %s"
                % (status, path, data.decode("utf-8", "replace")),
                file=sys.stderr,
            )
        return status


def flush_logs():
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except Exception:  # a closed or broken stream must not stop the runtime
            pass


class FaultException(Exception):
    IMPORT_MODULE_ERROR = "Runtime.ImportModuleError"
    HANDLER_NOT_FOUND = "Runtime.HandlerNotFound"
    USER_CODE_SYNTAX_ERROR = "Runtime.UserCodeSyntaxError"
    MALFORMED_HANDLER_NAME = "Runtime.MalformedHandlerName"
    MARSHAL_ERROR = "Runtime.MarshalError"
    UNMARSHAL_ERROR = "Runtime.UnmarshalError"

    def __init__(self, exception_type, msg, trace=None):
        super().__init__(msg)
        self.exception_type = exception_type
        self.msg = msg
        self.trace = trace or []


def load_handler(handler, task_root):
    try:
        modname, fname = handler.rsplit(".", 1)
    except ValueError as e:
        raise FaultException(
            FaultException.MALFORMED_HANDLER_NAME, "Bad handler '{}': {}".format(handler, e)
        )
    modname = modname.replace("/", ".")
    if task_root not in sys.path:
        sys.path.insert(0, task_root)
    elif sys.path[0] != task_root:
        sys.path.remove(task_root)
        sys.path.insert(0, task_root)
    try:
        module = importlib.import_module(modname)
    except ImportError as e:
        raise FaultException(
            FaultException.IMPORT_MODULE_ERROR,
            "Unable to import module '{}': {}".format(modname, e),
        )
    except SyntaxError as e:
        trace = ['  File "%s" Line %s\n    %s' % (e.filename, e.lineno, e.text)]
        raise FaultException(
            FaultException.USER_CODE_SYNTAX_ERROR,
            "Syntax error in module '{}': {}".format(modname, e),
            trace,
        )
    func = getattr(module, fname, None)
    if func is None:
        raise FaultException(
            FaultException.HANDLER_NOT_FOUND,
            "Handler '{}' missing on module '{}'".format(fname, modname),
        )
    return func


def user_frames(tb):
    """Formatted traceback frames, without the bootstrap's own frames (as awslambdaric does)."""
    import traceback  # only on the error path

    frames = traceback.extract_tb(tb)
    for i, frame in enumerate(frames):
        if frame.filename not in _OWN_FILES:
            frames = frames[i:]
            break
    else:
        frames = []
    return traceback.format_list(frames)


def error_result(exc, request_id=None):
    if isinstance(exc, FaultException):
        result = {"errorMessage": exc.msg, "errorType": exc.exception_type}
        if request_id is not None:
            result["requestId"] = request_id
        result["stackTrace"] = exc.trace
        return result
    result = {"errorMessage": str(exc), "errorType": type(exc).__name__}
    if request_id is not None:
        result["requestId"] = request_id
    result["stackTrace"] = user_frames(exc.__traceback__)
    return result


def log_error(result):
    lines = ["[ERROR] {}: {}".format(result["errorType"], result["errorMessage"])]
    trace = result.get("stackTrace") or []
    if trace:
        lines.append("Traceback (most recent call last):")
        lines.extend(t.rstrip("\n") for t in trace)
    sys.stderr.write("\n".join(lines) + "\n")


def error_body(result):
    return json.dumps(result, ensure_ascii=False).encode("utf-8")


def _json_default(obj):
    # A handler that returns a Decimal has imported decimal; the runtime does not pay for it.
    decimal = sys.modules.get("decimal")
    if decimal is not None and isinstance(obj, decimal.Decimal):
        return int(obj) if obj == obj.to_integral_value() else float(obj)
    raise TypeError("Object of type %s is not JSON serializable" % type(obj).__name__)


def to_json(result):
    try:
        return json.dumps(result, ensure_ascii=False, default=_json_default).encode("utf-8")
    except (TypeError, ValueError) as e:
        raise FaultException(FaultException.MARSHAL_ERROR, "Unable to marshal response: {}".format(e))


class CognitoIdentity:
    __slots__ = ["cognito_identity_id", "cognito_identity_pool_id"]

    def __init__(self, identity_id=None, pool_id=None):
        self.cognito_identity_id = identity_id
        self.cognito_identity_pool_id = pool_id


class Client:
    __slots__ = ["installation_id", "app_title", "app_version_name", "app_version_code", "app_package_name"]

    def __init__(self, client):
        self.installation_id = client.get("installation_id")
        self.app_title = client.get("app_title")
        self.app_version_name = client.get("app_version_name")
        self.app_version_code = client.get("app_version_code")
        self.app_package_name = client.get("app_package_name")


class ClientContext:
    __slots__ = ["custom", "env", "client"]

    def __init__(self, cc):
        client = cc.get("client")
        self.client = Client(client) if isinstance(client, dict) else None
        self.custom = cc.get("custom")
        self.env = cc.get("env")


def _memory_size():
    try:
        return int(os.environ.get("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "128"))
    except ValueError:
        return 128


class LambdaContext:
    def __init__(self, request_id, deadline_ms, invoked_function_arn, client_context, identity):
        self.aws_request_id = request_id
        self.invoked_function_arn = invoked_function_arn
        self.log_group_name = os.environ.get("AWS_LAMBDA_LOG_GROUP_NAME")
        self.log_stream_name = os.environ.get("AWS_LAMBDA_LOG_STREAM_NAME")
        self.function_name = os.environ.get("AWS_LAMBDA_FUNCTION_NAME")
        self.memory_limit_in_mb = _memory_size()
        self.function_version = os.environ.get("AWS_LAMBDA_FUNCTION_VERSION")
        self.client_context = ClientContext(client_context) if isinstance(client_context, dict) else None
        self.identity = identity
        self._deadline_ms = deadline_ms

    def get_remaining_time_in_millis(self):
        return max(self._deadline_ms - int(time.time() * 1000), 0)

    def __repr__(self):
        return (
            "LambdaContext([aws_request_id={},log_group_name={},log_stream_name={},function_name={},"
            "memory_limit_in_mb={},function_version={},invoked_function_arn={},client_context={},"
            "identity={}])".format(
                self.aws_request_id,
                self.log_group_name,
                self.log_stream_name,
                self.function_name,
                self.memory_limit_in_mb,
                self.function_version,
                self.invoked_function_arn,
                self.client_context,
                self.identity,
            )
        )


_CURRENT_REQUEST_ID = None


class LambdaLogFilter(logging.Filter):
    def filter(self, record):
        record.aws_request_id = _CURRENT_REQUEST_ID or ""
        return True


def setup_logging():
    """The root logger formats records like Lambda's Python runtime."""
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(
        logging.Formatter(
            "[%(levelname)s]\t%(asctime)s.%(msecs)03dZ\t%(aws_request_id)s\t%(message)s",
            "%Y-%m-%dT%H:%M:%S",
        )
    )
    handler.formatter.converter = time.gmtime
    handler.addFilter(LambdaLogFilter())
    root = logging.getLogger()
    for h in list(root.handlers):
        root.removeHandler(h)
    root.addHandler(handler)


def parse_json_header(value):
    if not value:
        return None
    try:
        return json.loads(value)
    except ValueError:
        return None


def handle_one(client, handler, status, resp, body):
    global _CURRENT_REQUEST_ID
    if status != 200:
        raise RuntimeError("runtime api answered %d to next: %r" % (status, body[:200]))
    request_id = resp.getheader("Lambda-Runtime-Aws-Request-Id")
    try:
        deadline_ms = int(resp.getheader("Lambda-Runtime-Deadline-Ms") or 0)
    except ValueError:
        deadline_ms = 0
    arn = resp.getheader("Lambda-Runtime-Invoked-Function-Arn")
    trace_id = resp.getheader("Lambda-Runtime-Trace-Id")
    if trace_id:
        os.environ["_X_AMZN_TRACE_ID"] = trace_id
    else:
        os.environ.pop("_X_AMZN_TRACE_ID", None)
    client_context = parse_json_header(resp.getheader("Lambda-Runtime-Client-Context"))
    identity_json = parse_json_header(resp.getheader("Lambda-Runtime-Cognito-Identity"))
    identity = CognitoIdentity()
    if isinstance(identity_json, dict):
        identity = CognitoIdentity(identity_json.get("cognitoIdentityId"), identity_json.get("cognitoIdentityPoolId"))
    _CURRENT_REQUEST_ID = request_id
    context = LambdaContext(request_id, deadline_ms, arn, client_context, identity)
    path = "/invocation/%s" % request_id
    try:
        try:
            event = json.loads(body)
        except ValueError as e:
            raise FaultException(FaultException.UNMARSHAL_ERROR, "Unable to unmarshal input: {}".format(e))
        result = handler(event, context)
        payload = to_json(result)
    except Exception as e:
        result = error_result(e, request_id)
        log_error(result)
        client.post(path + "/error", error_body(result), result["errorType"])
        return
    client.post(path + "/response", payload)


def main():
    address = os.environ.get("AWS_LAMBDA_RUNTIME_API")
    if not address:
        sys.stderr.write("[ERROR] AWS_LAMBDA_RUNTIME_API is not set: the runtime api address is required\n")
        sys.exit(1)
    handler_name = os.environ.get("_HANDLER", "")
    task_root = os.environ.get("LAMBDA_TASK_ROOT", "/var/task")
    client = RuntimeClient(address)
    try:
        os.chdir(task_root)
    except OSError:
        pass
    setup_logging()
    try:
        handler = load_handler(handler_name, task_root)
    except Exception as e:
        result = error_result(e)
        if not isinstance(e, FaultException):
            result["stackTrace"] = user_frames(e.__traceback__)
        log_error(result)
        client.post("/init/error", error_body(result), result["errorType"])
        sys.exit(1)
    while True:
        status, resp, body = client.next()
        handle_one(client, handler, status, resp, body)


if __name__ == "__main__":
    main()
