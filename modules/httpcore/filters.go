package httpcore

// HasFilters reports whether header or body filters run for responses of l, so that
// a caller that must not re-enter code a filter may run (a scripting VM's lock) can
// tell when writing is safe without precautions.
func (l *Location) HasFilters() bool { return len(l.hfilters)+len(l.bfilters) > 0 }
