"""odata.py - what the simulated Dataverse, Business Central and F&O share
of OData: server-driven paging and $batch.

Paging: `$top=N` keeps the first N rows; `Prefer: odata.maxpagesize=N`
(N >= 1) cuts a collection into pages;
each page but the last carries an absolute `@odata.nextLink` on the
service's own host (the request's query with `$skiptoken=<offset>`), and the
answer says `Preference-Applied: odata.maxpagesize=N`, as the services do.
A `$skiptoken` alone (a client following a nextLink) keeps paging with the
page size it carries. Without either, the whole collection is one page.

$batch (the Dataverse Web API's, OData 4.0 multipart/mixed): a request body
of parts, each `Content-Type: application/http` with
`Content-Transfer-Encoding: binary` and an HTTP request inside, or a nested
`multipart/mixed` changeset whose parts carry a Content-ID. Request URLs may
be absolute (they must name the service's own host: any other host is
answered 400 in that part, as a foreign URL cannot be executed), absolute
paths, relative to the service root, or `$<Content-ID>` references to an
earlier entity of the same changeset. The answer is `multipart/mixed;
boundary=batchresponse_<guid>`, changesets as `changesetresponse_<guid>`.
"""

import hashlib
import re
import urllib.parse

from common import guid

PAGE_RE = re.compile(r"odata\.maxpagesize\s*=\s*(\d+)")


def page(req, rows, collection_url):
    """(rows of this page, nextLink or None, Preference-Applied headers).
    $top cuts the collection first (client-driven paging, no nextLink)."""
    top = req.query.get("$top", "")
    if top.isdigit():
        rows = rows[:int(top)]
    m = PAGE_RE.search(req.header("prefer") or "")
    tok = req.query.get("$skiptoken")
    size = int(m.group(1)) if m and int(m.group(1)) > 0 else None
    start = 0
    if tok:
        try:
            start, _, carried = tok.partition(":")
            start = max(0, int(start))
            size = size or int(carried or 0) or None
        except ValueError:
            start, size = 0, size
    applied = [("Preference-Applied", "odata.maxpagesize=%d" % size)] if m and size else []
    if not size:
        return rows[start:], None, applied
    chunk = rows[start:start + size]
    if start + size >= len(rows):
        return chunk, None, applied
    q = [(k, v) for k, v in urllib.parse.parse_qsl(urllib.parse.urlsplit(req.target).query, keep_blank_values=True)
         if k != "$skiptoken"]
    q.append(("$skiptoken", "%d:%d" % (start + size, size)))
    return chunk, collection_url + "?" + urllib.parse.urlencode(q, safe="$,'()"), applied


# ---- $batch -----------------------------------------------------------------------


class BatchError(Exception):
    pass


def boundary_of(ctype):
    m = re.search(r'boundary\s*=\s*"?([^";]+)"?', ctype or "", re.I)
    if not m or not (ctype or "").lower().startswith("multipart/mixed"):
        raise BatchError("Content-Type must be multipart/mixed with a boundary")
    return m.group(1).strip()


def split_parts(body, boundary):
    """The parts of a multipart body (bytes) as (headers dict, payload bytes)."""
    delim = b"--" + boundary.encode()
    if not body.startswith(delim) and (b"\r\n" + delim) not in body:
        raise BatchError("no boundary delimiter")
    pieces = (b"\r\n" + body).split(b"\r\n" + delim)
    out = []
    for piece in pieces[1:]:
        if piece.startswith(b"--"):
            return out
        piece = piece[piece.find(b"\r\n") + 2:] if b"\r\n" in piece else b""
        head, sep, payload = piece.partition(b"\r\n\r\n")
        if not sep:
            raise BatchError("a part without a header block")
        hs = {}
        for line in head.decode("latin-1").split("\r\n"):
            if ":" in line:
                k, v = line.split(":", 1)
                hs[k.strip().lower()] = v.strip()
        out.append((hs, payload))
    raise BatchError("no closing delimiter")


class SubReq:
    """One request of a batch, shaped like httpcore.Req for the handlers."""

    class _Body:
        def __init__(self, data):
            self.data = data
            self.mode = "length"

        def read_all(self, limit=16 << 20):
            return self.data[:limit]

        def read(self, n=1 << 20):
            d, self.data = self.data[:n], self.data[n:]
            return d

    def __init__(self, outer, method, target, headers, body):
        self.h = outer.h
        self.method, self.target, self.version = method, target, "HTTP/1.1"
        self.headers = headers
        self.host = outer.host
        split = urllib.parse.urlsplit(target)
        self.path = split.path
        self.query = {}
        for k, v in urllib.parse.parse_qsl(split.query, keep_blank_values=True):
            self.query.setdefault(k, v)
        self.body = SubReq._Body(body)
        self.status = None
        self.answer = None

    def header(self, name, default=None):
        for k, v in self.headers:
            if k.lower() == name.lower():
                return v
        return default

    def send(self, status, headers=(), body=b"", close=False, reason=None):
        self.status = status
        self.answer = (status, list(headers), body.encode() if isinstance(body, str) else body)

    def send_json(self, status, obj, headers=(), **kw):
        from common import jdump
        self.send(status, [("Content-Type", "application/json; charset=utf-8")] + list(headers), jdump(obj))


REASONS = {200: "OK", 201: "Created", 204: "No Content", 400: "Bad Request", 404: "Not Found",
           405: "Method Not Allowed"}


def parse_http(payload):
    """An application/http part -> (method, url, headers, body)."""
    head, _, body = payload.partition(b"\r\n\r\n")
    lines = head.decode("utf-8").split("\r\n")
    m = re.match(r"^([A-Z]+) (\S+) HTTP/1\.1$", lines[0])
    if not m:
        raise BatchError("bad request line %r" % lines[0][:80])
    hs = [tuple(x.strip() for x in line.split(":", 1)) for line in lines[1:] if ":" in line]
    return m.group(1), m.group(2), hs, body.rstrip(b"\r\n")


def run_batch(req, service_root, dispatch, seen):
    """Execute a $batch request; dispatch(subreq) answers one request.
    service_root: https://host/api/data/v9.2/ ; seen collects each part's
    (method, url) as received, for the tests."""
    body = req.body.read_all(64 << 20)
    req.batch_sha256 = hashlib.sha256(body).hexdigest()
    boundary = boundary_of(req.header("content-type"))
    parts = split_parts(body, boundary)
    out_b = "batchresponse_" + guid()
    out = []
    for hs, payload in parts:
        ctype = hs.get("content-type", "").lower()
        if ctype.startswith("multipart/mixed"):
            cs_b = "changesetresponse_" + guid()
            ids = {}
            answers = []
            for chs, cpayload in split_parts(payload, boundary_of(hs["content-type"])):
                cid = chs.get("content-id")
                answers.append((cid, run_one(req, cpayload, service_root, dispatch, seen, ids, cid)))
            inner = "".join("--%s\r\nContent-Type: application/http\r\nContent-Transfer-Encoding: binary\r\n%s"
                            "\r\n%s" % (cs_b, "Content-ID: %s\r\n" % cid if cid else "", a.decode("utf-8"))
                            for cid, a in answers) + "--%s--\r\n" % cs_b
            out.append("--%s\r\nContent-Type: multipart/mixed; boundary=%s\r\n\r\n%s" % (out_b, cs_b, inner))
        elif ctype.startswith("application/http"):
            a = run_one(req, payload, service_root, dispatch, seen, {})
            out.append("--%s\r\nContent-Type: application/http\r\nContent-Transfer-Encoding: binary\r\n\r\n%s"
                       % (out_b, a.decode("utf-8")))
        else:
            raise BatchError("part Content-Type %r" % ctype)
    text = "".join(out) + "--%s--\r\n" % out_b
    return "multipart/mixed; boundary=" + out_b, text.encode("utf-8")


def run_one(req, payload, service_root, dispatch, seen, ids, cid=None):
    method, url, hs, body = parse_http(payload)
    seen.append((method, url))
    root = urllib.parse.urlsplit(service_root)
    if url.startswith("$"):
        cid, _, rest = url[1:].partition("/")
        if cid not in ids:
            return answer(400, [], b'{"error":{"code":"0x0","message":"unknown Content-ID $%s"}}' % cid.encode())
        url = ids[cid] + ("/" + rest if rest else "")
    split = urllib.parse.urlsplit(url)
    if split.scheme:
        if split.netloc.lower() != root.netloc.lower():
            return answer(400, [("Content-Type", "application/json; odata.metadata=minimal")],
                          b'{"error":{"code":"0x80060888","message":"The URL host %s is not this organization"}}'
                          % split.netloc.encode())
        target = split.path + ("?" + split.query if split.query else "")
    elif url.startswith("/"):
        target = url
    else:
        target = root.path + url
    sub = SubReq(req, method, target, hs, body)
    dispatch(sub)
    status, rhs, rbody = sub.answer
    ent = next((v for k, v in rhs if k.lower() == "odata-entityid"), None)
    if ent and cid:
        ids[cid] = ent
    return answer(status, rhs, rbody)


def answer(status, headers, body):
    lines = ["HTTP/1.1 %d %s" % (status, REASONS.get(status, "Status"))]
    lines += ["%s: %s" % (k, v) for k, v in headers if k.lower() not in ("content-length", "req_id")]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("utf-8") + (body or b"") + b"\r\n"
