// Package record is careflow's FHIR record: it stores resources, their
// versions and their search indexes, and answers read, vread, create,
// update, delete, history, search, and batch and transaction Bundles.
//
// # Storage
//
// A resource is stored as the compact JSON the client sent, with only id and
// meta.versionId/lastUpdated set by the server (fhir.SetIDAndMeta), sealed by
// the phi key ring. Its associated data binds the table ("resources"), the
// field ("resource") and the version's identity Type/id/_history/N, so a
// ciphertext opens only as that version of that resource: copying it onto
// another resource or replaying an old version as the current one fails. The
// current version lives in resources and every version (the current one
// too) in resource_history, with the same bytes; both tables are registered
// with the re-encryptor (Register) so key rotation re-seals them.
//
// Each row carries patient_id, the patient compartment the resource is in
// (Patient: itself; Encounter, Condition, Procedure, Observation,
// Communication, CommunicationRequest, CareTeam: subject; Claim,
// ClaimResponse, CoverageEligibilityRequest/Response, Consent: patient;
// Coverage: beneficiary; Task: for; other types: the first of patient,
// subject, beneficiary, for that is a literal Patient reference). It is an
// opaque id, stored plain, so that the access policy decides per record
// (Guard) before anything is decrypted.
//
// # Search indexes and PHI
//
// Index rows of the current version live in five tables by kind: tokens
// (system, code), strings (value, raw), dates (low..high, UTC, inclusive),
// refs (target type and id) and numbers (value, system, code). Every write
// replaces the resource's rows in the same transaction; a delete removes
// them. Each lookup is an index range scan on (type, param, value), so
// search by identifier and read by id cost O(log n).
//
// Which values are PHI is decided in params.go, once:
//
//	value                                              stored as
//	-------------------------------------------------  ------------------------------------------
//	names (HumanName, any resource)                    blind index of each normalised prefix of
//	                                                   every family and given part (from 3
//	                                                   letters) and of each whole value; name
//	                                                   searches the family and given rows, plus
//	                                                   its own for text, prefix and suffix
//	telecom (phone, email)                             blind index of the normalised value
//	address (line, city, postal code, country)         blind index of each whole value
//	identifiers of patient-compartment resources       blind index of the value; system plain
//	(Patient, Encounter, Claim, Coverage, ...),
//	Coverage.subscriberId
//	Patient.birthDate                                  blind index (exact date only)
//	identifiers of Organization, Location,             plain
//	Practitioner(Role), InsurancePlan, Payment*
//	status, codes, classes, genders, flags             plain
//	references                                         plain (ids are opaque)
//	dates of service and of record                     plain
//	names of organisations, locations, plans           plain, normalised (starts-with, :exact,
//	                                                   :contains)
//
// A blind index is HMAC-SHA256 under the ring's blind-index key over a
// domain (record:Type.param) and the phi.Normalize form, so exact search
// works and the database holds no readable PHI. PHI parameters therefore
// offer exact match (names also by typed prefixes from 3 letters), never
// :contains, ranges or sorting; the CapabilityStatement documents this per
// parameter. Search values are PHI too: they never reach logs or error
// messages, and paging links carry a token sealed by the ring (SealPage)
// instead of the query.
//
// # Concurrency and transactions
//
// Versions are optimistic: an update names the version it read (If-Match)
// and gets 412 when the current version differs; on PostgreSQL the current
// row is locked (SELECT ... FOR UPDATE) for the rest of the write, and two
// creates of one id collide on the primary key (409). A transaction Bundle
// runs in one store.Tx: ids for POSTs, conditional creates and updates and
// conditional references are resolved first (a conditional reference with
// the criteria of a conditional create or update in the same transaction is
// that entry's resource, stored or new), every reference to an entry's
// fullUrl is rewritten, then entries run in the order DELETE, POST, PUT,
// GET; any failure rolls everything back. Batch entries run each in their
// own transaction and fail alone. Plain creates that arrive while another
// commits share its successor's transaction (group commit, groupcommit.go):
// one fsync for many creates, each still failing alone. A create far larger
// than a real record commits alone, so no group waits for its rows.
//
// # Limits
//
// What one write may cost is bounded (Limits, limits.go): its elements,
// array items, nesting, string bytes and Bundle entries are counted in one
// pass over the bytes before validation, code checks, encryption or index
// extraction, and extraction stops at a cap of index rows. Every writer
// gets them (HTTP reads bodies through them with ReadBody; the import and
// Bundles go through the same calls); a resource over a limit is refused
// with errs.TooLarge and one too-costly issue naming the limit and the
// element path, never a value.
package record
