// Checks Istio resources (a JSON array of documents, the file named by the first argument)
// with the validators @kubernetes-models/istio generates from a current Istio release's CRDs.
// Prints one line per document that fails and exits 1; exits 2 on a kind it does not know.
import { readFileSync } from "node:fs";

const docs = JSON.parse(readFileSync(process.argv[2], "utf8"));
let failed = 0;
for (const doc of docs) {
  const [group, version] = doc.apiVersion.split("/");
  let model;
  try {
    model = await import(`@kubernetes-models/istio/${group}/${version}/${doc.kind}`);
  } catch (e) {
    console.log(`${doc.apiVersion} ${doc.kind}: no validator (${e.code ?? e.message})`);
    process.exit(2);
  }
  try {
    new model[doc.kind](doc).validate();
  } catch (e) {
    failed++;
    console.log(`${doc.kind}/${doc.metadata?.name}: ${e.message}`);
  }
}
console.log(`${docs.length - failed} of ${docs.length} documents valid`);
process.exit(failed ? 1 : 0);
