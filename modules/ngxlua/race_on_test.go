//go:build race

package ngxlua_test

// raceOn: the race detector's instrumentation allocates, so allocation counts mean
// nothing under it.
const raceOn = true
