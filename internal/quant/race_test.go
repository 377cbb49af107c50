//go:build race

package quant

// raceEnabled lets the quality test, which is single-threaded and gains
// nothing from the race detector, skip its costly run under -race.
const raceEnabled = true
