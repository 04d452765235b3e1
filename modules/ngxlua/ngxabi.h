#ifndef SPINDLE_NGXABI_H
#define SPINDLE_NGXABI_H
#include <stddef.h>

// spindle_rt is the part of an engine's state that its Lua code reads and writes
// through the FFI without calling Go (a call into Go costs a cgo callback, ~1,000
// instructions; a field read a few): ngx.say/print's output, ngx.ctx's key and
// ngx.now's time. Go resets the cached values around every resume and takes the
// output after it (thread.go, rt.go).
typedef struct {
	unsigned char *buf; // output of ngx.say/print not yet taken by Go
	int len, cap;
	int ok;       // output may be buffered here in this resume (else Go's out decides)
	int said;     // output was produced in this resume (ngx.print("") included)
	double reqid; // ngx.ctx's key of the resume's request: -1 until Go gave it
	double now;   // ngx.now's cached time, 0 until read in this resume
	double seq;   // the resumed run's number (ngx.req.get_headers' cache)
	int eid;      // the engine's index for the Go functions C calls (ffiEngines)
	int hdr_ok;   // ngx.header sets may be queued in hbuf (Go decides: phase, header not sent)
	unsigned char *hbuf; // queued ngx.header sets, applied by Go before anything reads them
	int hlen, hcap;
	// The request's header block, query string and $uri, copied by Go
	// (spindle_req_info) for the C functions that read them: valid while info_ok
	// (until the resume ends or Lua calls a Go function, which may change them).
	int info_ok, hdr_fast; // hdr_fast: the block is all the request's headers
	int uri_ok;            // $uri has a value
	int hdr_len, args_len, uri_len;
	unsigned char *info; // header block, then args, then $uri
	int info_cap;
} spindle_rt;

double spindle_now(spindle_rt *rt);
#endif
