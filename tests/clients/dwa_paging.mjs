// dwa_paging.mjs - paging, creates and a changeset $batch through a prefix
// route with the npm dynamics-web-api library and no token code of the
// caller's (onTokenRefresh hands a dummy the proxy drops).
//
//   node dwa_paging.mjs MODULE_PATH SERVER_URL PAGE_SIZE
//
// Prints one JSON object: per step, {"value": ...} or {"error": {...}}.
import { pathToFileURL } from "node:url";

const [modulePath, serverUrl, pageSize] = process.argv.slice(2);
const { DynamicsWebApi } = await import(pathToFileURL(modulePath).href);

const api = new DynamicsWebApi({
    serverUrl,
    dataApi: { version: "9.2" },
    propagateErrors: true,
    onTokenRefresh: async () => "dummy-caller-token",
});

async function step(fn) {
    try {
        return { value: await fn() };
    } catch (e) {
        return { error: { status: e.status ?? null, code: e.code ?? null, message: e.message ?? String(e) } };
    }
}

const size = Number(pageSize);
const out = {};
out.create = await step(() => api.create({ collection: "accounts", data: { name: "Created by dwa" } }));
out.retrieveAll = await step(() =>
    api.retrieveAll({ collection: "accounts", select: ["name", "accountid"], maxPageSize: size })
);
// page by page: each nextLink handed back to the library as it came
out.pages = await step(async () => {
    const pages = [];
    let page = await api.retrieveMultiple({ collection: "accounts", select: ["name"], maxPageSize: size });
    pages.push(page);
    while (page.oDataNextLink) {
        page = await api.retrieveMultiple({ collection: "accounts", select: ["name"], maxPageSize: size },
                                          page.oDataNextLink);
        pages.push(page);
    }
    return pages.map((p) => ({ n: p.value.length, next: p.oDataNextLink ?? null,
                               ids: p.value.map((r) => r.accountid) }));
});
out.batch = await step(async () => {
    api.startBatch();
    api.retrieveMultiple({ collection: "accounts", select: ["name"], top: 1 });
    api.create({ collection: "accounts", data: { name: "Batch create 1" }, contentId: "1" });
    api.update({ collection: "$1", data: { name: "Batch create 1, renamed" } });
    api.create({ collection: "accounts", data: { name: "Batch create 2" } });
    return await api.executeBatch();
});
process.stdout.write(JSON.stringify(out) + "\n");
