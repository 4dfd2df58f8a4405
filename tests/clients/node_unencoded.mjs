// node_unencoded.mjs - URLs as Node integrations write them (template
// strings, no manual encoding): Node's WHATWG URL percent-encodes space, '"',
// "'", '<' and '>' in a query but sends '{', '}', '|', '^' and '`' as they
// are (and '|', '^' in a path), as does dynamics-web-api for an alternate key.
//
//   node node_unencoded.mjs BASE_URL DWA_MODULE_PATH
//
// Prints one JSON object: per case the status and body text fetch got, and
// for the library case its result or error.
import { pathToFileURL } from "node:url";

const [base, modulePath] = process.argv.slice(2);
const api = base + "/api/data/v9.2";
const out = {};
const cases = {
    braces: api + "/accounts?$select=name&$filter=contains(name,'{x}')",
    pipeCaret: api + "/accounts?$select=name&$filter=name eq 'A|B^C'",
    backquote: api + "/accounts?$select=name&$filter=name eq 'a`b'",
};
for (const [name, url] of Object.entries(cases)) {
    try {
        const r = await fetch(url, { headers: { Accept: "application/json" } });
        out[name] = { status: r.status, body: await r.text() };
    } catch (e) {
        out[name] = { error: String(e.cause?.message ?? e.message) };
    }
}
const { DynamicsWebApi } = await import(pathToFileURL(modulePath).href);
const dwa = new DynamicsWebApi({ serverUrl: base + "/", dataApi: { version: "9.2" },
                                 onTokenRefresh: async () => "dummy-caller-token" });
try {
    out.alternateKey = { value: await dwa.retrieve({ collection: "accounts", key: "accountnumber='A|B'" }) };
} catch (e) {
    out.alternateKey = { error: { status: e.status ?? null, code: e.code ?? null, message: e.message } };
}
process.stdout.write(JSON.stringify(out) + "\n");
