// Package rcm is careflow's revenue cycle: the patient journey from
// registration to payment as durable engine definitions, with the payers
// reached through the Payer port (internal/payer/hcx implements it).
//
// Beside the journeys it keeps the payers' fee schedules (Fees: versions
// never replaced, prices in exact minor units, the newest effective row
// prices) and batches of journeys (Batches: no entry stored, each entry
// started once by its key batch:<id>:<index>, a stopped batch resumed by
// the same submission). fees.go and batch.go state their invariants.
package rcm
