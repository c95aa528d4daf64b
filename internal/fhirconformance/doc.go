// Package fhirconformance checks careflow's FHIR R4 surface with software
// nobody on this project wrote, so that our reading of the spec is not the
// only judge of our output:
//
//   - every resource the server returns while the reference samples
//     (../shared/data) are created and read back over HTTP is validated by
//     @medplum/core's validateResource (tools/fhirdefs/crosscheck.mjs);
//   - fhir-kit-client, a FHIR client from npm, drives create, read, search
//     with paging, update with If-Match, history and vread against a real
//     `careflow serve` process (tools/fhirdefs/client-e2e.mjs);
//   - a discharge workflow driven through a real `careflow serve` by a
//     nurse and a physician signed in with passwords has its FHIR Task view
//     (the workflow's Task and its steps' Tasks, read through /fhir/R4)
//     judged by the same validator.
//
// medplum's validator does not check code bindings, so the clinical test
// also runs careflow's own validator over what it judges.
//
// The package holds tests only. They need Node and npm: they install the
// locked packages of tools/fhirdefs with `npm ci` when node_modules does
// not already hold them (the npm cache stays inside tools/fhirdefs), and
// skip with a message when node or npm is not on the PATH.
package fhirconformance
