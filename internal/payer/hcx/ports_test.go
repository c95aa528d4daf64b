package hcx

import "github.com/careflow/careflow/internal/rcm"

// The participant satisfies the ports the journeys stand on, and the inbox
// it hands messages to is rcm's (hcx declares the same method set so its
// code does not import rcm).
var (
	_ rcm.Payer     = (*Client)(nil)
	_ rcm.Directory = (*Registry)(nil)
	_ Inbox         = rcm.Inbox(nil)
)
