package httpcore

// ForceStatus makes the response of the request go out with status code whatever
// the location that finally answers it sets (nginx's err_status): error_page uses it
// for "404 =200 /empty.gif", and for the original error code of a page served by an
// internal redirect. 0 lets the answering location's status stand ("404 = /x"). It
// survives internal redirects.
func (r *Request) ForceStatus(code int) { r.forceStatus = code }

// BuiltinVar reports whether name is a built-in variable and whether handlers may
// change it (args, uri, ...), for directives that assign variables by name.
func BuiltinVar(name string) (exists, writable bool) {
	b, ok := builtinVars[name]
	if !ok {
		return false, false
	}
	return true, b.set != nil
}
