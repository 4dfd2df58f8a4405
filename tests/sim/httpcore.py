"""httpcore.py - the simulator's HTTPS/1.1 server plumbing.

A ThreadingHTTPServer whose connections are TLS-wrapped in their own thread
(a slow handshake never blocks accept), keep-alive HTTP/1.1, a request object
with the headers in received order, a streaming request-body reader
(Content-Length or chunked, RFC 9112 framing rules) and response helpers
(fixed length, chunked, raw bytes). Handlers never crash the server: any
exception becomes a 500 if nothing was sent yet, else the connection closes.
"""

import socket
import socketserver
import ssl
import struct
import threading
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from common import jdump, log


class HTTPError(Exception):
    """Abort the request with this status (and close the connection)."""

    def __init__(self, status, msg=""):
        Exception.__init__(self, msg)
        self.status = status
        self.msg = msg


class AbortConnection(Exception):
    """Drop the connection without answering (rst=True: TCP reset)."""

    def __init__(self, rst=False):
        Exception.__init__(self)
        self.rst = rst


class Body:
    """Streaming reader of one request body."""

    def __init__(self, rfile, headers, on_first_read=None):
        self.rfile = rfile
        self.on_first_read = on_first_read  # sends a deferred 100 Continue
        self.mode = "length"
        self.remaining = 0
        self.done = False
        self.total = 0
        te = [v for k, v in headers if k.lower() == "transfer-encoding"]
        cl = [v.strip() for k, v in headers if k.lower() == "content-length"]
        if te:
            codings = [c.strip().lower() for c in ",".join(te).split(",") if c.strip()]
            if not codings or codings[-1] != "chunked" or any(c != "chunked" for c in codings):
                raise HTTPError(501 if codings and codings[-1] == "chunked" else 400,
                                "unsupported transfer-encoding")
            if len(codings) > 1:
                raise HTTPError(400, "chunked applied twice")
            self.mode = "chunked"
            self.chunk_left = 0
            self.both = bool(cl)
        elif cl:
            vals = set()
            for v in cl:
                for part in v.split(","):
                    part = part.strip()
                    if not part.isdigit() or not part.isascii():
                        raise HTTPError(400, "bad content-length")
                    vals.add(int(part))
            if len(vals) != 1:
                raise HTTPError(400, "conflicting content-length")
            self.remaining = vals.pop()
        self.done = self.mode == "length" and self.remaining == 0

    def _line(self):
        line = self.rfile.readline(4098)
        if not line.endswith(b"\n"):
            raise HTTPError(400, "bad chunk framing")
        return line.rstrip(b"\r\n")

    def read(self, n=1 << 20):
        """Up to n bytes; b'' at the end of the body."""
        if self.done:
            return b""
        if self.on_first_read:
            self.on_first_read()
            self.on_first_read = None
        if self.mode == "length":
            data = self.rfile.read(min(n, self.remaining))
            if not data:
                raise HTTPError(400, "body truncated")
            self.remaining -= len(data)
            self.done = self.remaining == 0
            self.total += len(data)
            return data
        while self.chunk_left == 0:
            size = self._line().split(b";", 1)[0].strip()
            if not size or len(size) > 16 or any(c not in b"0123456789abcdefABCDEF" for c in size):
                raise HTTPError(400, "bad chunk size")
            self.chunk_left = int(size, 16)
            if self.chunk_left == 0:
                for _ in range(200):  # trailer section
                    if self._line() == b"":
                        break
                else:
                    raise HTTPError(400, "too many trailers")
                self.done = True
                return b""
        data = self.rfile.read(min(n, self.chunk_left))
        if not data:
            raise HTTPError(400, "body truncated")
        self.chunk_left -= len(data)
        self.total += len(data)
        if self.chunk_left == 0 and self.rfile.read(2) != b"\r\n":
            raise HTTPError(400, "bad chunk framing")
        return data

    def read_all(self, limit=16 << 20):
        parts = []
        got = 0
        while True:
            d = self.read()
            if not d:
                return b"".join(parts)
            got += len(d)
            if got > limit:
                raise HTTPError(413, "body too large")
            parts.append(d)

    def drain(self, limit=1 << 30):
        """Discard the body; False (connection must close) when it is too big."""
        if self.mode == "length" and self.remaining > limit:
            return False
        got = 0
        while True:
            d = self.read()
            if not d:
                return True
            got += len(d)
            if got > limit:
                return False


class Req:
    """One parsed request as handlers see it."""

    def __init__(self, h):
        self.h = h
        self.method = h.command
        self.target = h.path
        self.version = h.request_version
        self.headers = [(k, v) for k, v in h.headers.items()]
        hosts = [v for k, v in self.headers if k.lower() == "host"]
        host = hosts[0].strip().lower() if len(hosts) == 1 else ""
        if host.startswith("["):
            host = host.split("]")[0] + "]"
        elif ":" in host:
            host = host.rsplit(":", 1)[0]
        self.host = host
        split = urllib.parse.urlsplit(self.target if self.target.startswith("/") else "/" + self.target)
        self.path = split.path
        self.query = {}
        for k, v in urllib.parse.parse_qsl(split.query, keep_blank_values=True):
            self.query.setdefault(k, v)
        self.body = Body(h.rfile, self.headers, h.send_continue if h.expect_pending else None)
        self.status = None  # set by the response helpers, for logs

    def header(self, name, default=None):
        name = name.lower()
        for k, v in self.headers:
            if k.lower() == name:
                return v
        return default

    def qint(self, name, default=0, lo=None, hi=None):
        try:
            v = int(self.query.get(name, default))
        except ValueError:
            raise HTTPError(400, "query parameter %s must be an integer" % name)
        if lo is not None and v < lo or hi is not None and v > hi:
            raise HTTPError(400, "query parameter %s out of range" % name)
        return v

    # responses ---------------------------------------------------------------

    def send(self, status, headers=(), body=b"", close=False, reason=None):
        """A complete response with Content-Length (none for 1xx/204/304)."""
        h = self.h
        if isinstance(body, str):
            body = body.encode("utf-8")
        self.status = status
        h.send_response(status, reason)
        for k, v in headers:
            h.send_header(k, v)
        bodiless = status in (204, 304) or status < 200
        if not bodiless and not any(k.lower() == "content-length" for k, _ in headers):
            h.send_header("Content-Length", str(len(body)))
        if h.expect_pending and not self.body.done:
            close = True  # the client may never send the body we did not ask for
        if close:
            h.send_header("Connection", "close")
        write_body = body and not bodiless and self.method != "HEAD"
        h._headers_buffer.append(b"\r\n")
        if write_body and len(body) <= 65536:
            h._headers_buffer.append(body)
            write_body = False
        hook, self.before_send = getattr(self, "before_send", None), None
        if hook:  # e.g. limits.py: the request's execution ends before the client can see its answer
            hook()
        h.flush_headers()
        if write_body:
            h.wfile.write(body)

    def send_json(self, status, obj, headers=(), **kw):
        hdrs = [("Content-Type", "application/json; charset=utf-8")] + list(headers)
        self.send(status, hdrs, jdump(obj), **kw)

    def start_chunked(self, status, headers=()):
        h = self.h
        self.status = status
        h.send_response(status)
        for k, v in headers:
            h.send_header(k, v)
        h.send_header("Transfer-Encoding", "chunked")
        h.end_headers()

    def write_chunk(self, data):
        if data:
            self.h.wfile.write(b"%x\r\n" % len(data))
            self.h.wfile.write(data)
            self.h.wfile.write(b"\r\n")

    def end_chunked(self):
        self.h.wfile.write(b"0\r\n\r\n")

    def raw(self, data):
        """Bytes straight to the socket (hand-made responses)."""
        self.h._started = True
        self.h.wfile.write(data)


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    default_request_version = "HTTP/1.0"  # error replies to unparsable lines get a status line
    server_version = "Microsoft-IIS/10.0"
    sys_version = ""
    timeout = 120  # idle keep-alive connections and stalled clients
    disable_nagle_algorithm = True

    def handle_expect_100(self):
        # Defer "100 Continue" until the handler reads the body: a request
        # rejected unread (401 ...) gets its final status without a 100.
        self.expect_pending = True
        return True

    def send_continue(self):
        if self.expect_pending:
            self.expect_pending = False
            self.wfile.write(b"HTTP/1.1 100 Continue\r\n\r\n")
            self.wfile.flush()

    def version_string(self):
        return self.server_version

    def send_response(self, code, message=None):
        self._started = True
        self.send_response_only(code, message)
        self.send_header("Server", self.version_string())
        self.send_header("Date", self.date_time_string())

    def log_message(self, fmt, *args):
        log("%s %s" % (self.client_address[0], fmt % args))

    def log_request(self, code="-", size="-"):
        pass

    def handle_one_request(self):
        self._started = False
        self.expect_pending = False
        req = None
        try:
            self.raw_requestline = self.rfile.readline(65537)
            if len(self.raw_requestline) > 65536:
                self.requestline = ""
                self.request_version = ""
                self.command = ""
                self.send_error(414)
                self.close_connection = True
                return
            if not self.raw_requestline:
                self.close_connection = True
                return
            if not self.parse_request():
                self.close_connection = True
                return
            req = Req(self)
            if not req.host:
                raise HTTPError(400, "missing or repeated Host header")
            self.server.app.dispatch(req)
            self.wfile.flush()
            if req is not None and not req.body.done:
                # Unread body: keep the stream in sync or give up the connection
                # (a client still waiting for 100 Continue may never send it).
                if self.expect_pending:
                    self.close_connection = True
                    return
                try:
                    if not req.body.drain():
                        self.close_connection = True
                except HTTPError:
                    self.close_connection = True
        except AbortConnection as e:
            self.close_connection = True
            if e.rst:
                try:
                    self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                                               struct.pack("ii", 1, 0))
                except OSError:
                    pass
        except HTTPError as e:
            self.close_connection = True
            log("%s %s -> %d %s" % (self.command, getattr(self, "path", "?"), e.status, e.msg))
            if not self._started:
                try:
                    body = jdump({"error": {"code": "SimBadRequest", "message": e.msg}})
                    self.send_response(e.status)
                    self.send_header("Content-Type", "application/json; charset=utf-8")
                    self.send_header("Content-Length", str(len(body)))
                    self.send_header("Connection", "close")
                    self.end_headers()
                    self.wfile.write(body)
                except OSError:
                    pass
        except (OSError, ssl.SSLError, ValueError) as e:
            # socket.timeout, resets, TLS errors: just drop the connection
            self.close_connection = True
            if not isinstance(e, (ConnectionError, socket.timeout)):
                log("connection error: %r" % e)
        except Exception as e:  # a simulator bug: answer 500, keep serving
            import traceback
            self.close_connection = True
            log("handler exception: %r\n%s" % (e, traceback.format_exc()))
            if not self._started:
                try:
                    self.send_error(500, "simulator error")
                except Exception:
                    pass


class Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 1024

    def __init__(self, addr, app, ssl_ctx):
        self.app = app
        self.ssl_ctx = ssl_ctx
        ThreadingHTTPServer.__init__(self, addr, Handler)

    def server_bind(self):
        # HTTPServer.server_bind would call getfqdn(): a DNS lookup, slow offline.
        socketserver.TCPServer.server_bind(self)
        self.server_name = "localhost"
        self.server_port = self.server_address[1]

    def finish_request(self, request, client_address):
        tls = None
        try:
            request.settimeout(30)
            tls = self.ssl_ctx.wrap_socket(request, server_side=True)
            stats = getattr(self.app, "stats", None)
            if stats is not None:  # how many handshakes, and how many resumed a session
                with stats.lock:
                    stats.tls_handshakes += 1
                    stats.tls_resumed += 1 if tls.session_reused else 0
            tls.settimeout(Handler.timeout)
            Handler(tls, client_address, self)
        except (OSError, ssl.SSLError) as e:
            if not isinstance(e, (ConnectionError, socket.timeout)):
                log("tls/connection error from %s: %r" % (client_address[0], e))
        finally:
            s = tls or request
            try:
                s.close()
            except OSError:
                pass

    def handle_error(self, request, client_address):
        import traceback
        log("server error: %s" % traceback.format_exc())


def make_ssl_ctx(cert, key):
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.load_cert_chain(cert, key)
    ctx.set_alpn_protocols(["http/1.1"])
    return ctx


def serve(app, port, cert, key, host="127.0.0.1"):
    srv = Server((host, port), app, make_ssl_ctx(cert, key))
    t = threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.2}, daemon=True)
    t.start()
    return srv
