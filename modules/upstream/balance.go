package upstream

import (
	"hash/crc32"
	"sort"
	"strconv"
	"time"

	"github.com/spindle-server/spindle/modules/httpcore"
)

// Tries is one request's walk over an upstream's peers: each call to Next picks a
// peer not tried yet, by the upstream's balancing method, skipping peers that are
// down, failed (max_fails within fail_timeout) or at max_conns. Every peer Next
// returns must be given back with Release.
type Tries struct {
	u      *Upstream
	tried  uint64
	triedN []bool // more than 64 peers
	hash   uint32
	key    string
	hasKey bool
	n      int
}

// Tries starts the peer selection of a request; for hash balancing the key template
// is evaluated for r.
func (u *Upstream) Tries(r *httpcore.Request) Tries {
	t := Tries{u: u}
	if u.Balance == Hash && u.HashKey != nil && r != nil {
		k, err := u.HashKey.String(r)
		if err != nil {
			r.Logf(httpcore.LogError, "upstream hash key: %v", err)
		}
		t.setKey(k)
	}
	return t
}

// TriesKey starts a peer selection with an explicit hash key (the memcached key, a
// redis command's key); the key is ignored unless the upstream balances by hash.
func (u *Upstream) TriesKey(key string) Tries {
	t := Tries{u: u}
	if u.Balance == Hash {
		t.setKey(key)
	}
	return t
}

func (t *Tries) setKey(k string) {
	t.key, t.hasKey = k, true
	t.hash = crc32.ChecksumIEEE([]byte(k))
}

// Count is the number of peers handed out so far.
func (t *Tries) Count() int { return t.n }

func (t *Tries) isTried(p *Peer) bool {
	if t.triedN != nil {
		return t.triedN[p.Index]
	}
	return t.tried&(1<<uint(p.Index)) != 0
}

func (t *Tries) markTried(p *Peer) {
	if n := t.u.NumPeers(); n > 64 {
		if t.triedN == nil {
			t.triedN = make([]bool, n)
		}
		t.triedN[p.Index] = true
		return
	}
	t.tried |= 1 << uint(p.Index)
}

// clock reads the time once, and only when failure accounting needs it: a healthy
// upstream never asks.
type clock struct{ t time.Time }

func (c *clock) now() time.Time {
	if c.t.IsZero() {
		c.t = time.Now()
	}
	return c.t
}

// usable reports whether p may take a request now. A group with a single server never
// marks it failed, as nginx ignores max_fails there.
func (u *Upstream) usable(p *Peer, now *clock, single bool) bool {
	if p.Down {
		return false
	}
	if p.MaxConns > 0 && p.active >= p.MaxConns {
		return false
	}
	if !single && p.MaxFails > 0 && p.fails >= p.MaxFails && now.now().Sub(p.checked) <= p.FailTimeout {
		return false
	}
	return true
}

// Next picks the next peer to try, or returns nil when none is left.
func (t *Tries) Next() *Peer {
	u := t.u
	now := &clock{}
	u.mu.Lock()
	defer u.mu.Unlock()
	var p *Peer
	single := len(u.Peers) == 1 && len(u.Backups) == 0
	switch {
	case u.Balance == Hash && t.hasKey:
		p = t.pickHash(now, single)
	case u.Balance == LeastConn:
		p = t.pickLeastConn(u.Peers, now, single)
		if p == nil {
			p = t.pickLeastConn(u.Backups, now, false)
		}
	default:
		p = t.pickRR(u.Peers, now, single)
		if p == nil {
			p = t.pickRR(u.Backups, now, false)
		}
	}
	if p == nil {
		if t.n == 0 {
			// Every server failed: nginx forgets the failures so that the group
			// recovers as soon as one server does, and this request gets 502.
			for _, q := range u.Peers {
				q.fails = 0
			}
			u.logf("no live upstreams in %s", u)
		}
		return nil
	}
	t.markTried(p)
	t.n++
	p.active++
	if p.MaxFails > 0 && p.fails >= p.MaxFails {
		// A failed server whose fail_timeout passed gets this one request as a
		// probe; until it answers, the others keep it out.
		p.checked = now.now()
	}
	return p
}

// pickRR is nginx's smooth weighted round robin.
func (t *Tries) pickRR(peers []*Peer, now *clock, single bool) *Peer {
	var best *Peer
	total := 0
	for _, p := range peers {
		if t.isTried(p) || !t.u.usable(p, now, single) {
			continue
		}
		p.cw += p.ew
		total += p.ew
		if p.ew < p.Weight {
			p.ew++
		}
		if best == nil || p.cw > best.cw {
			best = p
		}
	}
	if best != nil {
		best.cw -= total
	}
	return best
}

// pickLeastConn takes the peer with the fewest active requests relative to its
// weight; ties are broken by weighted round robin, as nginx does.
func (t *Tries) pickLeastConn(peers []*Peer, now *clock, single bool) *Peer {
	var best *Peer
	ties := 0
	for _, p := range peers {
		if t.isTried(p) || !t.u.usable(p, now, single) {
			continue
		}
		switch {
		case best == nil || p.active*best.Weight < best.active*p.Weight:
			best, ties = p, 1
		case p.active*best.Weight == best.active*p.Weight:
			ties++
		}
	}
	if ties <= 1 {
		return best
	}
	var pick *Peer
	total := 0
	for _, p := range peers {
		if t.isTried(p) || !t.u.usable(p, now, single) || p.active*best.Weight != best.active*p.Weight {
			continue
		}
		p.cw += p.ew
		total += p.ew
		if p.ew < p.Weight {
			p.ew++
		}
		if pick == nil || p.cw > pick.cw {
			pick = p
		}
	}
	pick.cw -= total
	return pick
}

// pickHash maps the key to a peer: on the ring for consistent hashing (walking on
// past unusable peers), else by the hash modulo the total weight, rehashing up to 20
// times as nginx does before falling back to round robin.
func (t *Tries) pickHash(now *clock, single bool) *Peer {
	u := t.u
	if u.Consistent {
		if len(u.ring) == 0 {
			return nil
		}
		i := sort.Search(len(u.ring), func(i int) bool { return u.ring[i].hash >= t.hash })
		for n := 0; n < len(u.ring); n++ {
			p := u.ring[(i+n)%len(u.ring)].peer
			if !t.isTried(p) && u.usable(p, now, single) {
				return p
			}
		}
		return nil
	}
	total := 0
	for _, p := range u.Peers {
		total += p.Weight
	}
	h := t.hash
	for n := 0; n < 20; n++ {
		w := int(h % uint32(total))
		for _, p := range u.Peers {
			if w < p.Weight {
				if !t.isTried(p) && u.usable(p, now, single) {
					return p
				}
				break
			}
			w -= p.Weight
		}
		h = crc32.ChecksumIEEE([]byte(strconv.Itoa(n) + t.key))
	}
	return t.pickRR(u.Peers, now, single)
}

// Release gives back a peer that Next returned. failed reports an error or timeout
// talking to it (not an error the server answered with): max_fails of those within
// fail_timeout take the server out for fail_timeout.
func (u *Upstream) Release(p *Peer, failed bool) {
	u.mu.Lock()
	defer u.mu.Unlock()
	if p.active > 0 {
		p.active--
	}
	if !failed {
		if p.MaxFails > 0 && p.fails >= p.MaxFails {
			// The probe after fail_timeout answered: the server is back.
			p.fails = 0
		}
		return
	}
	if p.MaxFails == 0 || (len(u.Peers) == 1 && len(u.Backups) == 0) {
		return
	}
	now := time.Now()
	if p.fails > 0 && p.fails < p.MaxFails && now.Sub(p.checked) > p.FailTimeout {
		// max_fails counts failures within fail_timeout of each other.
		p.fails = 0
	}
	p.fails++
	p.checked = now
	p.ew -= p.Weight / p.MaxFails
	if p.ew < 0 {
		p.ew = 0
	}
	if p.fails == p.MaxFails {
		u.logf("upstream server temporarily disabled: %s in %s for %s", p, u, p.FailTimeout)
	}
}

// Failed reports whether p is currently out of rotation after failures.
func (u *Upstream) Failed(p *Peer) bool {
	u.mu.Lock()
	defer u.mu.Unlock()
	return p.MaxFails > 0 && p.fails >= p.MaxFails && time.Since(p.checked) <= p.FailTimeout
}

func (u *Upstream) logf(format string, args ...any) {
	if u.owner != nil && u.owner.cfg != nil {
		u.owner.cfg.Log().Warnf(format, args...)
	}
}
