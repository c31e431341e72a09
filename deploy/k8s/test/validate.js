#!/usr/bin/env node
// validate.js — checks every object of rendered Kubernetes manifests against
// the Kubernetes API schemas, with the kubernetes-models validators (the
// OpenAPI schemas of the API server, compiled to ajv functions), and the
// Prometheus Operator's CRDs with @kubernetes-models/prometheus-operator.
//
//   kubectl kustomize deploy/k8s/overlays/dev | node deploy/k8s/test/validate.js
//   node deploy/k8s/test/validate.js rendered.yaml [more.yaml ...]
//
// Prints "ok <apiVersion> <Kind>/<name>" per valid object and
// "error <apiVersion> <Kind>/<name>: <path> <message>" per problem; exits 0
// when every object is valid, 1 when one is not (or is of a kind no package
// here has a schema for: such an object is never passed unchecked), 2 on
// unreadable input. The schemas, like the API server's, allow fields they do
// not list, so an unknown field is not caught here (tests/integration/
// test_k8s_manifests.py checks the fields vecshard relies on).
import { readFileSync } from "node:fs";
import { parseAllDocuments } from "yaml";

// API groups served by CRD packages; every other group is Kubernetes' own.
const CRD_PACKAGES = { "monitoring.coreos.com": "@kubernetes-models/prometheus-operator" };

/* The model class of apiVersion/kind, or null when no package has it. */
async function modelFor(apiVersion, kind) {
  const slash = apiVersion.indexOf("/");
  const group = slash < 0 ? "" : apiVersion.slice(0, slash);
  const pkg = CRD_PACKAGES[group] ?? "kubernetes-models";
  try {
    const mod = await import(`${pkg}/${apiVersion}/${kind}`);
    return mod[kind] ?? null;
  } catch (e) {
    if (e.code === "ERR_PACKAGE_PATH_NOT_EXPORTED" || e.code === "ERR_MODULE_NOT_FOUND") return null;
    throw e;
  }
}

/* "<apiVersion> <Kind>/<name>" for messages. */
function describe(obj) {
  const name = obj?.metadata?.name ?? "(no name)";
  return `${obj?.apiVersion ?? "(no apiVersion)"} ${obj?.kind ?? "(no kind)"}/${name}`;
}

/* The problems of one object, as strings ([] when valid). */
async function problems(obj) {
  if (obj === null || typeof obj !== "object" || Array.isArray(obj)) return ["not a mapping"];
  if (typeof obj.apiVersion !== "string" || typeof obj.kind !== "string")
    return ["apiVersion and kind must be strings"];
  if (typeof obj.metadata?.name !== "string" || obj.metadata.name === "")
    return ["metadata.name is missing"];
  const Model = await modelFor(obj.apiVersion, obj.kind);
  if (Model === null) return [`no schema for ${obj.apiVersion} ${obj.kind}`];
  try {
    new Model(obj).validate();
    return [];
  } catch (e) {
    if (Array.isArray(e.errors) && e.errors.length > 0)
      return e.errors.map((x) => `${x.instancePath || "/"} ${x.message}`);
    return [e.message];
  }
}

async function main(argv) {
  let texts;
  try {
    texts = argv.length === 0 ? [readFileSync(0, "utf8")] : argv.map((f) => readFileSync(f, "utf8"));
  } catch (e) {
    console.error(`validate.js: ${e.message}`);
    return 2;
  }
  let bad = 0;
  let count = 0;
  for (const text of texts) {
    for (const doc of parseAllDocuments(text)) {
      if (doc.errors.length > 0) {
        console.error(`validate.js: YAML: ${doc.errors[0].message}`);
        return 2;
      }
      const obj = doc.toJS();
      if (obj === null) continue; // an empty document between two "---"
      count++;
      const found = await problems(obj);
      if (found.length === 0) {
        console.log(`ok ${describe(obj)}`);
      } else {
        bad++;
        for (const p of found) console.log(`error ${describe(obj)}: ${p}`);
      }
    }
  }
  if (count === 0) {
    console.error("validate.js: no object in the input");
    return 2;
  }
  console.log(`${count - bad} valid, ${bad} invalid`);
  return bad === 0 ? 0 : 1;
}

process.exitCode = await main(process.argv.slice(2));
