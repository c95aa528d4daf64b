package fhir

import "encoding/json"

// Bundle types (R4 bundle-type value set).
const (
	BundleDocument            = "document"
	BundleMessage             = "message"
	BundleTransaction         = "transaction"
	BundleTransactionResponse = "transaction-response"
	BundleBatch               = "batch"
	BundleBatchResponse       = "batch-response"
	BundleHistory             = "history"
	BundleSearchset           = "searchset"
	BundleCollection          = "collection"
)

// Bundle is the R4 Bundle with its entries' resources kept as raw JSON: the
// server builds searchset and history Bundles from stored resources without
// re-encoding them, and reads batch and transaction Bundles entry by entry.
// Elements of the Bundle itself beyond these (extensions, signature) are
// not carried: the raw Bundle stays the record where one is stored.
type Bundle struct {
	ResourceType string        `json:"resourceType"`
	ID           string        `json:"id,omitempty"`
	Meta         *Meta         `json:"meta,omitempty"`
	Identifier   *Identifier   `json:"identifier,omitempty"`
	Type         string        `json:"type"`
	Timestamp    string        `json:"timestamp,omitempty"`
	Total        *int          `json:"total,omitempty"`
	Link         []BundleLink  `json:"link,omitempty"`
	Entry        []BundleEntry `json:"entry,omitempty"`
}

// NewBundle returns an empty Bundle of the given type.
func NewBundle(typ string) *Bundle {
	return &Bundle{ResourceType: "Bundle", Type: typ}
}

// BundleLink is Bundle.link (self, next, previous, ...).
type BundleLink struct {
	Relation string `json:"relation"`
	URL      string `json:"url"`
}

// BundleEntry is Bundle.entry; Resource is the entry's resource as sent.
type BundleEntry struct {
	Link     []BundleLink         `json:"link,omitempty"`
	FullURL  string               `json:"fullUrl,omitempty"`
	Resource json.RawMessage      `json:"resource,omitempty"`
	Search   *BundleEntrySearch   `json:"search,omitempty"`
	Request  *BundleEntryRequest  `json:"request,omitempty"`
	Response *BundleEntryResponse `json:"response,omitempty"`
}

// BundleEntrySearch is Bundle.entry.search: why an entry is in a searchset.
type BundleEntrySearch struct {
	Mode  string       `json:"mode,omitempty"` // match | include | outcome
	Score *json.Number `json:"score,omitempty"`
}

// BundleEntryRequest is Bundle.entry.request of a batch or transaction.
type BundleEntryRequest struct {
	Method          string `json:"method"` // GET | HEAD | POST | PUT | DELETE | PATCH
	URL             string `json:"url"`
	IfNoneMatch     string `json:"ifNoneMatch,omitempty"`
	IfModifiedSince string `json:"ifModifiedSince,omitempty"`
	IfMatch         string `json:"ifMatch,omitempty"`
	IfNoneExist     string `json:"ifNoneExist,omitempty"`
}

// BundleEntryResponse is Bundle.entry.response of a batch-response,
// transaction-response or history Bundle.
type BundleEntryResponse struct {
	Status       string          `json:"status"`
	Location     string          `json:"location,omitempty"`
	Etag         string          `json:"etag,omitempty"`
	LastModified string          `json:"lastModified,omitempty"`
	Outcome      json.RawMessage `json:"outcome,omitempty"`
}

// Meta is the R4 Meta datatype.
type Meta struct {
	VersionID   string   `json:"versionId,omitempty"`
	LastUpdated string   `json:"lastUpdated,omitempty"`
	Source      string   `json:"source,omitempty"`
	Profile     []string `json:"profile,omitempty"`
	Security    []Coding `json:"security,omitempty"`
	Tag         []Coding `json:"tag,omitempty"`
}

// ParseBundle reads a Bundle. It does not validate; call Validate first on
// anything a client sent.
func ParseBundle(raw []byte) (*Bundle, error) {
	var b Bundle
	if err := decodeView(raw, "Bundle", &b); err != nil {
		return nil, err
	}
	return &b, nil
}
