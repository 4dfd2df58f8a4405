// node_http.mjs - Node's own HTTP stacks through s2s-proxy: global fetch
// (undici) and the http module.
//
//   node node_http.mjs BASE_URL
//
// BASE_URL: http://127.0.0.1:<port>/dataverse. Prints one JSON object with,
// per case, the status and parsed body the client got (and for the
// keep-alive case whether each request reused the socket).
import http from "node:http";
import { createHash } from "node:crypto";

const base = process.argv[2];
const api = base + "/api/data/v9.2";

// deterministic bodies: byte k is k % 251 (as the simulator and harness.py)
function pattern(n, offset = 0) {
    const b = Buffer.alloc(n);
    for (let i = 0; i < n; i++) b[i] = (offset + i) % 251;
    return b;
}
const sha256 = (buf) => createHash("sha256").update(buf).digest("hex");

async function fetchCase(url, init) {
    const r = await fetch(url, init);
    const text = await r.text();
    return { status: r.status, contentType: r.headers.get("content-type"), body: text ? JSON.parse(text) : null };
}

function httpCase(options, writeBody) {
    return new Promise((resolve, reject) => {
        const req = http.request(options, (res) => {
            const parts = [];
            res.on("data", (d) => parts.push(d));
            res.on("end", () => {
                const text = Buffer.concat(parts).toString("utf8");
                resolve({ status: res.statusCode, reused: req.reusedSocket, localPort: req.socket.localPort,
                          body: text ? JSON.parse(text) : null });
            });
            res.on("error", reject);
        });
        req.on("error", reject);
        writeBody(req);
    });
}

const out = {};
out.fetchGet = await fetchCase(api + "/WhoAmI", { headers: { Accept: "application/json" } });
out.fetchPostJson = await fetchCase(api + "/accounts", {
    method: "POST",
    headers: { "Content-Type": "application/json", Prefer: "return=representation", "OData-Version": "4.0" },
    body: JSON.stringify({ name: "Undici Fetch GmbH", numberofemployees: 42 }),
});

// a streamed request body: undici sends it with Transfer-Encoding: chunked
const STREAM_PARTS = [1, 1000, 65536, 7, 200000];
const streamTotal = STREAM_PARTS.reduce((a, b) => a + b, 0);
let sent = 0;
const parts = STREAM_PARTS.slice();
const stream = new ReadableStream({
    pull(controller) {
        const n = parts.shift();
        if (n === undefined) return controller.close();
        controller.enqueue(new Uint8Array(pattern(n, sent)));
        sent += n;
    },
});
out.fetchStream = await fetchCase(base + "/_test/upload", {
    method: "POST", headers: { "Content-Type": "application/octet-stream" }, body: stream, duplex: "half",
});
out.streamExpect = { len: streamTotal, sha256: sha256(pattern(streamTotal)) };

const url = new URL(base);
const common = { host: url.hostname, port: url.port };
// http module, explicit chunked: several writes, no Content-Length
const pieces = [pattern(10), pattern(70000, 10), pattern(5, 70010)];
out.httpChunked = await httpCase(
    { ...common, method: "POST", path: url.pathname + "/_test/echo",
      headers: { "Content-Type": "application/octet-stream", "Transfer-Encoding": "chunked" }, agent: false },
    (req) => {
        for (const p of pieces) req.write(p);
        req.end();
    });
out.httpChunkedExpect = { len: 70015, sha256: sha256(pattern(70015)) };

// http module, keep-alive agent with one socket: requests 2..4 reuse it
const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
out.keepAlive = [];
for (let i = 0; i < 4; i++) {
    const body = JSON.stringify({ name: "Keep-Alive Account " + i });
    const r = i % 2 === 0
        ? await httpCase({ ...common, method: "GET", path: url.pathname + "/api/data/v9.2/WhoAmI", agent,
                           headers: { Accept: "application/json" } }, (req) => req.end())
        : await httpCase({ ...common, method: "POST", path: url.pathname + "/api/data/v9.2/accounts", agent,
                           headers: { "Content-Type": "application/json", "Content-Length": Buffer.byteLength(body),
                                      Prefer: "return=representation" } },
                         (req) => req.end(body));
    out.keepAlive.push(r);
}
agent.destroy();
process.stdout.write(JSON.stringify(out) + "\n");
