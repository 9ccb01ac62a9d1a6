"""Lamina's Python runtime: a stdlib-only Lambda Runtime API client (`/var/runtime/lamina_runtime.py`).

Run by `python3.11 /var/runtime/bootstrap.py` inside the sandbox, which imports this module -- from
the bytecode the worker compiled into `__pycache__` at start-up (`runtimes::install`), so that no
sandbox compiles it (a few ms, and ~1.5 MB of heap the parser leaves fragmented) -- and calls
`main()`; a zygote-forked sandbox calls `main()` on the zygote's copy. Reads AWS_LAMBDA_RUNTIME_API
(host:port), _HANDLER (`path/module.func`) and LAMBDA_TASK_ROOT (default /var/task), imports the
handler once, then loops: GET next, call the handler, POST the response or the error. Error shapes,
messages and log lines follow AWS's Python runtime (awslambdaric).
"""

# Every module imported here is paid by every sandbox, in start-up time and in memory that stays
# private to it (an idle warm sandbox is mostly this interpreter's heap). So the bootstrap imports
# only C modules besides `importlib`: `_socket` instead of `socket` (enum, selectors), `_json`'s
# scanner and encoder -- the very functions `json.loads` / `json.dumps` run -- instead of `json`
# (re, enum: ~1 MB), and `logging` (re, traceback, threading: ~1 MB) is configured the moment
# anything imports it (`LoggingSetup`) instead of up front. `http.client` (email, ssl: ~20 ms) is
# never imported: `RuntimeClient` speaks HTTP/1.1 itself.
import _json
import _socket
import importlib
import os
import sys
import time

API_PREFIX = "/2018-06-01/runtime"
# This module and the bootstrap script that runs it: their frames are left out of tracebacks.
_OWN_FILES = {
    f
    for p in (__file__, os.path.join(os.path.dirname(__file__), "bootstrap.py"))
    for f in (p, os.path.abspath(p))
}
ERROR_TYPE_HEADER = "Lambda-Runtime-Function-Error-Type"
# At most this much of a response head (status line and headers) is buffered.
MAX_HEAD = 1 << 20


class _DecoderSettings:
    """What `_json.make_scanner` reads from a `json.JSONDecoder()`: its default settings."""

    strict = True
    object_hook = None
    object_pairs_hook = None
    parse_float = float
    parse_int = int
    parse_constant = {"-Infinity": float("-inf"), "Infinity": float("inf"), "NaN": float("nan")}.__getitem__


_scan_once = _json.make_scanner(_DecoderSettings())
_JSON_SPACE = " \t\n\r"


def json_loads(data):
    """`json.loads(data)` (bytes or str): the same C scanner on the same text. Anything unusual
    (bytes in another encoding than UTF-8, invalid JSON) goes to `json.loads` itself, which also
    raises its errors."""
    text = None
    if isinstance(data, str):
        text = data
    elif data and 0 < data[0] < 0x80 and (len(data) < 2 or data[1] != 0):  # json's detect_encoding
        try:
            text = data.decode("utf-8", "surrogatepass")
        except UnicodeDecodeError:
            pass
    if text is not None:
        try:
            obj, end = _scan_once(text, len(text) - len(text.lstrip(_JSON_SPACE)))
        except (ValueError, StopIteration):
            pass
        else:
            if end == len(text) or not text[end:].strip(_JSON_SPACE):
                return obj
    import json

    return json.loads(data)


def _not_serializable(obj):
    raise TypeError(f"Object of type {obj.__class__.__name__} is not JSON serializable")


def json_dumps(obj, default=_not_serializable):
    """`json.dumps(obj, ensure_ascii=False, default=default)`: the C encoder json.dumps runs, with
    the same settings (separators ", " and ": ", circular references checked, NaN allowed)."""
    if isinstance(obj, str):
        return _json.encode_basestring(obj)
    chunks = _json.make_encoder({}, default, _json.encode_basestring, None, ": ", ", ", False, False, True)(obj, 0)
    if not isinstance(chunks, (list, tuple)):
        chunks = list(chunks)
    return "".join(chunks)


class Response:
    """Status and headers of one Runtime API response (header names case-insensitive)."""

    __slots__ = ["status", "headers"]

    def __init__(self, status, headers):
        self.status = status
        self.headers = headers  # lower-case names

    def getheader(self, name, default=None):
        return self.headers.get(name.lower(), default)


def _header_value(value):
    """A header value without CR, LF or other control characters (no header injection)."""
    value = str(value)
    if value.isprintable() and value.isascii():
        return value
    return "".join(c for c in value if c >= " " and c != "\x7f")


class RuntimeClient:
    """One keep-alive HTTP/1.1 connection to the Runtime API, reconnected when the server closed it.

    A small client on a plain socket: the worker's server always sends Content-Length (chunked is
    understood too); http.client would cost ~20 ms of imports on every cold start. A response
    normally arrives in one `recv`, parsed in place.
    """

    def __init__(self, address):
        host, _, port = address.rpartition(":")
        self.host = host or "127.0.0.1"
        self.port = int(port)
        self.sock = None
        self.buf = b""
        self._host_line = "Host: %s:%d\r\n" % (self.host, self.port)
        self._next_request = (
            ("GET %s/invocation/next HTTP/1.1\r\n%s\r\n" % (API_PREFIX, self._host_line)).encode("latin-1"),
        )

    def _connect(self):
        """`socket.create_connection((host, port))` on `_socket`: each address in turn."""
        errors = []
        # An ASCII host as bytes: a str goes through the idna codec (re, unicodedata, stringprep).
        host = self.host.encode("ascii") if self.host.isascii() else self.host
        for family, kind, proto, _, addr in _socket.getaddrinfo(host, self.port, 0, _socket.SOCK_STREAM):
            sock = _socket.socket(family, kind, proto)
            try:
                sock.connect(addr)
            except OSError as e:
                sock.close()
                errors.append(e)
                continue
            sock.setsockopt(_socket.IPPROTO_TCP, _socket.TCP_NODELAY, 1)
            self.sock = sock
            self.buf = b""
            return
        if errors:
            raise errors[0]
        raise OSError("getaddrinfo returns an empty list")

    def close(self):
        if self.sock is not None:
            try:
                self.sock.close()
            except OSError:
                pass
        self.sock = None
        self.buf = b""

    def _recv(self):
        data = self.sock.recv(65536)
        if not data:
            raise ConnectionError("runtime api closed the connection")
        return data

    def _line(self):
        """One line of the buffered input (for chunked bodies), with its line ending."""
        while True:
            end = self.buf.find(b"\n")
            if end >= 0:
                line, self.buf = self.buf[: end + 1], self.buf[end + 1 :]
                return line
            if len(self.buf) > 65536:
                raise ConnectionError("runtime api sent a line over 64 KB")
            self.buf += self._recv()

    def _exact(self, n):
        """The next `n` bytes of input."""
        buf = self.buf
        if len(buf) >= n:
            self.buf = buf[n:]
            return buf[:n] if len(buf) > n else buf
        body = bytearray(n)
        body[: len(buf)] = buf
        view = memoryview(body)
        have = len(buf)
        self.buf = b""
        while have < n:
            got = self.sock.recv_into(view[have:])
            if not got:
                raise ConnectionError("runtime api closed the connection mid-body")
            have += got
        return bytes(body)

    def _head(self):
        """The status and lower-cased headers of the next response."""
        buf = self.buf
        end = buf.find(b"\r\n\r\n")
        while end < 0:
            if len(buf) > MAX_HEAD:
                raise ConnectionError("runtime api sent a response head over 1 MB")
            data = self.sock.recv(65536)
            if not data:
                raise ConnectionError("runtime api closed the connection" + (" mid-headers" if buf else ""))
            start = max(0, len(buf) - 3)
            buf = buf + data if buf else data
            end = buf.find(b"\r\n\r\n", start)
        self.buf = buf[end + 4 :]
        lines = buf[:end].split(b"\r\n")
        status_line = lines[0]
        parts = status_line.split(None, 2)
        if len(parts) < 2 or not parts[0].startswith(b"HTTP/"):
            raise ConnectionError("runtime api sent a bad status line: %r" % status_line[:100])
        status = int(parts[1])
        headers = {}
        for line in lines[1:]:
            name, _, value = line.decode("latin-1").partition(":")
            headers[name.strip().lower()] = value.strip()
        return status, headers

    def _exchange(self, request):
        for part in request:
            self.sock.sendall(part)
        status, headers = self._head()
        length = headers.get("content-length")
        if length is not None:
            data = self._exact(int(length))
        elif headers.get("transfer-encoding", "").lower() == "chunked":
            chunks = []
            while True:
                size = int(self._line().split(b";", 1)[0].strip() or b"0", 16)
                if size == 0:
                    while self._line() not in (b"\r\n", b"\n"):
                        pass
                    break
                chunks.append(self._exact(size))
                self._line()
            data = b"".join(chunks)
        else:
            chunks = [self.buf]
            while True:
                chunk = self.sock.recv(65536)
                if not chunk:
                    break
                chunks.append(chunk)
            data = b"".join(chunks)
            headers["connection"] = "close"
        if headers.get("connection", "").lower() == "close":
            self.close()
        return status, Response(status, headers), data

    def _send(self, request):
        """Sends `request` (a tuple of bytes) and returns (status, response, body). Retries once on a
        connection the server closed."""
        for attempt in (0, 1):
            if self.sock is None:
                self._connect()
            try:
                return self._exchange(request)
            except (ConnectionError, OSError, ValueError):
                self.close()
                if attempt == 1:
                    raise

    def next(self):
        return self._send(self._next_request)

    def post(self, path, body, error_type=None):
        """POSTs `body` (bytes) to `path` under the API prefix; warns unless the answer is 202."""
        flush_logs()
        head = "POST %s%s HTTP/1.1\r\n%sContent-Type: application/json\r\n" % (API_PREFIX, path, self._host_line)
        if error_type:
            head += "%s: %s\r\n" % (ERROR_TYPE_HEADER, _header_value(error_type))
        head = (head + "Content-Length: %d\r\n\r\n" % len(body)).encode("latin-1")
        status, _, data = self._send((head + body,) if len(body) <= 65536 else (head, body))
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


RUNTIME_DIR = "/var/runtime"


def lambda_sys_path(path, pythonpath, task_root):
    """Lambda's `sys.path`: the function's code, then the layers (`PYTHONPATH`:
    /opt/python/lib/python3.11/site-packages, /opt/python), then this runtime, then the standard
    library (its zip, its directory, lib-dynload, in `path`'s order). Anything else on `path` is
    dropped: the script's directory, the zygote's, and the package directories `site` adds
    (the host's dist-packages, which the sandbox also hides under an empty mount)."""
    first = []
    for p in [task_root] + pythonpath.split(":") + [RUNTIME_DIR]:
        if p and p not in first:
            first.append(p)
    lib = os.path.dirname(os.__file__)  # e.g. /usr/lib/python3.11
    std = []
    for p in path:
        if p in first or p in std or os.path.basename(p) in ("site-packages", "dist-packages"):
            continue
        if p == lib or os.path.dirname(p) == lib or (p.endswith(".zip") and os.path.dirname(p) == os.path.dirname(lib)):
            std.append(p)
    return first + std


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
    return json_dumps(result).encode("utf-8")


def _json_default(obj):
    # A handler that returns a Decimal has imported decimal; the runtime does not pay for it.
    decimal = sys.modules.get("decimal")
    if decimal is not None and isinstance(obj, decimal.Decimal):
        return int(obj) if obj == obj.to_integral_value() else float(obj)
    raise TypeError("Object of type %s is not JSON serializable" % type(obj).__name__)


def to_json(result):
    try:
        return json_dumps(result, _json_default).encode("utf-8")
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


def setup_logging(logging):
    """The root logger formats records like Lambda's Python runtime."""

    class LambdaLogFilter(logging.Filter):
        def filter(self, record):
            record.aws_request_id = _CURRENT_REQUEST_ID or ""
            return True

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


class LoggingSetup:
    """Configures `logging` (`setup_logging`) right after its module has run, on its first import
    by anyone, instead of importing it up front: a function that does not log never pays for it.

    A meta path finder, first on `sys.meta_path` until `logging` is loaded: it asks the finders
    after it for the spec and wraps the loader until the module executes (the module has its real
    loader in `__loader__` and `__spec__.loader`).
    """

    def find_spec(self, name, path=None, target=None):
        if name != "logging":
            return None
        for finder in sys.meta_path:
            find_spec = None if finder is self else getattr(finder, "find_spec", None)
            spec = find_spec(name, path, target) if find_spec is not None else None
            if spec is not None:
                if hasattr(spec.loader, "exec_module"):
                    spec.loader = _ConfiguringLoader(spec.loader, self)
                return spec
        return None

    @staticmethod
    def install():
        """Configures logging now if it is imported already, else on its first import."""
        logging = sys.modules.get("logging")
        if logging is not None:
            setup_logging(logging)
        else:
            sys.meta_path.insert(0, LoggingSetup())


class _ConfiguringLoader:
    __slots__ = ["loader", "finder"]

    def __init__(self, loader, finder):
        self.loader = loader
        self.finder = finder

    def create_module(self, spec):
        return self.loader.create_module(spec)

    def exec_module(self, module):
        module.__loader__ = module.__spec__.loader = self.loader
        self.loader.exec_module(module)
        if self.finder in sys.meta_path:
            sys.meta_path.remove(self.finder)
            setup_logging(module)


def parse_json_header(value):
    if not value:
        return None
    try:
        return json_loads(value)
    except ValueError:
        return None


def handle_one(client, handler, status, resp, body):
    global _CURRENT_REQUEST_ID
    if status != 200:
        raise RuntimeError("runtime api answered %d to next: %r" % (status, body[:200]))
    headers = resp.headers
    request_id = headers.get("lambda-runtime-aws-request-id")
    try:
        deadline_ms = int(headers.get("lambda-runtime-deadline-ms") or 0)
    except ValueError:
        deadline_ms = 0
    arn = headers.get("lambda-runtime-invoked-function-arn")
    trace_id = headers.get("lambda-runtime-trace-id")
    if trace_id:
        os.environ["_X_AMZN_TRACE_ID"] = trace_id
    else:
        os.environ.pop("_X_AMZN_TRACE_ID", None)
    client_context = parse_json_header(headers.get("lambda-runtime-client-context"))
    identity_json = parse_json_header(headers.get("lambda-runtime-cognito-identity"))
    identity = CognitoIdentity()
    if isinstance(identity_json, dict):
        identity = CognitoIdentity(identity_json.get("cognitoIdentityId"), identity_json.get("cognitoIdentityPoolId"))
    _CURRENT_REQUEST_ID = request_id
    context = LambdaContext(request_id, deadline_ms, arn, client_context, identity)
    path = "/invocation/%s" % request_id
    try:
        try:
            event = json_loads(body)
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
    sys.path[:] = lambda_sys_path(sys.path, os.environ.get("PYTHONPATH", ""), task_root)
    client = RuntimeClient(address)
    try:
        os.chdir(task_root)
    except OSError:
        pass
    LoggingSetup.install()
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

