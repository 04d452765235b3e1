// Package version holds spindle's version string.
package version

// Version is spindle's release version; `spindle -v` prints it.
const Version = "0.1.0"
