#!/usr/bin/env python3
"""Write the hand-made seeds of fuzz_inbound (raw request bytes, one file each)
into fuzz/corpus/fuzz_inbound/ (or the directory given). The hosts and paths
match the configuration in fuzz/fuzz_inbound.c: route dv (Host
contoso.crm4.dynamics.com, soap_bridge), route keyed (/keyed/, inbound key),
route failing (everything else, token endpoint unreachable), the sts_facade
paths."""
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = sys.argv[1] if len(sys.argv) > 1 else os.path.join(HERE, "corpus", "fuzz_inbound")
DV = b"contoso.crm4.dynamics.com"
KEY = b"fuzz-inbound-key-0123456789"


def req(method, target, headers=(), body=b"", version=b"HTTP/1.1", host=DV):
    lines = [method + b" " + target + b" " + version]
    if host is not None:
        lines.append(b"Host: " + host)
    lines += list(headers)
    return b"\r\n".join(lines) + b"\r\n\r\n" + body


def chunked(*parts, trailers=()):
    out = b""
    for p in parts:
        out += b"%x\r\n" % len(p) + p + b"\r\n"
    return out + b"0\r\n" + b"".join(t + b"\r\n" for t in trailers) + b"\r\n"


def read(path, skip=0):
    with open(os.path.join(HERE, "..", path), "rb") as f:
        return f.read()[skip:]


JSON = b'{"name":"Contoso","revenue":1000}'
WHOAMI = read("tests/data/soap/whoami_12.xml")
RST2 = read("fuzz/corpus/fuzz_soap/rst2_username", 1)
SOAP12 = b"application/soap+xml; charset=utf-8"

seeds = {
    "get_dv": req(b"GET", b"/api/data/v9.2/accounts?$top=1", [b"Accept: application/json"]),
    "get_failing": req(b"GET", b"/", host=b"example.com"),
    "head_dv": req(b"HEAD", b"/api/data/v9.2/WhoAmI"),
    "options_star": req(b"OPTIONS", b"*"),
    "delete_dv": req(b"DELETE", b"/api/data/v9.2/accounts(1)", [b"If-Match: *"]),
    "post_cl": req(b"POST", b"/api/data/v9.2/accounts",
                   [b"Content-Type: application/json", b"Content-Length: %d" % len(JSON)], JSON),
    "post_chunked": req(b"POST", b"/api/data/v9.2/accounts",
                        [b"Content-Type: application/json", b"Transfer-Encoding: chunked"],
                        chunked(JSON[:10], JSON[10:])),
    "post_chunked_trailers": req(b"POST", b"/api/x", [b"Transfer-Encoding: chunked", b"Trailer: X-Sum"],
                                 chunked(b"abc", trailers=[b"X-Sum: 1"])),
    "patch_empty": req(b"PATCH", b"/api/data/v9.2/accounts(1)", [b"Content-Length: 0"]),
    "pipelined_get_get": req(b"GET", b"/a") + req(b"GET", b"/b", host=b"other.example"),
    "pipelined_post_get": req(b"POST", b"/a", [b"Content-Length: 3"], b"xyz") + req(b"GET", b"/b"),
    "pipelined_three_routes": req(b"GET", b"/x") + req(b"GET", b"/y", host=b"h")
    + req(b"GET", b"/keyed/z", [b"S2S-Proxy-Key: " + KEY], host=b"h"),
    "keyed_ok": req(b"POST", b"/keyed/api?a=1", [b"S2S-Proxy-Key: " + KEY, b"Content-Length: 2"], b"{}",
                    host=b"k"),
    "keyed_bad_key": req(b"GET", b"/keyed/api", [b"S2S-Proxy-Key: wrong-key-wrong-key-wrong"], host=b"k"),
    "keyed_no_key": req(b"GET", b"/keyed/api", host=b"k"),
    "keyed_too_large": req(b"POST", b"/keyed/api", [b"S2S-Proxy-Key: " + KEY, b"Content-Length: 5000"],
                           b"a" * 100, host=b"k"),
    "keyed_chunked_too_large": req(b"POST", b"/keyed/api", [b"S2S-Proxy-Key: " + KEY,
                                   b"Transfer-Encoding: chunked"], chunked(b"b" * 3000, b"c" * 3000), host=b"k"),
    "http10_keepalive": req(b"GET", b"/", [b"Connection: keep-alive"], version=b"HTTP/1.0") + req(b"GET", b"/"),
    "http10_no_host": req(b"GET", b"/", version=b"HTTP/1.0", host=None),
    "http11_no_host": req(b"GET", b"/", host=None),
    "http09": b"GET /\r\n",
    "absolute_form": req(b"GET", b"https://contoso.crm4.dynamics.com/api/data/v9.2/WhoAmI"),
    "absolute_form_foreign": req(b"GET", b"http://evil.example/x"),
    "connect": req(b"CONNECT", b"contoso.crm4.dynamics.com:443"),
    "trace": req(b"TRACE", b"/", [b"Max-Forwards: 0"]),
    "obs_fold": b"GET / HTTP/1.1\r\nHost: " + DV + b"\r\nX-A: one\r\n two\r\n\r\n",
    "te_cl": req(b"POST", b"/", [b"Content-Length: 4", b"Transfer-Encoding: chunked"], chunked(b"smug")),
    "cl_te_smuggle": req(b"POST", b"/", [b"Content-Length: 6", b"Transfer-Encoding: chunked"],
                         b"0\r\n\r\nGET /admin HTTP/1.1\r\nHost: x\r\n\r\n"),
    "cl_cl": req(b"POST", b"/", [b"Content-Length: 3", b"Content-Length: 4"], b"abcd"),
    "cl_list": req(b"POST", b"/", [b"Content-Length: 3, 3"], b"abc"),
    "cl_plus": req(b"POST", b"/", [b"Content-Length: +3"], b"abc"),
    "cl_huge": req(b"POST", b"/", [b"Content-Length: 99999999999999999999999"], b"abc"),
    "te_gzip_chunked": req(b"POST", b"/", [b"Transfer-Encoding: gzip, chunked"], chunked(b"x")),
    "te_twice": req(b"POST", b"/", [b"Transfer-Encoding: chunked", b"Transfer-Encoding: chunked"], chunked(b"x")),
    "te_identity": req(b"POST", b"/", [b"Transfer-Encoding: identity", b"Content-Length: 1"], b"x"),
    "nul_in_header": b"GET / HTTP/1.1\r\nHost: " + DV + b"\r\nX-A: a\x00b\r\n\r\n",
    "nul_in_target": b"GET /a\x00b HTTP/1.1\r\nHost: " + DV + b"\r\n\r\n",
    "bare_cr": b"GET / HTTP/1.1\rHost: " + DV + b"\r\nX-A: a\rb\r\n\r\n",
    "bare_lf": b"GET / HTTP/1.1\nHost: " + DV + b"\nX-A: b\n\n",
    "dup_host": req(b"GET", b"/", [b"Host: other.example"]),
    "space_before_colon": b"GET / HTTP/1.1\r\nHost : " + DV + b"\r\n\r\n",
    "empty_header_name": b"GET / HTTP/1.1\r\nHost: " + DV + b"\r\n: empty\r\n\r\n",
    "header_ctl": req(b"GET", b"/", [b"X-A: \x01\x7f\xff"]),
    "bad_method": req(b"G(T", b"/"),
    "long_method": req(b"ABCDEFGHIJKLMNOPQRSTUVWXYZ", b"/"),
    "huge_chunk_ext": req(b"POST", b"/", [b"Transfer-Encoding: chunked"],
                          b"3;" + b"e" * 9000 + b"\r\nabc\r\n0\r\n\r\n"),
    "chunk_ext_ws": req(b"POST", b"/", [b"Transfer-Encoding: chunked"], b"3 ; a=b\r\nabc\r\n0\r\n\r\n"),
    "chunk_size_overflow": req(b"POST", b"/", [b"Transfer-Encoding: chunked"],
                               b"fffffffffffffffff1\r\nabc\r\n0\r\n\r\n"),
    "chunk_bad_hex": req(b"POST", b"/", [b"Transfer-Encoding: chunked"], b"zz\r\nabc\r\n0\r\n\r\n"),
    "chunk_no_end": req(b"POST", b"/", [b"Transfer-Encoding: chunked"], b"3\r\nabc\r\n"),
    "expect_100": req(b"POST", b"/api/data/v9.2/accounts", [b"Expect: 100-continue", b"Content-Length: 2"], b"{}"),
    "expect_bad": req(b"POST", b"/", [b"Expect: 200-ok", b"Content-Length: 2"], b"{}"),
    "path_traversal": req(b"GET", b"/api/../../etc/passwd"),
    "path_traversal_enc": req(b"GET", b"/keyed/%2e%2e/%2E%2e/x", [b"S2S-Proxy-Key: " + KEY], host=b"k"),
    "long_url": req(b"GET", b"/" + b"a" * 2000),
    "many_headers": req(b"GET", b"/", [b"X-H%d: %s" % (i, b"v" * 100) for i in range(90)]),
    "connection_close": req(b"GET", b"/", [b"Connection: close"]) + req(b"GET", b"/after-close"),
    "connection_tokens": req(b"GET", b"/", [b"Connection: keep-alive, X-Secret, TE", b"X-Secret: 1", b"TE: trailers"]),
    "upgrade_websocket": req(b"GET", b"/", [b"Connection: Upgrade", b"Upgrade: websocket",
                                            b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==",
                                            b"Sec-WebSocket-Version: 13"]),
    "h2c_upgrade": req(b"GET", b"/", [b"Connection: Upgrade, HTTP2-Settings", b"Upgrade: h2c",
                                      b"HTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA"]),
    "h2_preface": b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
    "tls_client_hello": bytes.fromhex("16030100a5010000a10303") + bytes(32) + b"\x00\x00\x02\x13\x01\x01\x00",
    "get_with_body": req(b"GET", b"/", [b"Content-Length: 5"], b"hello"),
    "correlation_ids": req(b"GET", b"/api/data/v9.2/WhoAmI", [b"x-ms-client-request-id: abc",
                                                              b"x-ms-correlation-request-id: " + b"c" * 200,
                                                              b"request-id: r"]),
    "auth_header_from_client": req(b"GET", b"/", [b"Authorization: Bearer client-token",
                                                  b"Cookie: a=b", b"Proxy-Authorization: x"]),
    "partial_headers": b"GET /api HTTP/1.1\r\nHost: " + DV + b"\r\nX-Partial: ",
    "partial_body": req(b"POST", b"/", [b"Content-Length: 100"], b"only-some"),
    "soap_bridge_whoami": req(b"POST", b"/XRMServices/2011/Organization.svc",
                              [b"Content-Type: " + SOAP12, b"Content-Length: %d" % len(WHOAMI)], WHOAMI),
    "soap_bridge_chunked": req(b"POST", b"/XRMServices/2011/Organization.svc",
                               [b"Content-Type: " + SOAP12, b"Transfer-Encoding: chunked"],
                               chunked(WHOAMI[:500], WHOAMI[500:])),
    "soap_bridge_not_xml": req(b"POST", b"/XRMServices/2011/Organization.svc",
                               [b"Content-Type: " + SOAP12, b"Content-Length: 5"], b"<a><b"),
    "sts_rst2": req(b"POST", b"/RST2.srf", [b"Content-Type: " + SOAP12, b"Content-Length: %d" % len(RST2)],
                    RST2, host=b"login.live.com"),
    "sts_realm": req(b"GET", b"/GetUserRealm.srf?login=user@contoso.com&xml=1", host=b"login.microsoftonline.com"),
    "sts_adfs_empty": req(b"POST", b"/adfs/services/trust/13/usernamemixed", [b"Content-Length: 0"],
                          host=b"sts.contoso.com"),
}

os.makedirs(OUT, exist_ok=True)
for name, data in seeds.items():
    with open(os.path.join(OUT, name), "wb") as f:
        f.write(data)
print("%d seeds in %s" % (len(seeds), OUT))
