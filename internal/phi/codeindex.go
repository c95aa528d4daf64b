package phi

// CodeIndex returns the blind index of a clinical code (a SNOMED CT,
// LOINC, ICD-10 or RxNorm code, say) in a domain: HMAC-SHA256 under the
// blind-index key, like BlindIndex, but of the code exactly as given. Codes
// are case-sensitive tokens that a search matches exactly, so no
// normalisation applies: "E11.9" and "e119" stay different codes, as they
// were when codes were indexed in plain text. Callers keep the domain
// apart from any domain whose values are normalised. It fails with
// ErrEmptyValue (kind invalid) for an empty code.
func (r *Ring) CodeIndex(domain, code string) (string, error) {
	return r.blind(domain, code)
}
