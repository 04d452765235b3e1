package httpcore

import (
	"crypto/md5"
	"crypto/sha1"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"net/url"
	"strings"
	"sync"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/ext/tryfunc"
	"github.com/hashicorp/hcl/v2/hclsyntax"
	"github.com/spindle-server/spindle/conf"
	"github.com/zclconf/go-cty/cty"
	"github.com/zclconf/go-cty/cty/function"
	"github.com/zclconf/go-cty/cty/function/stdlib"
)

var (
	funcsOnce sync.Once
	funcs     map[string]function.Function
)

// exprFuncs is the function library of spindle expressions: go-cty's standard library
// under Terraform's familiar names, plus web helpers.
func exprFuncs() map[string]function.Function {
	funcsOnce.Do(func() {
		funcs = map[string]function.Function{
			"upper": stdlib.UpperFunc, "lower": stdlib.LowerFunc,
			"trim": stdlib.TrimFunc, "trimspace": stdlib.TrimSpaceFunc,
			"trimprefix": stdlib.TrimPrefixFunc, "trimsuffix": stdlib.TrimSuffixFunc,
			"replace": stdlib.ReplaceFunc, "regex_replace": stdlib.RegexReplaceFunc,
			"regex": stdlib.RegexFunc, "regexall": stdlib.RegexAllFunc,
			"substr": stdlib.SubstrFunc, "strlen": stdlib.StrlenFunc, "length": stdlib.LengthFunc,
			"join": stdlib.JoinFunc, "split": stdlib.SplitFunc, "format": stdlib.FormatFunc,
			"coalesce": stdlib.CoalesceFunc, "contains": stdlib.ContainsFunc,
			"min": stdlib.MinFunc, "max": stdlib.MaxFunc, "abs": stdlib.AbsoluteFunc,
			"ceil": stdlib.CeilFunc, "floor": stdlib.FloorFunc, "concat": stdlib.ConcatFunc,
			"keys": stdlib.KeysFunc, "values": stdlib.ValuesFunc, "lookup": stdlib.LookupFunc,
			"jsonencode": stdlib.JSONEncodeFunc, "jsondecode": stdlib.JSONDecodeFunc,
			"tonumber": stdlib.MakeToFunc(cty.Number), "tostring": stdlib.MakeToFunc(cty.String),
			"tobool": stdlib.MakeToFunc(cty.Bool),
			"try":    tryfunc.TryFunc, "can": tryfunc.CanFunc,
			"startswith":   stringPredicate(strings.HasPrefix),
			"endswith":     stringPredicate(strings.HasSuffix),
			"urlencode":    stringFunc(url.QueryEscape),
			"urldecode":    stringFunc(func(s string) string { v, _ := url.QueryUnescape(s); return v }),
			"base64encode": stringFunc(func(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }),
			"base64decode": stringFunc(func(s string) string { b, _ := base64.StdEncoding.DecodeString(s); return string(b) }),
			"md5":          stringFunc(func(s string) string { h := md5.Sum([]byte(s)); return hex.EncodeToString(h[:]) }),
			"sha1":         stringFunc(func(s string) string { h := sha1.Sum([]byte(s)); return hex.EncodeToString(h[:]) }),
			"sha256":       stringFunc(func(s string) string { h := sha256.Sum256([]byte(s)); return hex.EncodeToString(h[:]) }),
		}
	})
	return funcs
}

func stringFunc(f func(string) string) function.Function {
	return function.New(&function.Spec{
		Params: []function.Parameter{{Name: "s", Type: cty.String}},
		Type:   function.StaticReturnType(cty.String),
		Impl: func(args []cty.Value, _ cty.Type) (cty.Value, error) {
			return cty.StringVal(f(args[0].AsString())), nil
		},
	})
}

func stringPredicate(f func(s, p string) bool) function.Function {
	return function.New(&function.Spec{
		Params: []function.Parameter{{Name: "s", Type: cty.String}, {Name: "p", Type: cty.String}},
		Type:   function.StaticReturnType(cty.Bool),
		Impl: func(args []cty.Value, _ cty.Type) (cty.Value, error) {
			return cty.BoolVal(f(args[0].AsString(), args[1].AsString())), nil
		},
	})
}

// checkFuncs reports calls to functions spindle does not have, at load time.
func checkFuncs(e hclsyntax.Expression) error {
	var es conf.Errors
	fs := exprFuncs()
	hclsyntax.VisitAll(e, func(n hclsyntax.Node) hcl.Diagnostics {
		if call, ok := n.(*hclsyntax.FunctionCallExpr); ok {
			if _, ok := fs[call.Name]; !ok {
				es = append(es, conf.Errorf(call.NameRange, "unknown function %q", call.Name))
			}
		}
		return nil
	})
	return es.Err()
}
