package conf

import (
	"math/big"
	"strconv"
	"strings"
	"time"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/hclsyntax"
	"github.com/zclconf/go-cty/cty"
	"github.com/zclconf/go-cty/cty/convert"
)

// The helpers below decode the value of a static directive (one that may not refer to
// request variables) into a Go type, with errors at the value's position.

func typeError(expr hclsyntax.Expression, want string, got cty.Value) error {
	return Errorf(expr.Range(), "expected %s, got %s", want, got.Type().FriendlyName())
}

// String decodes a string value; numbers and bools are converted as HCL converts them.
func String(a *hclsyntax.Attribute) (string, error) { return ExprString(a.Expr) }

// ExprString decodes a static string expression.
func ExprString(e hclsyntax.Expression) (string, error) {
	v, err := StaticValue(e)
	if err != nil {
		return "", err
	}
	s, cerr := convert.Convert(v, cty.String)
	if cerr != nil {
		return "", typeError(e, "a string", v)
	}
	return s.AsString(), nil
}

// Int decodes a whole number.
func Int(a *hclsyntax.Attribute) (int, error) { return ExprInt(a.Expr) }

// ExprInt decodes a static whole number expression; numeric strings are accepted.
func ExprInt(e hclsyntax.Expression) (int, error) {
	v, err := StaticValue(e)
	if err != nil {
		return 0, err
	}
	n, cerr := convert.Convert(v, cty.Number)
	if cerr != nil {
		return 0, typeError(e, "a number", v)
	}
	bf := n.AsBigFloat()
	if !bf.IsInt() {
		return 0, Errorf(e.Range(), "expected a whole number, got %s", bf.Text('g', -1))
	}
	i, acc := bf.Int64()
	if acc != big.Exact || i > 1<<53 || i < -(1<<53) {
		return 0, Errorf(e.Range(), "number out of range")
	}
	return int(i), nil
}

// Bool decodes true/false (also "on"/"off", as nginx users write them).
func Bool(a *hclsyntax.Attribute) (bool, error) { return ExprBool(a.Expr) }

// ExprBool decodes a static boolean expression.
func ExprBool(e hclsyntax.Expression) (bool, error) {
	v, err := StaticValue(e)
	if err != nil {
		return false, err
	}
	if v.Type() == cty.String {
		switch v.AsString() {
		case "on", "true", "yes":
			return true, nil
		case "off", "false", "no":
			return false, nil
		}
	}
	b, cerr := convert.Convert(v, cty.Bool)
	if cerr != nil {
		return false, typeError(e, "a bool", v)
	}
	return b.True(), nil
}

// Strings decodes a string or a list of strings.
func Strings(a *hclsyntax.Attribute) ([]string, error) { return ExprStrings(a.Expr) }

// ExprStrings decodes a static string or list of strings.
func ExprStrings(e hclsyntax.Expression) ([]string, error) {
	v, err := StaticValue(e)
	if err != nil {
		return nil, err
	}
	if v.Type() == cty.String {
		return []string{v.AsString()}, nil
	}
	if !v.Type().IsTupleType() && !v.Type().IsListType() && !v.Type().IsSetType() {
		return nil, typeError(e, "a string or a list of strings", v)
	}
	var out []string
	for it := v.ElementIterator(); it.Next(); {
		_, ev := it.Element()
		s, cerr := convert.Convert(ev, cty.String)
		if cerr != nil || s.IsNull() {
			return nil, typeError(e, "a list of strings", v)
		}
		out = append(out, s.AsString())
	}
	return out, nil
}

// Duration decodes an nginx-style time: "30s", "5m", "1h30m", "500ms", "1d"; a bare
// number means seconds, as in nginx.
func Duration(a *hclsyntax.Attribute) (time.Duration, error) { return ExprDuration(a.Expr) }

// ExprDuration decodes a static time expression.
func ExprDuration(e hclsyntax.Expression) (time.Duration, error) {
	s, err := ExprString(e)
	if err != nil {
		return 0, err
	}
	d, perr := ParseDuration(s)
	if perr != nil {
		return 0, Errorf(e.Range(), "%v", perr)
	}
	return d, nil
}

// ParseDuration parses nginx time syntax: a sequence of number+unit with units ms, s, m,
// h, d, w, M (30 days) and y (365 days); a bare number is seconds.
func ParseDuration(s string) (time.Duration, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return 0, errorString("empty time value")
	}
	if n, err := strconv.ParseFloat(s, 64); err == nil {
		if n < 0 {
			return 0, errorString("negative time value " + strconv.Quote(s))
		}
		return time.Duration(n * float64(time.Second)), nil
	}
	var total time.Duration
	rest := s
	for rest != "" {
		i := 0
		for i < len(rest) && (rest[i] >= '0' && rest[i] <= '9' || rest[i] == '.') {
			i++
		}
		if i == 0 {
			return 0, errorString("invalid time value " + strconv.Quote(s))
		}
		n, err := strconv.ParseFloat(rest[:i], 64)
		if err != nil {
			return 0, errorString("invalid time value " + strconv.Quote(s))
		}
		rest = rest[i:]
		j := 0
		for j < len(rest) && (rest[j] < '0' || rest[j] > '9') && rest[j] != '.' {
			j++
		}
		var unit time.Duration
		switch rest[:j] {
		case "ms":
			unit = time.Millisecond
		case "s", "":
			unit = time.Second
		case "m":
			unit = time.Minute
		case "h":
			unit = time.Hour
		case "d":
			unit = 24 * time.Hour
		case "w":
			unit = 7 * 24 * time.Hour
		case "M":
			unit = 30 * 24 * time.Hour
		case "y":
			unit = 365 * 24 * time.Hour
		default:
			return 0, errorString("invalid time unit " + strconv.Quote(rest[:j]) + " in " + strconv.Quote(s))
		}
		rest = rest[j:]
		total += time.Duration(n * float64(unit))
	}
	return total, nil
}

// Size decodes an nginx-style size: "512", "8k", "1m", "1g".
func Size(a *hclsyntax.Attribute) (int64, error) { return ExprSize(a.Expr) }

// ExprSize decodes a static size expression.
func ExprSize(e hclsyntax.Expression) (int64, error) {
	s, err := ExprString(e)
	if err != nil {
		return 0, err
	}
	n, perr := ParseSize(s)
	if perr != nil {
		return 0, Errorf(e.Range(), "%v", perr)
	}
	return n, nil
}

// ParseSize parses a size with an optional k, m or g suffix (either case).
func ParseSize(s string) (int64, error) {
	s = strings.TrimSpace(s)
	mult := int64(1)
	if s != "" {
		switch s[len(s)-1] {
		case 'k', 'K':
			mult = 1 << 10
		case 'm', 'M':
			mult = 1 << 20
		case 'g', 'G':
			mult = 1 << 30
		}
		if mult > 1 {
			s = s[:len(s)-1]
		}
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n < 0 {
		return 0, errorString("invalid size " + strconv.Quote(s))
	}
	return n * mult, nil
}

type errorString string

func (e errorString) Error() string { return string(e) }

// Field is one `name = value` entry of an object expression, in source order.
type Field struct {
	Name      string
	NameRange hcl.Range
	Expr      hclsyntax.Expression
}

// ObjectFields returns the fields of an object constructor `{ a = 1, b = "x" }` without
// evaluating the values, so that values may be templates evaluated per request.
func ObjectFields(e hclsyntax.Expression) ([]Field, error) {
	obj, ok := e.(*hclsyntax.ObjectConsExpr)
	if !ok {
		return nil, Errorf(e.Range(), "expected an object { name = value, ... }")
	}
	var out []Field
	seen := map[string]bool{}
	for _, item := range obj.Items {
		name := hcl.ExprAsKeyword(item.KeyExpr)
		if name == "" {
			v, err := StaticValue(item.KeyExpr)
			if err != nil || v.Type() != cty.String {
				return nil, Errorf(item.KeyExpr.Range(), "object keys must be names or strings")
			}
			name = v.AsString()
		}
		if seen[name] {
			return nil, Errorf(item.KeyExpr.Range(), "duplicate key %q", name)
		}
		seen[name] = true
		out = append(out, Field{Name: name, NameRange: item.KeyExpr.Range(), Expr: item.ValueExpr})
	}
	return out, nil
}

// CheckFields reports any field of fs whose name is not in allowed.
func CheckFields(fs []Field, allowed ...string) error {
	var es Errors
	for _, f := range fs {
		ok := false
		for _, a := range allowed {
			if f.Name == a {
				ok = true
				break
			}
		}
		if !ok {
			es = append(es, Errorf(f.NameRange, "unknown field %q (expected one of: %s)", f.Name, strings.Join(allowed, ", ")))
		}
	}
	return es.Err()
}
