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
// current version lives in resources, with an integer key (rid) its index
// rows name, and the replaced versions in resource_history: a write copies
// the current row there before it overwrites it (keepReplaced), in the
// write's transaction, so a version's JSON is stored once and a create
// writes no history row; vread and history read both tables in one
// statement.
// Both tables are registered with the re-encryptor (Register) so key
// rotation re-seals them.
//
// Each row carries patient_id, the patient compartment the resource is in
// (Patient: itself; Encounter, Condition, Procedure, Observation,
// Communication, CommunicationRequest, CareTeam: subject; Claim,
// ClaimResponse, CoverageEligibilityRequest/Response, Consent: patient;
// Coverage: beneficiary; Task: for; Appointment: the participant that is a
// Patient; other types: the first of patient, subject, beneficiary, for
// that is a literal Patient reference). It is an opaque id, stored plain,
// so that the access policy decides per record (Guard) before anything is
// decrypted.
//
// A record with no such reference is in no compartment (patient_id NULL):
// a PaymentNotice or PaymentReconciliation (between provider and payer by
// design), a Task for a ward, a Bundle or MessageHeader as received, and a
// record whose subject is a resource contained in it ("#newborn": a
// newborn's Apgar score before the baby is registered). A contained
// subject is not a stored patient: no care team holds it and no consent of
// it is recorded, so the record cannot be put in a compartment, and it is
// not guessed into one (the mother's, say). The access policy reaches such
// records only by its "patients": "none" rules, and refuses to store one
// of a type no rule reads (auth.ReasonUnreachableRecord); registering the
// subject as a Patient and pointing the record at it moves it into that
// patient's compartment on the next write. The other way is refused: a
// record in a patient's compartment keeps naming a patient (an update may
// point it at another one), so nothing of a patient's reaches the rules
// for records of none, which no relationship or consent narrows. Which types the record serves
// at all is the policy's to say too (auth.Policy.Serves): the record
// stores any R4 type, the FHIR surface and careflow import only the served
// ones.
//
// # Search indexes and PHI
//
// Index rows of the current version live in five tables by kind: tokens
// (system, code), strings (value, raw), dates (low..high, UTC, inclusive),
// refs (target type and id) and numbers (value, system, code). Every write
// replaces the resource's rows in the same transaction; a delete removes
// them. Each lookup is an index range scan on (param, value), so search by
// identifier and read by id cost O(log n). Since migration 0024 a row names
// its resource by rid and its parameter by an integer key of type and name
// (paramKey), and keeps a blind index as 16 bytes (indexkeys.go says why
// that is enough): a registration-style Patient's 29 rows cost about 1.8 KiB
// on SQLite instead of 6.9.
//
// The parameters are R4's own, generated from the pinned definitions
// (fhir.SearchParams; params_r4.go): every SearchParameter of every type
// whose expression resolves to element paths, composites and computed
// conditions refused with a 400 naming them; one-link chains and _has run
// the other type's criteria as a search by the same guard first
// (search_chain.go), so every hop meets the access policy and the field
// rules. A type whose
// parameters change is re-indexed at start (reindex.go). Which values are
// PHI is decided by one rule over the definitions, in params_r4.go; for
// the parameters careflow had before, it gives:
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
//	clinical codes of patient records: the code,       blind index of the exact code (no
//	reason-code, value-concept and component-code      normalisation: codes are case-sensitive);
//	of Condition, Procedure, Observation, Encounter;   system plain
//	Encounter.type, Procedure.category,
//	CareTeam.category, Coverage.type, Consent.category
//	status, clinical/verification status, class,       plain
//	intent, priority, use, outcome, gender, flags,
//	Condition/Observation/Communication category,
//	severity, Consent scope and action, Task.code
//	codes of non-patient records (specialty, type)     plain
//	references                                         plain (ids are opaque)
//	dates of service and of record                     plain
//	names of organisations, locations, plans           plain, normalised (starts-with, :exact,
//	                                                   :contains)
//
// The rule for a token of a patient record: it is blind when its values
// come from an open clinical terminology (SNOMED CT, LOINC, ICD, RxNorm,
// CPT, local codes) and say what is wrong with the patient, what was found,
// done or given, or which kind of care they get (a visit type "HIV clinic",
// a coverage type "substance use program", a consent category "DNR"). It
// stays plain when it is a record's state or kind in a small fixed value
// set (status, class, gender, Observation.category): those say nothing of a
// diagnosis, searches and lists lean on them, and a blind index of a
// handful of values is undone by counting rows. params_r4.go writes the
// rule as code: a token not bound to a required value set is clinical,
// unless plainTokens names it with its reason;
// TestPatientRecordsTokenParametersAreDecided checks every token of every
// patient record (Patient, R4's Patient compartment, patientPaths) took
// a side. blindcodes.go says why
// the system stays plain and the HMAC covers the code alone, and
// BlindLegacyCodes rewrites the rows of a database from before.
//
// References stay plain: they link opaque, server-assigned ids (UUIDv7),
// and compartments, _include/_revinclude and reach confinement join on
// them. What a link can still tell is the kind of the record it points to:
// an Encounter's location or practitioner is a shared record whose own
// index (Location.name/type, PractitionerRole.specialty, Organization.type)
// is plain, so a dump reader can see that a patient's encounter took place
// at the location named "Oncology day unit". Those are facts about the
// hospital, searched by name, and are not blinded; ids chosen by clients
// (update as create) should be opaque too, not "Location/hiv-clinic".
//
// A blind index is HMAC-SHA256 under the ring's blind-index key over a
// domain (record:Type.param) and the phi.Normalize form (the exact code for
// clinical codes), truncated to 16 bytes in the row (blindValue), so exact
// search works and the database holds no readable PHI. PHI parameters therefore offer exact match (names also by
// typed prefixes from 3 letters), never :contains, ranges or sorting; the
// CapabilityStatement documents this per parameter. The blind-index key is
// not rotated (phi's doc says why), so no index, of names or of codes, is
// recomputed by `careflow keys rotate`. Search values are PHI too: they never reach logs or error
// messages, and paging links carry a token sealed by the ring (SealPage)
// instead of the query.
//
// A search reads elements, not only values: it is refused before it runs
// when a parameter, a sort, an _include or a _revinclude of it (or of a
// conditional interaction's criteria, or of a Bundle entry) reads a
// top-level element the guard's caller may not see (ElementGuard,
// search_fields.go), so matches and totals never reveal what a response
// redacts. The elements are derived from each Param's Paths. Values that
// are not text, ids that are not FHIR ids and paging beyond MaxCount and
// MaxOffset are 400s naming the parameter (search_limits.go).
// # Field rules of writes
//
// A guard may grant a create or update only some top-level elements
// (TxGuard.AllowTx returns a Grant, decided with the elements the body
// sets): a body setting another one is refused, and an update keeps every
// element outside the grant from the stored current version, merged and
// validated inside the write's transaction (fields.go). A grant of every
// element reads and merges nothing.
//
// # Authorization before existence
//
// Every interaction on one record by id asks a TypeGuard whether the
// caller may do it to the type at all before the id is looked up, then
// the Guard about the record found; a read or delete of an id that does
// not exist is not known (404), as a record out of reach is answered, and
// a delete of an already deleted record in reach succeeds (existence.go).
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
// Write hooks (Options.Hooks: the consent store) and change hooks
// (Options.Changes, changes.go: EventHook writes the event of each create,
// update and delete) run inside the write's transaction after its rows, so
// what they write commits or rolls back with the write; a change hook sees
// type, id, version and patient, never the content.
//
// CreateTx, UpdateTx, ReadTx and SearchTx run the same interactions in a
// transaction the caller owns (tx.go), for a domain write that must commit
// with something else: a workflow step's Apply. What commits together is
// the caller's whole transaction: each resource's version and history row,
// its index rows, its hooks' rows and, through a TxGuard, its audit entry,
// with the caller's own rows (for a step: its execution, the run's
// transition and the next step's job). A rollback leaves none of them.
// Nothing done while the transaction is open takes a second connection:
// the guard decides a read or search in tx through it (InTxGuard.AllowIn)
// and a write through AllowTx, so concurrent transactions never hold
// every pooled connection while each waits for one more.
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
