// dynamics_web_api.mjs - drive s2s-proxy with the npm dynamics-web-api
// library, as a Node integration for Dataverse would.
//
//   node dynamics_web_api.mjs MODULE_PATH SERVER_URL FILTER
//
// MODULE_PATH: dynamics-web-api's ESM entry (installed by test_clients.py
// into tests/.work). SERVER_URL: http://127.0.0.1:<port>/dataverse.
// Prints one JSON object: per step, {"value": ...} or {"error": {...}} with
// the library's status/code/message, so the Python test asserts exactly.
import { pathToFileURL } from "node:url";

const [modulePath, serverUrl, filter] = process.argv.slice(2);
const { DynamicsWebApi } = await import(pathToFileURL(modulePath).href);

let tokenCalls = 0;
const api = new DynamicsWebApi({
    serverUrl,
    dataApi: { version: "9.2" },
    propagateErrors: true, // update/delete: errors reach us instead of a bare false
    // The proxy drops the caller's Authorization and injects its own token.
    onTokenRefresh: async () => {
        tokenCalls++;
        return "dummy-caller-token";
    },
});

function errorOf(e) {
    return { status: e.status ?? null, code: e.code ?? null, message: e.message ?? String(e) };
}

async function step(fn) {
    try {
        return { value: await fn() };
    } catch (e) {
        return { error: errorOf(e) };
    }
}

const out = {};
out.whoami = await step(() => api.callFunction("WhoAmI"));
out.retrieveMultiple = await step(() =>
    api.retrieveMultiple({ collection: "accounts", select: ["name", "accountid"], filter, top: 2 })
);
out.createReturn = await step(() =>
    api.create({ collection: "accounts", data: { name: "Contoso \"Quoted\" & Sons", revenue: 12.5 },
                 returnRepresentation: true })
);
out.createPlain = await step(() => api.create({ collection: "accounts", data: { name: "Plain Create Ltd" } }));
const id = out.createReturn.value?.accountid;
out.retrieve = await step(() =>
    api.retrieve({ collection: "accounts", key: id, select: ["name", "revenue"] })
);
out.update = await step(() =>
    api.update({ collection: "accounts", key: id, data: { name: "Renamed Ltd" } })
);
out.retrieveUpdated = await step(() => api.retrieve({ collection: "accounts", key: id, select: ["name"] }));
out.deleteRecord = await step(() => api.deleteRecord({ collection: "accounts", key: id }));
out.retrieveDeleted = await step(() => api.retrieve({ collection: "accounts", key: id }));
out.batch = await step(async () => {
    api.startBatch();
    api.callFunction("WhoAmI");
    api.retrieveMultiple({ collection: "accounts", select: ["name"] });
    return await api.executeBatch();
});
out.tokenCalls = tokenCalls;
process.stdout.write(JSON.stringify(out) + "\n");
