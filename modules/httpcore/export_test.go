package httpcore

// InLoop reports whether r runs inline in the event loop's leader (tests only).
func InLoop(r *Request) bool { return r.c != nil && r.c.inLoop }
