package hcx

import "strings"

// PeekHeader reads and validates the protected x-hcx-* headers of a
// compact JWE without decrypting it, as a gateway does: the payload is
// encrypted for the recipient, not for the gateway, which routes by the
// headers alone. The headers are not authenticated until the recipient
// decrypts (the protected header is the AEAD's associated data), so a
// gateway that is also the recipient decrypts before it trusts them.
// Refusals are *payer.Error with the protocol's codes.
func PeekHeader(compact string) (Header, error) {
	compact = strings.TrimSpace(compact)
	if len(compact) > maxCompact {
		return Header{}, invalidPayload("the JWE is too large")
	}
	if strings.Count(compact, ".") != 4 {
		return Header{}, invalidPayload("not a compact JWE (five parts)")
	}
	protected, err := protectedHeader(compact)
	if err != nil {
		return Header{}, err
	}
	h, err := ParseHeaderFields(protected)
	if err != nil {
		return Header{}, err
	}
	if err := h.Validate(); err != nil {
		return Header{}, err
	}
	return h, nil
}
