package conf

import (
	"strings"
	"time"
)

// Setter applies one directive to the object its context configures (the main
// Config, an upstream, a module's per-location configuration). It is nginx's
// ngx_command_t.set.
type Setter[T any] func(t *T, it Item) error

// Directive is one entry of a directive table for a context a package decodes itself:
// the main context and events here, an upstream block in the upstream module. The HTTP
// contexts use httpcore.Directive, whose setters are built from the same slots.
type Directive[T any] struct {
	Name string
	// Block is true for directives written as blocks (`events { ... }`), false for
	// settings (`pid = "..."`).
	Block bool
	Set   Setter[T]
}

// Table is the directive table of one context.
type Table[T any] []Directive[T]

// Names lists the table's directives, for the docs test.
func (tb Table[T]) Names() []string {
	out := make([]string, len(tb))
	for i, d := range tb {
		out[i] = d.Name
	}
	return out
}

// Lookup returns the directive called name, or nil.
func (tb Table[T]) Lookup(name string) *Directive[T] {
	for i := range tb {
		if tb[i].Name == name {
			return &tb[i]
		}
	}
	return nil
}

// Apply sets one item on t. unknown is the error for a name the table lacks; an item
// written in the wrong form (a block for a setting or the reverse) is reported here.
func (tb Table[T]) Apply(t *T, it Item, unknown func(it Item) error) error {
	d := tb.Lookup(it.Name)
	if d == nil {
		return unknown(it)
	}
	if d.Block && it.Block == nil {
		return Errorf(it.Range(), "%s must be a block: %s { ... }", it.Name, it.Name)
	}
	if !d.Block && it.Attr == nil {
		return Errorf(it.Range(), "%q is a setting, write it as %s = value", it.Name, it.Name)
	}
	return d.Set(t, it)
}

// ApplyAll sets the items of a block's body on t in order, for the blocks whose
// settings are all in the table (a map, geo or split_clients block); what names the
// block in the errors, which list the table's settings: `unknown setting "x" in geo
// (expected source, default, ...)`.
func (tb Table[T]) ApplyAll(t *T, items []Item, what string) error {
	unknown := func(it Item) error {
		kind := "setting"
		if it.Block != nil {
			kind = "block"
		}
		return Errorf(it.Range(), "unknown %s %q in %s (expected %s)", kind, it.Name, what, strings.Join(tb.Names(), ", "))
	}
	for _, it := range items {
		if d := tb.Lookup(it.Name); it.Block != nil && (d == nil || !d.Block) {
			// A block where the table has a setting of that name is a block the
			// table does not know either.
			return unknown(it)
		}
		if err := tb.Apply(t, it, unknown); err != nil {
			return err
		}
	}
	return nil
}

// Directives lists the directives of the main context and the events block, and
// include (read wherever it stands), for the docs test.
func Directives() []string {
	names := append(MainDirectives.Names(), EventsDirectives.Names()...)
	return append(names, "include")
}

// The slots below are the shared typed setters, nginx's ngx_conf_set_flag_slot,
// _msec_slot, _size_slot, _num_slot, _str_slot and _str_array_slot: each decodes the
// setting's value with the decoders of values.go, reports a positioned error and only
// then assigns the field (a bad value leaves the default in place). field returns the
// address of the setting in the object the context configures.

// BoolSlot sets a flag: true/false, or "on"/"off" as nginx users write them.
func BoolSlot[T any](field func(*T) *bool) Setter[T] {
	return func(t *T, it Item) error {
		v, err := Bool(it.Attr)
		if err != nil {
			return err
		}
		*field(t) = v
		return nil
	}
}

// DurationSlot sets a time ("30s", "500ms", a bare number of seconds). As nginx's
// _msec_slot it takes any time that is not negative, "0" included; what 0 means (no
// timeout, for the proxy and Lua socket timeouts) is the setting's own documentation.
func DurationSlot[T any](field func(*T) *time.Duration) Setter[T] {
	return func(t *T, it Item) error {
		d, err := Duration(it.Attr)
		if err != nil {
			return err
		}
		*field(t) = d
		return nil
	}
}

// SizeSlot sets a size ("512", "8k", "1m") into an int or int64 field.
func SizeSlot[T any, N ~int | ~int64](field func(*T) *N) Setter[T] {
	return func(t *T, it Item) error {
		n, err := Size(it.Attr)
		if err != nil {
			return err
		}
		*field(t) = N(n)
		return nil
	}
}

// NoMax is CountSlot's max for a count without an upper bound.
const NoMax = 0

// CountSlot sets a whole number of at least min and, unless max is NoMax, at most
// max.
func CountSlot[T any](min, max int, field func(*T) *int) Setter[T] {
	return func(t *T, it Item) error {
		n, err := Int(it.Attr)
		if err != nil {
			return err
		}
		if err := CheckCount(it, n, min, max); err != nil {
			return err
		}
		*field(t) = n
		return nil
	}
}

// CheckCount is CountSlot's range check, for setters that decode a count themselves.
func CheckCount(it Item, n, min, max int) error {
	rng := it.Attr.Expr.Range()
	switch {
	case max != NoMax && (n < min || n > max):
		return Errorf(rng, "%s must be between %d and %d, got %d", it.Name, min, max, n)
	case n < min && min == 0:
		return Errorf(rng, "%s must not be negative", it.Name)
	case n < min:
		return Errorf(rng, "%s must be at least %d", it.Name, min)
	}
	return nil
}

// StringSlot sets a string.
func StringSlot[T any](field func(*T) *string) Setter[T] {
	return func(t *T, it Item) error {
		s, err := String(it.Attr)
		if err != nil {
			return err
		}
		*field(t) = s
		return nil
	}
}

// ListSlot sets a list of strings; a single string is a list of one.
func ListSlot[T any](field func(*T) *[]string) Setter[T] {
	return func(t *T, it Item) error {
		v, err := Strings(it.Attr)
		if err != nil {
			return err
		}
		*field(t) = v
		return nil
	}
}
