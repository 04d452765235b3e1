package conf

import (
	"path/filepath"
	"sort"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/hclsyntax"
	"github.com/zclconf/go-cty/cty"
)

// Item is one directive of a body: an attribute (`root = "html"`) or a block
// (`location "/" { ... }`).
type Item struct {
	Name  string
	Attr  *hclsyntax.Attribute // set for attributes
	Block *hclsyntax.Block     // set for blocks
}

// Range is where the item starts, for error messages.
func (it Item) Range() hcl.Range {
	if it.Attr != nil {
		return it.Attr.NameRange
	}
	return it.Block.TypeRange
}

// Source holds the parsed files of a bundle, so that bodies can be walked in source
// order with their includes spliced in.
type Source struct {
	Bundle *Bundle
	files  map[string]*hclsyntax.Body
}

// Body returns the parsed body of a bundle file.
func (s *Source) Body(path string) *hclsyntax.Body { return s.files[path] }

// Items returns the directives of body in source order, with the contents of
// `include = [...]` files spliced in where the include stands. Order matters: nginx runs
// rewrite-phase directives in the order they are written, and so does spindle.
func (s *Source) Items(body *hclsyntax.Body) ([]Item, Errors) {
	var es Errors
	items := make([]Item, 0, len(body.Attributes)+len(body.Blocks))
	for name, a := range body.Attributes {
		items = append(items, Item{Name: name, Attr: a})
	}
	for _, b := range body.Blocks {
		items = append(items, Item{Name: b.Type, Block: b})
	}
	sort.Slice(items, func(i, j int) bool {
		return items[i].Range().Start.Byte < items[j].Range().Start.Byte
	})
	var out []Item
	seen := map[string]hcl.Range{}
	for _, it := range items {
		if it.Name != "include" || it.Attr == nil {
			out = append(out, it)
			continue
		}
		paths, err := Strings(it.Attr)
		if err != nil {
			es.Add(it.Range(), err)
			continue
		}
		for _, p := range paths {
			p = Resolve(s.Bundle.Prefix, p)
			var files []string
			for f := range s.Bundle.Files {
				if ok, _ := filepath.Match(p, f); ok {
					files = append(files, f)
				}
			}
			if len(files) == 0 && !hasMeta(p) {
				es = append(es, Errorf(it.Attr.Expr.Range(), "include %q: no such file", p))
			}
			sort.Strings(files)
			for _, f := range files {
				sub, subErrs := s.Items(s.files[f])
				es = append(es, subErrs...)
				out = append(out, sub...)
			}
		}
	}
	// Attributes may not repeat across includes either (HCL already rejects repeats
	// within one file).
	for _, it := range out {
		if it.Attr == nil {
			continue
		}
		if prev, ok := seen[it.Name]; ok {
			es = append(es, Errorf(it.Range(), "%q is duplicate (first set at %s:%d,%d)", it.Name, prev.Filename, prev.Start.Line, prev.Start.Column))
			continue
		}
		seen[it.Name] = it.Range()
	}
	return out, es
}

func hasMeta(p string) bool {
	for _, c := range p {
		switch c {
		case '*', '?', '[':
			return true
		}
	}
	return false
}

// scanIncludes parses src and returns the resolved patterns of every include attribute
// in it, at any depth, so that ReadBundle can read those files too.
func scanIncludes(path string, src []byte, prefix string) ([]string, Errors) {
	f, diags := hclsyntax.ParseConfig(src, path, hcl.Pos{Line: 1, Column: 1, Byte: 0})
	if diags.HasErrors() {
		return nil, FromDiags(diags)
	}
	var out []string
	var walk func(b *hclsyntax.Body)
	walk = func(b *hclsyntax.Body) {
		if a, ok := b.Attributes["include"]; ok {
			if ps, err := Strings(a); err == nil {
				for _, p := range ps {
					out = append(out, Resolve(prefix, p))
				}
			}
		}
		for _, blk := range b.Blocks {
			walk(blk.Body)
		}
	}
	walk(f.Body.(*hclsyntax.Body))
	return out, nil
}

// StaticValue evaluates an expression that may not reference request variables: the
// values of directives that configure the server rather than a request.
func StaticValue(expr hclsyntax.Expression) (cty.Value, error) {
	if vars := expr.Variables(); len(vars) > 0 {
		return cty.NilVal, Errorf(vars[0].SourceRange(), "variables are not allowed here")
	}
	v, diags := expr.Value(nil)
	if diags.HasErrors() {
		return cty.NilVal, FromDiags(diags)
	}
	if v.IsNull() {
		return cty.NilVal, Errorf(expr.Range(), "value must not be null")
	}
	if !v.IsWhollyKnown() {
		return cty.NilVal, Errorf(expr.Range(), "value must be known")
	}
	return v, nil
}
