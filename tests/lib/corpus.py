"""corpus.py - the hostile-input corpus format (tests/data/hostile/cases.txt).

The file is data: blocks of `key = value` lines, one block per case.

  # comment (a line starting with '#')
  @define NAME = value      a macro, used as ${NAME} in send/up/body values
                            (macros may use earlier macros)

  [case_name]               starts a case; names are [a-z0-9_] and unique
  send = bytes              the raw bytes the client sends on one connection
  send += bytes             appended to the previous value (any key)
  expect = 200 400 close code=bad_framing
                            one status per response the client must get, in
                            order ("400|501": either, where RFC 9110/9112 leave
                            the choice to the server; "400|drop": a 400, or
                            no answer at all and the connection closed, for
                            bytes that are no request-line: RFC 9112 3 says
                            SHOULD answer 400, libmicrohttpd just closes); `close`: the proxy must close the
                            connection after the last one (and send nothing
                            more); code=X: the last response is problem+json
                            with "code": "X" (only for the proxy's own refusals);
                            `drained`: the client could send every byte without
                            a reset (a lingering close, RFC 9112 9.6: after a
                            refusal the rest of the request is read and
                            dropped, so the client can read the answer)
  upstream = none | exact | incomplete
                            none: the upstream receives no byte at all;
                            exact: the upstream receives exactly the `up`
                            requests (in order, across connections), nothing
                            else; incomplete: the upstream sees a request head
                            but never a complete request, and the proxy closes
                            that connection; "none|incomplete": either (for
                            errors found in a streamed body, where the proxy
                            may or may not have started the upstream request)
  up = bytes                one expected upstream request (repeat for several);
                            <TOKEN> matches the bearer token, <RID> the
                            proxy-generated request id (the same value at each
                            use within one request)
  methods = HEAD GET        request methods of the responses, in order, for
                            framing them (default: the first word of send for
                            the first response, GET after it)
  body = bytes              exact body of the response with the same index
                            (repeat per response; optional)
  timeout = 3               seconds the case may take (default 3)
  note = text               why the expectation is what it is
  xfail = reason            a known bug: the case still runs, but a failure is
                            reported as a skip line

In `send`, {{wait-upstream}} holds the rest back until the upstream has
received a request head (to hit the proxy mid-stream, after it has started
the upstream request).

Escapes in byte values: \\r \\n \\t \\0 \\\\ \\xHH, and {{TEXT*N}} for TEXT
(itself with escapes) repeated N times. Leading and trailing spaces of a value
are kept only when written as \\x20.
"""

import os
import re

HERE = os.path.dirname(os.path.abspath(__file__))
DEFAULT_PATH = os.path.join(HERE, "..", "data", "hostile", "cases.txt")

BYTE_KEYS = ("send", "up", "body")
WAIT_UPSTREAM = "{{wait-upstream}}"
KNOWN_KEYS = ("send", "expect", "upstream", "up", "methods", "body", "timeout", "note", "xfail")
MULTI_KEYS = ("up", "body")


class CorpusError(Exception):
    pass


_REP = re.compile(r"\{\{(.*?)\*(\d+)\}\}")
_ESC = re.compile(r"\\(x[0-9a-fA-F]{2}|.)")
_SIMPLE = {"r": b"\r", "n": b"\n", "t": b"\t", "0": b"\0", "\\": b"\\"}


def _unescape_plain(text):
    out = []
    pos = 0
    for m in _ESC.finditer(text):
        out.append(text[pos:m.start()].encode("utf-8"))
        e = m.group(1)
        if e[0] == "x" and len(e) == 3:
            out.append(bytes([int(e[1:], 16)]))
        elif e in _SIMPLE:
            out.append(_SIMPLE[e])
        else:
            raise CorpusError("unknown escape \\%s" % e)
        pos = m.end()
    if text[pos:].count("\\"):
        raise CorpusError("dangling backslash in %r" % text[-20:])
    out.append(text[pos:].encode("utf-8"))
    return b"".join(out)


def unescape(text):
    """Escaped text -> bytes: {{TEXT*N}} repeats (TEXT with escapes), then escapes."""
    out = []
    pos = 0
    for m in _REP.finditer(text):
        out.append(_unescape_plain(text[pos:m.start()]))
        out.append(_unescape_plain(m.group(1)) * int(m.group(2)))
        pos = m.end()
    out.append(_unescape_plain(text[pos:]))
    return b"".join(out)


class Case:
    def __init__(self, name, line):
        self.name = name
        self.line = line
        self.fields = {}  # key -> str (or [str] for MULTI_KEYS), escaped text

    # parsed views -------------------------------------------------------------

    @property
    def send_parts(self):
        """The send bytes cut at each {{wait-upstream}}: the client sends the
        next part only once the upstream has received a request head."""
        return [unescape(p) for p in self.fields["send"].split(WAIT_UPSTREAM)]

    @property
    def send(self):
        return b"".join(self.send_parts)

    @property
    def drained(self):
        return "drained" in self.fields["expect"].split()

    @property
    def statuses(self):
        """[[allowed status, ...] per response]; "400|501" where the RFC allows
        either; 0 stands for `drop` (no answer, the connection closed)."""
        return [[0 if x == "drop" else int(x) for x in t.split("|")] for t in self.fields["expect"].split()
                if re.fullmatch(r"(\d{3}|drop)(\|(\d{3}|drop))*", t)]

    @property
    def close(self):
        return "close" in self.fields["expect"].split()

    @property
    def code(self):
        for t in self.fields["expect"].split():
            if t.startswith("code="):
                return t[5:]
        return None

    @property
    def upstream(self):
        return self.fields["upstream"].strip()

    @property
    def upstreams(self):
        """The allowed upstream outcomes ("none|incomplete": either)."""
        return self.upstream.split("|")

    @property
    def up(self):
        return [unescape(u) for u in self.fields.get("up", [])]

    @property
    def bodies(self):
        return [unescape(b) for b in self.fields.get("body", [])]

    @property
    def methods(self):
        m = self.fields.get("methods")
        if m:
            return m.split()
        first = self.send.split(b" ", 1)[0].decode("latin-1")
        return [first] + ["GET"] * 16

    @property
    def timeout(self):
        return float(self.fields.get("timeout", "3"))

    @property
    def xfail(self):
        return self.fields.get("xfail")

    @property
    def note(self):
        return self.fields.get("note", "")


def load(path=DEFAULT_PATH):
    """-> [Case] in file order. Raises CorpusError with FILE:LINE."""
    macros = {}
    cases, names = [], set()
    cur = None
    last_key = None

    def expand(value, lineno):
        def sub(m):
            if m.group(1) not in macros:
                raise CorpusError("%s:%d: unknown macro ${%s}" % (path, lineno, m.group(1)))
            return macros[m.group(1)]
        return re.sub(r"\$\{([A-Za-z0-9_]+)\}", sub, value)

    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            line = line.rstrip("\n")
            s = line.strip()
            if not s or s.startswith("#"):
                continue
            if s.startswith("@define "):
                name, eqs, value = s[8:].partition("=")
                if not eqs:
                    raise CorpusError("%s:%d: @define NAME = value" % (path, lineno))
                macros[name.strip()] = expand(value.strip(), lineno)
                continue
            m = re.fullmatch(r"\[([a-z0-9_]+)\]", s)
            if m:
                if m.group(1) in names:
                    raise CorpusError("%s:%d: duplicate case %s" % (path, lineno, m.group(1)))
                names.add(m.group(1))
                cur = Case(m.group(1), lineno)
                cases.append(cur)
                last_key = None
                continue
            m = re.fullmatch(r"([a-z]+)\s*(\+?=)\s?(.*)", s)
            if not m or cur is None:
                raise CorpusError("%s:%d: cannot parse %r" % (path, lineno, s[:80]))
            key, op, value = m.group(1), m.group(2), m.group(3).strip()
            if key not in KNOWN_KEYS:
                raise CorpusError("%s:%d: unknown key %s" % (path, lineno, key))
            if key in BYTE_KEYS:
                value = expand(value, lineno)
            if op == "+=":
                if key != last_key:
                    raise CorpusError("%s:%d: %s += must follow %s" % (path, lineno, key, key))
                if key in MULTI_KEYS:
                    cur.fields[key][-1] += value
                else:
                    cur.fields[key] += value
            elif key in MULTI_KEYS:
                cur.fields.setdefault(key, []).append(value)
            else:
                if key in cur.fields:
                    raise CorpusError("%s:%d: duplicate key %s in %s" % (path, lineno, key, cur.name))
                cur.fields[key] = value
            last_key = key
    for c in cases:
        for k in ("send", "expect", "upstream"):
            if k not in c.fields:
                raise CorpusError("%s:%d: case %s has no %s" % (path, c.line, c.name, k))
        if not c.upstreams or any(u not in ("none", "exact", "incomplete") for u in c.upstreams):
            raise CorpusError("%s:%d: case %s: upstream %r" % (path, c.line, c.name, c.upstream))
        if ("exact" in c.upstreams) != bool(c.fields.get("up")):
            raise CorpusError("%s:%d: case %s: `up` lines go with upstream = exact" % (path, c.line, c.name))
        if not c.statuses:
            raise CorpusError("%s:%d: case %s: expect names no status" % (path, c.line, c.name))
        c.send  # escapes are valid
        c.up
    return cases
