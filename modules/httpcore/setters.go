package httpcore

import (
	"time"

	"github.com/spindle-server/spindle/conf"
)

// The shared typed setters of module directives, nginx's ngx_conf_set_*_slot: a
// module's table names the field of its configuration type T and the setter decodes,
// checks and assigns it in the directive's context, with the rules of conf's slots
// (conf/directive.go) that the main context and upstream blocks use too. They live in
// conf, the one package every context's decoder imports (conf may not import the HTTP
// core); these wrappers only reach the module's configuration through the Cmd.
//
//	{Name: "lua_code_cache", Context: httpcore.CtxAll, Set: httpcore.SetBool(func(c *Conf) *bool { return &c.codeCache })},

// Slot makes a directive setter out of a conf slot over the module's configuration
// type T.
func Slot[T any](s conf.Setter[T]) func(*Cmd) error {
	return func(c *Cmd) error { return s(c.conf().(*T), c.Item) }
}

// SetBool sets a flag (conf.BoolSlot).
func SetBool[T any](field func(*T) *bool) func(*Cmd) error { return Slot(conf.BoolSlot(field)) }

// SetDuration sets a time that is not negative (conf.DurationSlot).
func SetDuration[T any](field func(*T) *time.Duration) func(*Cmd) error {
	return Slot(conf.DurationSlot(field))
}

// SetSize sets a size such as "8k" (conf.SizeSlot).
func SetSize[T any, N ~int | ~int64](field func(*T) *N) func(*Cmd) error {
	return Slot(conf.SizeSlot(field))
}

// SetCount sets a whole number in [min, max] (max conf.NoMax: no upper bound).
func SetCount[T any](min, max int, field func(*T) *int) func(*Cmd) error {
	return Slot(conf.CountSlot(min, max, field))
}

// SetString sets a string (conf.StringSlot).
func SetString[T any](field func(*T) *string) func(*Cmd) error {
	return Slot(conf.StringSlot(field))
}

// SetList sets a list of strings (conf.ListSlot).
func SetList[T any](field func(*T) *[]string) func(*Cmd) error {
	return Slot(conf.ListSlot(field))
}

// SetTemplate compiles the value as an expression over request variables, evaluated
// per request ("${arg.id}"); a constant is folded once.
func SetTemplate[T any](field func(*T) **Expr) func(*Cmd) error {
	return func(c *Cmd) error {
		e, err := c.AttrExpr()
		if err != nil {
			return err
		}
		*field(c.conf().(*T)) = e
		return nil
	}
}
