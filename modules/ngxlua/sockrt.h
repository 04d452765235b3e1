#ifndef SPINDLE_SOCKRT_H
#define SPINDLE_SOCKRT_H
#include "ngxabi.h"

// spindle_sockbuf is a copy of one socket's buffered data, left by Go after a
// receive (cosocket.go's publish) for spindle_sock_recv: data[off:len] is what Lua
// has not taken yet; id the socket's handle (0: none), seq its run's number.
#define SPINDLE_SOCKBUF_CAP 4096
// wid, wseq, wfd: the socket (handle, run) whose sends spindle_sock_send may write
// to its descriptor, published by Go at its connect (cosocket.go's publishSend).
typedef struct {
	double id;
	double seq;
	int off, len;
	spindle_rt *rt;
	double wid, wseq;
	int wfd;
	char *wbuf; // a table's strings, joined for send (malloc'd, wcap bytes)
	size_t wcap;
	// kaid: the socket (the sockbuf's) setkeepalive was called on, pooled by Go at
	// its next look (takeBack); katimeout in ms (-1: the default), kasize (0: the
	// default).
	double kaid, katimeout, kasize;
	char data[SPINDLE_SOCKBUF_CAP];
} spindle_sockbuf;

int spindle_sock_run(lua_State *L);
int spindle_sock_recv(lua_State *L);
int spindle_sock_send(lua_State *L);
int spindle_sock_keepalive(lua_State *L);
#endif
