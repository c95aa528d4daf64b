// Package terminology knows the code systems careflow bills and documents
// with, and answers the two questions FHIR asks of them: is this code valid
// ($validate-code), and what does it mean ($lookup).
//
// Code systems fall into two groups:
//
//   - Release-based systems whose content careflow holds: ICD-10-CM, loaded
//     from the CMS order file (LoadICD10CM), and code lists for CPT, HCPCS
//     Level II, LOINC and SNOMED CT (LoadCodeList). Each load is a release
//     (system + version) with a validity window of dates of service, stored
//     in one transaction; reloading the same release replaces it, so a load
//     is idempotent under retry.
//   - Structural rules that hold with or without content: the ICD-10-CM code
//     shape, CPT and HCPCS formats, the SNOMED CT Verhoeff check digit and
//     partition, the LOINC mod-10 check digit, and the structure of the
//     Egyptian national ID (an identifier, not a code system: it is PHI, so
//     it is parsed but never stored, echoed or logged).
//
// Invariants:
//   - ICD-10-CM codes are stored undotted (E119) and shown dotted (E11.9);
//     both forms are accepted as input.
//   - A date of service is a calendar date; a release is valid on it when
//     ValidFrom <= date <= ValidTo, both inclusive. When two releases of a
//     system cover the same date the one that starts later wins, which is how
//     CMS's April updates supersede the October release mid-year.
//   - When no ICD-10-CM release was loaded, a small built-in starter set
//     answers instead, and every answer says so. Code systems without loaded
//     content are checked by format only, and the answer says that too.
//   - CPT descriptions are the AMA's copyright: careflow ships none. A site
//     that licenses CPT loads its own list.
//   - An invalid code is an answer (Validation with a Reason), not an error;
//     errors mean the database failed or the request was malformed.
//   - Messages carry no PHI: identifier values are never quoted, and neither
//     is a digit string that was not found in any code system's content.
//
// Entry points: Service.ValidateCode and Service.Lookup for Go callers (the
// revenue cycle's code-validation step); Service.CheckClaim and
// Service.CheckCondition for the FHIR validator, returning OperationOutcome
// issues; ValidateCodeOperation and LookupOperation (with the Parse*
// functions for query strings and Parameters bodies) for the HTTP handlers
// of CodeSystem/$validate-code and CodeSystem/$lookup; LoadICD10CM and
// LoadCodeList for `careflow codes load`.
package terminology
