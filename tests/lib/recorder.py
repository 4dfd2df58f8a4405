"""recorder.py - a raw recording HTTPS/1.1 upstream for hostile-input tests.

  rec = Recorder(cert, key).start()   # TLS on 127.0.0.1:<rec.port>, threads
  mark = rec.mark()                   # before a case
  ... drive the proxy ...
  rec.since(mark)                     # [(conn_id, new bytes, [complete requests], closed)]
  rec.stop()

Every connection's bytes are kept exactly as received, in order. The server
parses requests itself (Content-Length or chunked bodies, chunk extensions and
trailers) only to know where one request ends; whatever it cannot parse is
still recorded, and the connection is then closed. Each complete request is
answered according to its path:

  /rec/head-chunked     GET: 200 with a chunked body "hello"; HEAD: the
                        header block only (Transfer-Encoding: chunked), as a
                        real server does
  /rec/close-after-read the whole request is read, then the connection is
                        closed without an answer
  /rec/chunked          200 with a chunked body "hello"
  anything else         HTTP/1.1 200 OK, Content-Length: 2, body "ok"

Connection ids count from 1 in accept order.
"""

import fcntl
import re
import select
import socket
import ssl
import struct
import termios
import threading
import time

OK = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
CHUNKED_HEAD = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
CHUNKED_BODY = b"5\r\nhello\r\n0\r\n\r\n"


class Incomplete(Exception):
    """More bytes are needed."""


class Unparseable(Exception):
    """The bytes are not an HTTP/1.1 request this server understands."""


def parse_request(buf):
    """-> (length of the first complete request in buf, method, target).
    Raises Incomplete or Unparseable."""
    end = buf.find(b"\r\n\r\n")
    if end < 0:
        if len(buf) > 1 << 20:
            raise Unparseable("header block too long")
        raise Incomplete()
    head = bytes(buf[:end])
    lines = head.split(b"\r\n")
    parts = lines[0].split(b" ")
    if len(parts) != 3:
        raise Unparseable("request line %r" % lines[0][:100])
    method, target = parts[0].decode("latin-1"), parts[1].decode("latin-1")
    te, cl = [], []
    for ln in lines[1:]:
        name, sep, value = ln.partition(b":")
        if not sep:
            raise Unparseable("header line %r" % ln[:100])
        n = name.lower()
        if n == b"transfer-encoding":
            te.append(value.strip().lower())
        elif n == b"content-length":
            cl.append(value.strip())
    pos = end + 4
    if te:
        if te != [b"chunked"]:
            raise Unparseable("transfer-encoding %r" % te)
        while True:  # chunks
            eol = buf.find(b"\r\n", pos)
            if eol < 0:
                raise Incomplete()
            size_s = bytes(buf[pos:eol]).split(b";")[0].strip()
            if not re.fullmatch(rb"[0-9a-fA-F]{1,15}", size_s):
                raise Unparseable("chunk size %r" % size_s[:40])
            size = int(size_s, 16)
            pos = eol + 2
            if size == 0:
                break
            if len(buf) < pos + size + 2:
                raise Incomplete()
            if buf[pos + size:pos + size + 2] != b"\r\n":
                raise Unparseable("no CRLF after chunk data")
            pos += size + 2
        while True:  # trailers, then the empty line
            eol = buf.find(b"\r\n", pos)
            if eol < 0:
                raise Incomplete()
            line_empty = eol == pos
            pos = eol + 2
            if line_empty:
                return pos, method, target
    if cl:
        if len(set(cl)) != 1 or not re.fullmatch(rb"[0-9]{1,15}", cl[0]):
            raise Unparseable("content-length %r" % cl)
        n = int(cl[0])
        if len(buf) < pos + n:
            raise Incomplete()
        return pos + n, method, target
    return pos, method, target


class Conn:
    def __init__(self, cid):
        self.id = cid
        self.data = bytearray()
        self.requests = []  # bytes of each complete request, in order
        self.parsed = 0  # offset in data where the next request starts
        self.closed = False
        self.sock = None  # the TLS socket once the handshake is done
        self.reading = False  # between "readable" and its bytes being recorded


class Recorder:
    def __init__(self, cert, key, host="127.0.0.1"):
        self.ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        self.ctx.load_cert_chain(cert, key)
        self.ctx.set_alpn_protocols(["http/1.1"])
        self.host = host
        self.lock = threading.Condition()
        self.conns = []
        self.socks = set()
        self.sock = None
        self.port = None
        self.running = False
        self.threads = []

    # -- lifecycle ---------------------------------------------------------

    def start(self):
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind((self.host, 0))
        s.listen(64)
        s.settimeout(0.2)
        self.sock = s
        self.port = s.getsockname()[1]
        self.running = True
        t = threading.Thread(target=self._accept_loop, daemon=True)
        t.start()
        self.threads.append(t)
        return self

    def stop(self):
        self.running = False
        with self.lock:
            socks = list(self.socks)
        for c in socks:
            try:
                c.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            try:
                c.close()
            except OSError:
                pass
        for t in list(self.threads):
            t.join(5)
        if self.sock:
            self.sock.close()
            self.sock = None

    def connect_to(self, hosts):
        """connect_to entries for harness.proxy_ini (sim_up duck type)."""
        return ["%s:443:127.0.0.1:%d" % (h, self.port) for h in hosts]

    # -- recording -----------------------------------------------------------

    def mark(self):
        with self.lock:
            return {c.id: len(c.data) for c in self.conns}

    def since(self, mark):
        """[(conn_id, new bytes, [complete requests that started after mark], closed)]
        for every connection that received bytes after mark."""
        out = []
        with self.lock:
            for c in self.conns:
                off = mark.get(c.id, 0)
                if len(c.data) > off:
                    reqs, start = [], 0
                    for r in c.requests:
                        if start >= off:
                            reqs.append(r)
                        start += len(r)
                    out.append((c.id, bytes(c.data[off:]), reqs, c.closed))
        return out

    def busy(self):
        """True while some open connection holds bytes of an unfinished request."""
        with self.lock:
            return any(not c.closed and c.parsed < len(c.data) for c in self.conns)

    def settled(self):
        """(Under the lock.) Nothing sent to the recorder is still on its way into
        conn.data: no connection waiting to be accepted or in its TLS handshake,
        and on every open connection no bytes in the kernel, in the TLS buffer or
        being appended. Without this, bytes a proxy sent for one case could be
        recorded only after the next case took its mark."""
        try:
            if select.select([self.sock], [], [], 0)[0]:
                return False
        except (OSError, ValueError):
            pass
        for c in self.conns:
            if c.closed:
                continue
            if c.sock is None or c.reading:
                return False
            try:
                if c.sock.pending() > 0:
                    return False
                n = struct.unpack("i", fcntl.ioctl(c.sock.fileno(), termios.FIONREAD, b"\0\0\0\0"))[0]
            except (OSError, ValueError):
                continue  # closing now: its thread records what is left and marks it closed
            if n > 0:
                return False
        return True

    def wait(self, pred, timeout):
        """Wait until pred() (called under the lock) is true -> its value or None."""
        deadline = time.time() + timeout
        with self.lock:
            while True:
                v = pred()
                if v:
                    return v
                left = deadline - time.time()
                if left <= 0:
                    return None
                self.lock.wait(min(left, 0.2))

    def n_connections(self):
        with self.lock:
            return len(self.conns)

    # -- serving ---------------------------------------------------------------

    def _accept_loop(self):
        while self.running:
            try:
                c, _ = self.sock.accept()
            except socket.timeout:
                continue
            except OSError:
                break
            with self.lock:
                conn = Conn(len(self.conns) + 1)
                self.conns.append(conn)
                self.socks.add(c)
            t = threading.Thread(target=self._serve, args=(c, conn), daemon=True)
            self.threads = [x for x in self.threads if x.is_alive()]
            self.threads.append(t)
            t.start()

    def _serve(self, raw_sock, conn):
        s = raw_sock
        try:
            raw_sock.settimeout(10)
            s = self.ctx.wrap_socket(raw_sock, server_side=True)
            with self.lock:
                self.socks.add(s)
            s.settimeout(None)
            with self.lock:
                conn.sock = s
                self.lock.notify_all()
            while self.running:
                try:
                    if s.pending() == 0 and not select.select([s], [], [], 0.2)[0]:
                        continue
                    with self.lock:
                        conn.reading = True
                    d = s.recv(65536)
                except (OSError, ssl.SSLError, ValueError):
                    break
                with self.lock:
                    conn.data += d
                    conn.reading = False
                    self.lock.notify_all()
                if not d:
                    break
                if not self._answer(s, conn):
                    break
        except (OSError, ssl.SSLError):
            pass
        finally:
            for x in (s, raw_sock):
                try:
                    x.close()
                except OSError:
                    pass
            with self.lock:
                conn.closed = True
                conn.reading = False
                self.socks.discard(s)
                self.socks.discard(raw_sock)
                self.lock.notify_all()

    def _answer(self, s, conn):
        """Answer every complete request in conn.data -> False to close."""
        while True:
            with self.lock:
                buf = conn.data[conn.parsed:]
                try:
                    n, method, target = parse_request(buf)
                except Incomplete:
                    return True
                except Unparseable:
                    return False
                conn.requests.append(bytes(buf[:n]))
                conn.parsed += n
                self.lock.notify_all()
            path = target.split("?", 1)[0]
            if path == "/rec/close-after-read":
                return False
            if path == "/rec/head-chunked":
                out = CHUNKED_HEAD + (b"" if method == "HEAD" else CHUNKED_BODY)
            elif path == "/rec/chunked":
                out = CHUNKED_HEAD + CHUNKED_BODY
            else:
                out = OK[:-2] if method == "HEAD" else OK
            try:
                s.sendall(out)
            except OSError:
                return False
