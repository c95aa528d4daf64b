// Package rcm is careflow's revenue cycle: the patient journey from
// registration to payment as durable engine definitions, with the payers
// reached through the Payer port (internal/payer/hcx implements it).
package rcm
