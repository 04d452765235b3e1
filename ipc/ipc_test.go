package ipc

import (
	"bytes"
	"errors"
	"io"
	"os"
	"reflect"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

func TestRoundTrip(t *testing.T) {
	msgs := []Message{
		Config{Generation: 3, Slot: 1, Bundle: []byte("worker_processes = 2\n"), Listeners: []Listener{{Addr: "127.0.0.1:8080"}}},
		Quit{}, Terminate{}, Reopen{},
		Ready{Pid: 42},
		Fatal{Text: "conf/spindle.hcl:3,1: boom"},
		StatusRequest{ID: 7},
		Status{ID: 7, Counters: Counters{"requests": 10}},
		StatusQuery{ID: 9},
		StatusReply{ID: 9, Workers: 2, Counters: Counters{"requests": 20}},
		TicketKeys{Keys: [][]byte{bytes.Repeat([]byte{1}, 32), bytes.Repeat([]byte{2}, 32)}},
		Config{Generation: 4, Bundle: []byte("x"), TicketKeys: [][]byte{bytes.Repeat([]byte{3}, 32)}},
	}
	for _, m := range msgs {
		payload, err := Encode(m)
		if err != nil {
			t.Fatal(err)
		}
		nfds := 0
		if c, ok := m.(Config); ok {
			nfds = len(c.Listeners)
		}
		b, err := AppendFrame(nil, Frame{Type: m.Type(), NFDs: nfds, Payload: payload})
		if err != nil {
			t.Fatal(err)
		}
		f, n, err := ParseFrame(b)
		if err != nil || n != len(b) {
			t.Fatalf("%v: ParseFrame n=%d err=%v", m.Type(), n, err)
		}
		got, err := Decode(f)
		if err != nil {
			t.Fatalf("%v: %v", m.Type(), err)
		}
		if !reflect.DeepEqual(got, m) {
			t.Errorf("round trip: got %#v, want %#v", got, m)
		}
	}
}

func TestRejects(t *testing.T) {
	good, _ := AppendFrame(nil, Frame{Type: TReady, Payload: []byte(`{"pid":1}`)})
	cases := []struct {
		name string
		in   []byte
		want error
	}{
		{"bad magic", []byte("GET / HTTP/1.1\r\n"), ErrBadMagic},
		{"bad version", append([]byte{'S', 'P', 9}, good[3:]...), ErrVersion},
		{"oversized", []byte{'S', 'P', Version, byte(TReady), 0, 0, 0xff, 0xff, 0xff, 0xff}, ErrTooLarge},
		{"too many fds", []byte{'S', 'P', Version, byte(TConfig), 0xff, 0xff, 0, 0, 0, 0}, ErrTooManyFDs},
	}
	for _, c := range cases {
		if _, _, err := ParseFrame(c.in); !errors.Is(err, c.want) {
			t.Errorf("%s: ParseFrame err = %v, want %v", c.name, err, c.want)
		}
		if _, err := ReadFrame(bytes.NewReader(c.in)); !errors.Is(err, c.want) {
			t.Errorf("%s: ReadFrame err = %v, want %v", c.name, err, c.want)
		}
	}
	// Truncated frames: ParseFrame waits for more, ReadFrame reports the truncation.
	for i := 1; i < len(good); i++ {
		if _, n, err := ParseFrame(good[:i]); n != 0 || err != nil {
			t.Fatalf("truncated at %d: n=%d err=%v", i, n, err)
		}
		if _, err := ReadFrame(bytes.NewReader(good[:i])); !errors.Is(err, io.ErrUnexpectedEOF) {
			t.Fatalf("truncated at %d: ReadFrame err = %v", i, err)
		}
	}
	// Garbage payloads and descriptors where none belong.
	bad := []Frame{
		{Type: TReady, Payload: []byte("{not json")},
		{Type: TQuit, Payload: []byte("x")},
		{Type: Type(99)},
		{Type: TReady, NFDs: 1, Payload: []byte(`{"pid":1}`)},
		{Type: TConfig, NFDs: 0, Payload: []byte(`{"listeners":[{"addr":"a"}]}`)},
		{Type: TTicketKeys, Payload: []byte(`{"keys":["AAEC"]}`)}, // a 3-byte key
		{Type: TTicketKeys, NFDs: 1, Payload: []byte(`{"keys":[]}`)},
	}
	for _, f := range bad {
		if _, err := Decode(f); err == nil {
			t.Errorf("Decode(%v %q) accepted", f.Type, f.Payload)
		}
	}
}

func TestConnPassesDescriptors(t *testing.T) {
	master, workerFD, err := Pair()
	if err != nil {
		t.Fatal(err)
	}
	defer master.Close()
	worker, err := FromFD(workerFD)
	if err != nil {
		t.Fatal(err)
	}
	defer worker.Close()

	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	defer w.Close()
	big := bytes.Repeat([]byte("x"), 1<<20) // larger than one sendmsg
	cfg := Config{Generation: 1, Bundle: big, Listeners: []Listener{{Addr: "pipe"}}}
	rc, _ := r.SyscallConn()
	var rfd int
	rc.Control(func(fd uintptr) { rfd = int(fd) })
	errc := make(chan error, 1)
	go func() { errc <- master.Send(cfg, rfd) }()

	m, fds, err := worker.Recv()
	if err != nil {
		t.Fatal(err)
	}
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
	got := m.(Config)
	if len(fds) != 1 || !bytes.Equal(got.Bundle, big) {
		t.Fatalf("got %d fds, bundle %d bytes", len(fds), len(got.Bundle))
	}
	// The received descriptor is the same pipe: what we write arrives at r.
	f := os.NewFile(uintptr(fds[0]), "received")
	defer f.Close()
	w.Write([]byte("ping"))
	buf := make([]byte, 4)
	r.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.ReadFull(f, buf); err != nil || string(buf) != "ping" {
		t.Fatalf("read through passed fd: %q %v", buf, err)
	}

	// Worker to master, then EOF when the worker end closes.
	if err := worker.Send(Ready{Pid: 5}); err != nil {
		t.Fatal(err)
	}
	if m, _, err := master.Recv(); err != nil || m.(Ready).Pid != 5 {
		t.Fatalf("Recv = %v %v", m, err)
	}
	worker.Close()
	if _, _, err := master.Recv(); !errors.Is(err, io.EOF) {
		t.Fatalf("after close: %v, want EOF", err)
	}
}

func TestConnRejectsGarbage(t *testing.T) {
	master, workerFD, err := Pair()
	if err != nil {
		t.Fatal(err)
	}
	defer master.Close()
	unix.Write(workerFD, []byte("this is not a frame"))
	unix.Close(workerFD)
	_, _, err = master.Recv()
	if err == nil || !strings.Contains(err.Error(), "magic") {
		t.Fatalf("garbage: err = %v", err)
	}
}

func FuzzDecode(f *testing.F) {
	for _, m := range []Message{Ready{Pid: 1}, Quit{}, Config{Listeners: []Listener{{Addr: "x"}}}, StatusReply{Counters: Counters{"a": 1}}} {
		payload, _ := Encode(m)
		nfds := 0
		if c, ok := m.(Config); ok {
			nfds = len(c.Listeners)
		}
		b, _ := AppendFrame(nil, Frame{Type: m.Type(), NFDs: nfds, Payload: payload})
		f.Add(b)
	}
	f.Add([]byte("SP\x01\x02\x00\x00\x00\x00\x00\x05hello"))
	f.Fuzz(func(t *testing.T, data []byte) {
		fr, n, err := ParseFrame(data)
		if err != nil || n == 0 {
			return
		}
		if n > len(data) {
			t.Fatalf("consumed %d of %d bytes", n, len(data))
		}
		m, err := Decode(fr)
		if err != nil {
			return
		}
		// What decodes must encode again and decode to the same message.
		payload, err := Encode(m)
		if err != nil {
			t.Fatalf("re-encode %T: %v", m, err)
		}
		if _, err := Decode(Frame{Type: m.Type(), NFDs: fr.NFDs, Payload: payload}); err != nil {
			t.Fatalf("re-decode %T: %v", m, err)
		}
		if _, err := ReadFrame(bytes.NewReader(data)); err != nil {
			t.Fatalf("ReadFrame disagrees with ParseFrame: %v", err)
		}
	})
}
