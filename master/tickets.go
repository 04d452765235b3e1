package master

import (
	"crypto/rand"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/spindle-server/spindle/ipc"
	"golang.org/x/sys/unix"
)

// TLS session ticket keys. The master makes them and every worker of every generation
// uses the same ones, so that a client resumes its session on whichever worker takes
// its next connection, after a reload and after a binary upgrade too. (nginx without
// ssl_session_cache gives each reload new keys; with a shared cache it keeps them
// across reloads but not across a binary upgrade.)
//
// A new key is made every ticketRotation; the newest encrypts, and the previous
// ticketKeep-1 still decrypt, so a ticket stays usable for at least a day, longer than
// any ssl_session_timeout short of that (longer timeouts are cut to a day; the
// timeout itself is checked inside the ticket, tls.go). Keys live in memory only: a
// binary upgrade hands them to the new master as a memfd among tableflip's inherited
// files, never a file on disk that a backup or a crash could leave behind with the
// means to decrypt recorded sessions.
const (
	ticketRotation = time.Hour
	ticketKeep     = 25
	ticketKeyLen   = 32
	ticketKeysName = "spindle:ticket-keys"
)

// ticketKeys is the master's key ring.
type ticketKeys struct {
	Keys    [][]byte  `json:"keys"`    // newest first
	Rotated time.Time `json:"rotated"` // when Keys[0] was made
}

// loadTicketKeys takes the keys a previous master handed over in an upgrade, or makes
// the first one.
func (m *Master) loadTicketKeys() {
	if m.upg != nil {
		if f, err := m.upg.Fds.File(ticketKeysName); err == nil && f != nil {
			var k ticketKeys
			data, err := io.ReadAll(io.NewSectionReader(f, 0, 1<<20))
			f.Close()
			if err == nil {
				err = json.Unmarshal(data, &k)
			}
			if err == nil && len(k.Keys) > 0 {
				m.tickets = &k
				m.rotateTicketKeys(time.Now())
				return
			}
			m.log.Alertf("TLS session ticket keys from the previous master unreadable, making new ones: %v", err)
		}
	}
	m.tickets = &ticketKeys{}
	m.rotateTicketKeys(time.Now())
}

// rotateTicketKeys adds a new key if the newest is ticketRotation old (or there is
// none), dropping the oldest beyond ticketKeep. It reports whether the ring changed.
func (m *Master) rotateTicketKeys(now time.Time) bool {
	k := m.tickets
	if len(k.Keys) > 0 && now.Sub(k.Rotated) < ticketRotation {
		return false
	}
	key := make([]byte, ticketKeyLen)
	if _, err := rand.Read(key); err != nil {
		m.log.Alertf("making a TLS session ticket key: %v", err)
		return false
	}
	k.Keys = append([][]byte{key}, k.Keys...)
	if len(k.Keys) > ticketKeep {
		k.Keys = k.Keys[:ticketKeep]
	}
	k.Rotated = now
	return true
}

// onTicketTick rotates the keys when due and gives every worker the new ring.
func (m *Master) onTicketTick() {
	if !m.rotateTicketKeys(time.Now()) {
		return
	}
	msg := ipc.TicketKeys{Keys: m.tickets.Keys}
	for _, p := range m.procs {
		if !p.exited {
			if err := p.ctl.Send(msg); err != nil {
				m.log.Alertf("sending TLS session ticket keys to worker %d: %v", p.pid, err)
			}
		}
	}
}

// startTicketTimer makes the master look at the keys' age regularly.
func (m *Master) startTicketTimer() {
	go func() {
		t := time.NewTicker(ticketRotation / 12)
		defer t.Stop()
		for range t.C {
			m.events <- event{ticketTick: true}
		}
	}()
}

// registerTicketKeys hands the keys to tableflip before a binary upgrade, in a memfd.
func (m *Master) registerTicketKeys() error {
	data, err := json.Marshal(m.tickets)
	if err != nil {
		return err
	}
	fd, err := unix.MemfdCreate("spindle-ticket-keys", unix.MFD_CLOEXEC)
	if err != nil {
		return fmt.Errorf("memfd for the TLS session ticket keys: %w", err)
	}
	f := os.NewFile(uintptr(fd), "spindle-ticket-keys")
	defer f.Close()
	if _, err := f.Write(data); err != nil {
		return err
	}
	return m.upg.Fds.AddFile(ticketKeysName, f)
}
