//go:build race

package main

// raceDetector: the test binary, and so every careflow child it starts,
// runs under the race detector, which makes the RSA operations of every
// HCX message many times slower; the soak's `make test` size shrinks.
const raceDetector = true
