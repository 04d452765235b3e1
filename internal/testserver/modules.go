package testserver

import "github.com/spindle-server/spindle/modules/httpcore"

// VarHeaders registers a test module that copies variables into response headers, as
// add_header X-Upstream $upstream_addr would, for tests of a module's variables
// without the headers module. headers maps each variable to its header; one that is
// empty for the request adds no header. The module's directive, named directive and
// written `directive = true`, changes nothing: the filter runs in every location.
// Call it in a package variable's initializer, once per directive name.
func VarHeaders(directive string, headers map[string]string) *httpcore.Module {
	return httpcore.Register(&httpcore.Module{
		Name:  directive,
		Order: httpcore.OrderHeaders,
		Directives: []httpcore.Directive{
			{Name: directive, Context: httpcore.CtxAll, Set: func(*httpcore.Cmd) error { return nil }},
		},
		Install: func(l *httpcore.Location) error {
			l.AddHeaderFilter(httpcore.OrderHeaders, func(r *httpcore.Request) error {
				for v, h := range headers {
					if s, _ := r.Var(v); s != "" {
						r.RespHeader().Set(h, s)
					}
				}
				return nil
			})
			return nil
		},
	})
}
