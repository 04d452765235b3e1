package conf

import (
	"errors"
	"fmt"
	"strings"

	"github.com/hashicorp/hcl/v2"
)

// Error is a configuration error tied to a place in a config file. It prints as
// "file:line,col: message", the form editors and `spindle -t` users expect.
type Error struct {
	Range hcl.Range
	Msg   string
}

// Error implements error.
func (e *Error) Error() string {
	if e.Range.Filename == "" {
		return e.Msg
	}
	return fmt.Sprintf("%s:%d,%d: %s", e.Range.Filename, e.Range.Start.Line, e.Range.Start.Column, e.Msg)
}

// Errorf builds an Error at rng.
func Errorf(rng hcl.Range, format string, args ...any) *Error {
	return &Error{Range: rng, Msg: fmt.Sprintf(format, args...)}
}

// Errors is a list of configuration errors; a load reports all it finds, not only the first.
type Errors []*Error

// Error implements error: one error per line.
func (es Errors) Error() string {
	lines := make([]string, len(es))
	for i, e := range es {
		lines[i] = e.Error()
	}
	return strings.Join(lines, "\n")
}

// Err returns es as an error, or nil when es is empty (a nil Errors in an error
// interface would not compare equal to nil).
func (es Errors) Err() error {
	if len(es) == 0 {
		return nil
	}
	return es
}

// Add appends err, flattening Errors and giving an unpositioned error the range rng.
func (es *Errors) Add(rng hcl.Range, err error) {
	if err == nil {
		return
	}
	var list Errors
	var one *Error
	switch {
	case errors.As(err, &list):
		*es = append(*es, list...)
	case errors.As(err, &one):
		*es = append(*es, one)
	default:
		*es = append(*es, &Error{Range: rng, Msg: err.Error()})
	}
}

// FromDiags converts HCL diagnostics (errors only) to Errors.
func FromDiags(diags hcl.Diagnostics) Errors {
	var es Errors
	for _, d := range diags {
		if d.Severity != hcl.DiagError {
			continue
		}
		msg := d.Summary
		if d.Detail != "" {
			msg += "; " + d.Detail
		}
		var rng hcl.Range
		if d.Subject != nil {
			rng = *d.Subject
		}
		es = append(es, &Error{Range: rng, Msg: msg})
	}
	return es
}
