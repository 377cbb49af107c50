//go:build race

package packed_test

// raceEnabled lets the parity test, whose cost under the race detector is
// several times its plain run, check a fifth of the corpus there.
const raceEnabled = true
