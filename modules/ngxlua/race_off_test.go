//go:build !race

package ngxlua_test

const raceOn = false
