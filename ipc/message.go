package ipc

import (
	"encoding/json"
	"fmt"
)

// Type identifies a message.
type Type uint8

// Message types. Master → worker: Config, Quit, Terminate, Reopen, StatusRequest,
// StatusReply, TicketKeys. Worker → master: Ready, Fatal, Status, StatusQuery.
const (
	TConfig        Type = 1
	TQuit          Type = 2
	TTerminate     Type = 3
	TReopen        Type = 4
	TStatusRequest Type = 5
	TStatusReply   Type = 6
	TTicketKeys    Type = 7
	TReady         Type = 20
	TFatal         Type = 21
	TStatus        Type = 22
	TStatusQuery   Type = 23
)

var typeNames = map[Type]string{
	TConfig: "CONFIG", TQuit: "QUIT", TTerminate: "TERMINATE", TReopen: "REOPEN",
	TStatusRequest: "STATUS_REQUEST", TStatusReply: "STATUS_REPLY", TTicketKeys: "TICKET_KEYS",
	TReady: "READY", TFatal: "FATAL", TStatus: "STATUS", TStatusQuery: "STATUS_QUERY",
}

// String names the type as the logs print it.
func (t Type) String() string {
	if n, ok := typeNames[t]; ok {
		return n
	}
	return fmt.Sprintf("TYPE(%d)", uint8(t))
}

// Message is a decoded control message.
type Message interface{ Type() Type }

// Listener describes one listening socket sent with a Config message; the descriptors
// arrive in the same order as the Listeners.
type Listener struct {
	Addr string `json:"addr"` // the listen address as configured, e.g. "127.0.0.1:8080"
}

// Config tells a new worker what to run: its slot, its generation, the config bundle
// the master validated and the sockets of its slot.
type Config struct {
	Generation int        `json:"generation"`
	Slot       int        `json:"slot"`
	Bundle     []byte     `json:"bundle"`
	Listeners  []Listener `json:"listeners"`
	// TicketKeys are the TLS session ticket keys, newest first (see TicketKeys).
	TicketKeys [][]byte `json:"ticket_keys,omitempty"`
	// ACMECertificates and ACMEChallenges are what the master obtained and the
	// challenges it has open (ipc/acme.go), so a worker started between two
	// deliveries serves the same as the others.
	ACMECertificates []ACMECertificate `json:"acme_certificates,omitempty"`
	ACMEChallenges   []ACMEChallenge   `json:"acme_challenges,omitempty"`
}

// TicketKeys carries the TLS session ticket keys the master made, newest first: the
// first encrypts new tickets, all of them decrypt. Every worker of every generation
// gets the same keys (with its Config, and again at each rotation), so a session
// resumes on any worker, across reloads and binary upgrades.
type TicketKeys struct {
	Keys [][]byte `json:"keys"`
}

// MaxTicketKeys bounds the keys one message carries, each MaxTicketKeyLen bytes.
const (
	MaxTicketKeys   = 256
	MaxTicketKeyLen = 64
)

func checkTicketKeys(keys [][]byte) error {
	if len(keys) > MaxTicketKeys {
		return fmt.Errorf("%d ticket keys (at most %d)", len(keys), MaxTicketKeys)
	}
	for _, k := range keys {
		if len(k) < 16 || len(k) > MaxTicketKeyLen {
			return fmt.Errorf("a ticket key of %d bytes (16 to %d)", len(k), MaxTicketKeyLen)
		}
	}
	return nil
}

// Quit asks a worker to drain and exit (graceful).
type Quit struct{}

// Terminate asks a worker to exit now.
type Terminate struct{}

// Reopen asks a worker to reopen its log files.
type Reopen struct{}

// Ready reports that a worker serves on all its sockets.
type Ready struct {
	Pid int `json:"pid"`
}

// Fatal reports a worker start-up error; the worker exits after sending it.
type Fatal struct {
	Text string `json:"text"`
}

// Counters are a worker's status-page counters.
type Counters map[string]int64

// StatusRequest asks a worker for its counters.
type StatusRequest struct {
	ID uint64 `json:"id"`
}

// Status carries a worker's counters, in reply to a StatusRequest.
type Status struct {
	ID       uint64   `json:"id"`
	Counters Counters `json:"counters"`
}

// StatusQuery asks the master for the counters summed over all workers.
type StatusQuery struct {
	ID uint64 `json:"id"`
}

// StatusReply answers a StatusQuery.
type StatusReply struct {
	ID       uint64   `json:"id"`
	Workers  int      `json:"workers"`
	Counters Counters `json:"counters"`
}

// Type implementations.
func (Config) Type() Type        { return TConfig }
func (Quit) Type() Type          { return TQuit }
func (Terminate) Type() Type     { return TTerminate }
func (Reopen) Type() Type        { return TReopen }
func (Ready) Type() Type         { return TReady }
func (Fatal) Type() Type         { return TFatal }
func (StatusRequest) Type() Type { return TStatusRequest }
func (Status) Type() Type        { return TStatus }
func (StatusQuery) Type() Type   { return TStatusQuery }
func (StatusReply) Type() Type   { return TStatusReply }
func (TicketKeys) Type() Type    { return TTicketKeys }

// Encode turns a message into a frame payload.
func Encode(m Message) ([]byte, error) {
	switch m.(type) {
	case Quit, Terminate, Reopen:
		return nil, nil
	}
	return json.Marshal(m)
}

// Decode turns a frame into a message, rejecting unknown types and malformed payloads.
func Decode(f Frame) (Message, error) {
	var m Message
	var err error
	switch f.Type {
	case TQuit, TTerminate, TReopen:
		if len(f.Payload) != 0 {
			return nil, fmt.Errorf("ipc: %v carries an unexpected payload", f.Type)
		}
		switch f.Type {
		case TQuit:
			return Quit{}, nil
		case TTerminate:
			return Terminate{}, nil
		default:
			return Reopen{}, nil
		}
	case TConfig:
		var v Config
		err = json.Unmarshal(f.Payload, &v)
		if err == nil && len(v.Listeners) != f.NFDs {
			err = fmt.Errorf("%d listeners but %d descriptors", len(v.Listeners), f.NFDs)
		}
		if err == nil {
			err = checkTicketKeys(v.TicketKeys)
		}
		if err == nil {
			err = checkACME(v.ACMECertificates, v.ACMEChallenges)
		}
		m = v
	case TTicketKeys:
		var v TicketKeys
		err = json.Unmarshal(f.Payload, &v)
		if err == nil {
			err = checkTicketKeys(v.Keys)
		}
		m = v
	case TReady:
		var v Ready
		err = json.Unmarshal(f.Payload, &v)
		m = v
	case TFatal:
		var v Fatal
		err = json.Unmarshal(f.Payload, &v)
		m = v
	case TStatusRequest:
		var v StatusRequest
		err = json.Unmarshal(f.Payload, &v)
		m = v
	case TStatus:
		var v Status
		err = json.Unmarshal(f.Payload, &v)
		m = v
	case TStatusQuery:
		var v StatusQuery
		err = json.Unmarshal(f.Payload, &v)
		m = v
	case TStatusReply:
		var v StatusReply
		err = json.Unmarshal(f.Payload, &v)
		m = v
	default:
		var ok bool
		if m, err, ok = decodeACME(f); !ok {
			return nil, fmt.Errorf("ipc: unknown message type %d", uint8(f.Type))
		}
	}
	if err != nil {
		return nil, fmt.Errorf("ipc: malformed %v message: %w", f.Type, err)
	}
	if f.Type != TConfig && f.NFDs != 0 {
		return nil, fmt.Errorf("ipc: %v may not carry descriptors", f.Type)
	}
	return m, nil
}
