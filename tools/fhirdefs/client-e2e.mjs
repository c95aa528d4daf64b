// client-e2e.mjs drives a running careflow server with fhir-kit-client, a
// FHIR client nobody on this project wrote, so that what we call "FHIR R4
// REST" is checked against someone else's reading of the spec: create,
// read, search with paging (following the server's next links as given),
// update with versioning (If-Match), history and vread.
//
//   npm ci
//   CAREFLOW_E2E_TOKEN=<bearer token> node client-e2e.mjs http://127.0.0.1:8080/fhir/R4
//
// The token comes from the environment, not the command line, because a
// process's arguments are visible to every user of the machine. The token
// needs create, read, search and update on Patient (e.g. an integration
// client with system/Patient.cruds). The database should hold no other
// Patients: the search step expects to page through exactly the ones it
// created.
//
// Output: one line per step, "ok <step>: <detail>" or "FAIL <step>:
// <reason>", then "summary <json>". Exit code 0 only when every step passed.
// Lines carry ids, counts and versions only, never the patients' contents.
import { Client } from 'fhir-kit-client';

const PATIENTS = 25;
const PAGE = 10;
const IDENT_SYSTEM = 'urn:careflow:test:client-e2e';

const baseUrl = process.argv[2];
const token = process.env.CAREFLOW_E2E_TOKEN;
if (!baseUrl || !token) {
  console.log('FAIL usage: node client-e2e.mjs BASE_URL (with CAREFLOW_E2E_TOKEN set)');
  process.exit(2);
}

const client = new Client({ baseUrl, bearerToken: token });
const summary = {};

class StepError extends Error {}

function check(cond, msg) {
  if (!cond) throw new StepError(msg);
}

// header reads a response header of a result fhir-kit-client returned.
function header(result, name) {
  return Client.httpFor(result).response?.headers.get(name) ?? '';
}

// step runs one named step; the first failure ends the run, because later
// steps depend on what earlier ones made.
async function step(name, fn) {
  try {
    const detail = await fn();
    console.log(`ok ${name}: ${detail}`);
  } catch (err) {
    // fhir-kit-client throws with the status and the parsed body on a
    // non-2xx answer; an OperationOutcome's codes say why without echoing
    // what was sent.
    let reason = err instanceof StepError ? err.message : String(err?.message ?? err);
    const status = err?.response?.status;
    if (status) {
      const issues = (err.response.data?.issue ?? []).map((i) => `${i.severity}/${i.code}: ${i.diagnostics ?? ''}`);
      reason = `HTTP ${status} ${issues.join('; ')}`;
    }
    console.log(`FAIL ${name}: ${reason}`);
    console.log(`summary ${JSON.stringify(summary)}`);
    process.exit(1);
  }
}

function patient(i) {
  return {
    resourceType: 'Patient',
    identifier: [{ system: IDENT_SYSTEM, value: `e2e-${String(i).padStart(2, '0')}` }],
    active: true,
    name: [{ family: 'Conformance', given: [`Client${i}`] }],
    gender: i % 2 === 0 ? 'female' : 'male',
    birthDate: `19${50 + i}-0${1 + (i % 9)}-1${i % 10}`,
  };
}

const created = [];

await step('create', async () => {
  for (let i = 0; i < PATIENTS; i++) {
    const res = await client.create({ resourceType: 'Patient', body: patient(i) });
    const status = Client.httpFor(res).response?.status;
    check(status === 201, `create ${i}: status ${status}, want 201`);
    check(res.resourceType === 'Patient' && typeof res.id === 'string' && res.id !== '', `create ${i}: no Patient with an id in the answer`);
    check(res.meta?.versionId === '1', `create ${i}: meta.versionId ${res.meta?.versionId}, want 1`);
    check(header(res, 'etag') === 'W/"1"', `create ${i}: ETag ${header(res, 'etag')}, want W/"1"`);
    check(header(res, 'location').includes(`/Patient/${res.id}`), `create ${i}: Location does not name the new Patient`);
    check(!created.includes(res.id), `create ${i}: id ${res.id} given twice`);
    created.push(res.id);
  }
  summary.created = created.length;
  return `${created.length} Patients, each version 1`;
});

const target = created[7];

await step('read', async () => {
  const res = await client.read({ resourceType: 'Patient', id: target });
  check(res.id === target, `read returned id ${res.id}, want ${target}`);
  check(res.meta?.versionId === '1', `meta.versionId ${res.meta?.versionId}, want 1`);
  check(header(res, 'etag') === 'W/"1"', `ETag ${header(res, 'etag')}, want W/"1"`);
  check(header(res, 'content-type').startsWith('application/fhir+json'), `Content-Type ${header(res, 'content-type')}`);
  check(res.active === true && res.identifier?.[0]?.value === 'e2e-07', 'read returned other contents than were created');
  return `Patient/${target} version 1`;
});

await step('search-paging', async () => {
  const seen = new Set();
  const sizes = [];
  let bundle = await client.search({ resourceType: 'Patient', searchParams: { _count: PAGE } });
  for (;;) {
    check(bundle.resourceType === 'Bundle' && bundle.type === 'searchset', `page ${sizes.length + 1} is not a searchset Bundle`);
    const matches = (bundle.entry ?? []).filter((e) => (e.search?.mode ?? 'match') === 'match');
    check(matches.length <= PAGE, `page ${sizes.length + 1} holds ${matches.length} matches, more than _count=${PAGE}`);
    for (const e of matches) {
      check(e.resource?.resourceType === 'Patient', 'a match is not a Patient');
      check(!seen.has(e.resource.id), `Patient/${e.resource.id} appears on two pages`);
      seen.add(e.resource.id);
    }
    sizes.push(matches.length);
    check(sizes.length <= Math.ceil(PATIENTS / PAGE) + 1, `more pages than ${PATIENTS} matches need`);
    // nextPage follows the next link exactly as the server wrote it.
    const next = client.nextPage({ bundle });
    if (!next) break;
    bundle = await next;
  }
  for (const id of created) check(seen.has(id), `Patient/${id} was created but never found by paging`);
  check(seen.size === PATIENTS, `paging found ${seen.size} Patients, want ${PATIENTS}`);
  check(sizes.length === Math.ceil(PATIENTS / PAGE), `${sizes.length} pages, want ${Math.ceil(PATIENTS / PAGE)}`);
  summary.pages = sizes;
  return `${seen.size} Patients over ${sizes.length} pages (${sizes.join('+')})`;
});

await step('update-if-match', async () => {
  const current = await client.read({ resourceType: 'Patient', id: target });
  const body = { ...current, active: false };
  delete body.meta;
  const res = await client.update({ resourceType: 'Patient', id: target, body, options: { headers: { 'If-Match': 'W/"1"' } } });
  const status = Client.httpFor(res).response?.status;
  check(status === 200, `status ${status}, want 200`);
  check(header(res, 'etag') === 'W/"2"', `ETag ${header(res, 'etag')}, want W/"2"`);
  if (res.resourceType === 'Patient') {
    check(res.meta?.versionId === '2', `meta.versionId ${res.meta?.versionId}, want 2`);
    check(res.active === false, 'the answer does not carry the change');
  }
  const again = await client.read({ resourceType: 'Patient', id: target });
  check(again.meta?.versionId === '2' && again.active === false, `read after update: version ${again.meta?.versionId}`);
  return `Patient/${target} now version 2`;
});

await step('update-stale-if-match', async () => {
  const body = { resourceType: 'Patient', id: target, active: true };
  try {
    await client.update({ resourceType: 'Patient', id: target, body, options: { headers: { 'If-Match': 'W/"1"' } } });
  } catch (err) {
    const status = err?.response?.status;
    check(status === 412, `status ${status}, want 412`);
    check(err.response.data?.resourceType === 'OperationOutcome', 'the 412 carries no OperationOutcome');
    return 'refused with 412 and an OperationOutcome';
  }
  throw new StepError('an update naming version 1 of a version-2 resource succeeded');
});

await step('history', async () => {
  const res = await client.history({ resourceType: 'Patient', id: target });
  check(res.resourceType === 'Bundle' && res.type === 'history', 'not a history Bundle');
  const versions = (res.entry ?? []).map((e) => e.resource?.meta?.versionId);
  check(versions.length === 2, `${versions.length} versions, want 2`);
  // The spec orders history newest first.
  check(versions[0] === '2' && versions[1] === '1', `versions ${versions.join(',')}, want 2,1`);
  check(res.entry[0].resource.active === false && res.entry[1].resource.active === true, 'history entries do not hold each version\'s contents');
  summary.history = versions;
  return `versions ${versions.join(',')}`;
});

await step('vread', async () => {
  const res = await client.vread({ resourceType: 'Patient', id: target, version: '1' });
  check(res.id === target && res.meta?.versionId === '1', `vread returned version ${res.meta?.versionId}`);
  check(res.active === true, 'version 1 does not hold what version 1 held');
  check(header(res, 'etag') === 'W/"1"', `ETag ${header(res, 'etag')}, want W/"1"`);
  return `Patient/${target}/_history/1`;
});

summary.target = target;
console.log(`summary ${JSON.stringify(summary)}`);
