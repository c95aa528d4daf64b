// Package deid de-identifies patient data for research export by HIPAA's
// Safe Harbor method (45 CFR 164.514(b)(2)): the building blocks the clinical
// module's export (POST /api/v1/clinical-workflows/ai-training-data/{id})
// assembles a Record from. It holds no state, reads no database and imports
// nothing of careflow's but errs.
//
// The rule removes eighteen kinds of identifier of the patient and of their
// relatives, employers and household members: (A) names; (B) geographic
// subdivisions smaller than a state (street address, city, county, precinct,
// postal code; the first three digits of a US ZIP code only where the Census
// says they cover more than 20,000 people); (C) every element of a date but
// the year for dates about the person (birth, admission, discharge, death),
// and ages over 89 with any date element that reveals them, which may be
// grouped as 90 or older; (D) telephone and (E) fax numbers; (F) e-mail
// addresses; (G) social security numbers; (H) medical record numbers;
// (I) health plan beneficiary numbers; (J) account numbers;
// (K) certificate and licence numbers; (L) vehicle identifiers and plates;
// (M) device identifiers and serial numbers; (N) URLs; (O) IP addresses;
// (P) biometric identifiers; (Q) full-face photographs; (R) any other unique
// identifying number, characteristic or code.
//
// How each lands here:
//
//   - Structured fields never leave as they are. The patient's id becomes a
//     Pseudonymizer key (a keyed hash: stable, unlinkable without the key);
//     dates become Year; an age becomes AgeGroup, where 90 and over is one
//     group and the birth year is dropped with it. A Record has no field
//     for a name, address, telephone, identifier, photo or biometric, so
//     those (A, B, D–M, P, Q) cannot be exported by mistake: what is not in
//     the format is not in the export.
//   - Free text goes through a Scrubber, which removes what it is told this
//     patient is called and numbered (Known), and, told nothing, whatever
//     looks like a date, telephone, e-mail, URL, IP address, record or
//     account number, SSN, postal code, street address or a name after an
//     honorific; ages over 89 become "90+". Each removal leaves a typed
//     placeholder ([NAME], [DATE], …) so the text still reads.
//
// Invariants a change must keep:
//
//   - The scrubber errs towards removing. A clinical number mistaken for an
//     identifier costs a value in a research note; an identifier mistaken
//     for a clinical number is a breach. Its exceptions are narrow and named
//     (doses and quantities followed by a unit, decimals, thousands with
//     commas, vital-sign pairs like 120/80, dotted ICD-10 codes, codes after
//     their system's name, numbers of fewer than five digits), and a known
//     identifier of the patient is
//     removed even where a pattern would have kept it.
//   - Matching is on normalised text (case, diacritics, Arabic hamza forms,
//     tatweel, invisible format characters, Arabic-Indic digits and
//     compatibility forms do not matter) at word boundaries, but the output
//     is the input with spans replaced: what is kept is kept byte for byte,
//     and a replaced span covers every byte of what it matched, marks and
//     invisible characters included.
//   - Nothing here writes an identifier anywhere but its return value: no
//     error, log or Report carries one. A Report counts removals per kind.
//   - A Pseudonymizer never exposes its key, and keys for one purpose (or
//     kind of id) cannot be linked to another's: the purpose and kind are
//     inside the MAC.
//
// What Safe Harbor asks and this package cannot know: the export must not be
// released if the hospital knows the rest could identify the patient (a rare
// diagnosis in a small town); and the scrubber cannot find a name it was not
// told and that no pattern announces ("seen with Fatma at the clinic").
// Known must therefore carry every name the record holds: patient,
// relatives, contacts, employer.
package deid
