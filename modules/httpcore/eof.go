package httpcore

// EOF ends the response now (ngx.eof): the header and the body so far go to the
// client, which need not wait for the handler that goes on working. Later output is
// dropped.
func (r *Request) EOF() error {
	if r.finished {
		return nil
	}
	r.finish()
	if r.parent == nil && r.c != nil && !r.c.abort {
		if err := r.c.flush(); err != nil {
			return r.c.writeFailed(r, err)
		}
	}
	return nil
}
