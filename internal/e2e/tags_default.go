//go:build !gopherlua

package e2e

// buildTags are the tags the server under test is built with: those of the test.
const buildTags = ""
