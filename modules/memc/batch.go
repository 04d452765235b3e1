package memc

import (
	"sync"

	"github.com/bradfitz/gomemcache/memcache"
)

// Gets of concurrent requests to one server travel together, as go-redis's
// auto-pipeliner does for redis: a get that finds fewer than maxGetBatches multi-gets
// in flight sends its key at once (alone, when the worker is not busy, so a lone
// request waits no longer than before); otherwise it queues, and the next multi-get to
// finish hands the queue to its first caller, which sends all its keys in one
// gomemcache GetMulti ("gets k1 k2 ...") on one pooled connection. Under load, one
// round trip and one connection serve dozens of requests, where a get per connection
// costs every request a write, a read and a wake-up of its own.

// maxGetBatches bounds the multi-gets in flight per server: enough to keep the
// server busy while a reply travels, few enough that batches fill up under load.
const maxGetBatches = 2

// maxGetKeys bounds the keys of one multi-get (a line of at most about 25 KB).
const maxGetKeys = 100

type getBatcher struct {
	mu      sync.Mutex
	queue   []*getCall
	running int
}

type getCall struct {
	key  string
	item *memcache.Item
	err  error
	done chan struct{}
	lead []*getCall // set when this call is to send the next batch, itself included
}

// get fetches key from the server, batched with the gets of other requests.
func (s *server) get(key string) (*memcache.Item, error) {
	if s.sem == nil || !legalKey(key) {
		// keepalive = 0 dials per call anyway; a malformed key would fail the whole
		// batch.
		return s.getOne(key)
	}
	b := &s.gets
	c := &getCall{key: key}
	b.mu.Lock()
	if b.running < maxGetBatches {
		b.running++
		b.mu.Unlock()
		s.sendGets([]*getCall{c}, c)
		return c.item, c.err
	}
	c.done = make(chan struct{})
	b.queue = append(b.queue, c)
	b.mu.Unlock()
	<-c.done
	if c.lead != nil {
		s.sendGets(c.lead, c)
	}
	return c.item, c.err
}

// sendGets runs one multi-get for calls, on behalf of self (one of them, already
// awake), wakes the others with their results, and passes the queue on.
func (s *server) sendGets(calls []*getCall, self *getCall) {
	var items map[string]*memcache.Item
	var err error
	if len(calls) == 1 {
		var it *memcache.Item
		it, err = s.getOne(calls[0].key)
		if it != nil {
			items = map[string]*memcache.Item{it.Key: it}
		}
	} else {
		keys := make([]string, 0, len(calls))
		seen := make(map[string]struct{}, len(calls))
		for _, c := range calls {
			if _, dup := seen[c.key]; !dup {
				seen[c.key] = struct{}{}
				keys = append(keys, c.key)
			}
		}
		err = s.with(func(c *memcache.Client) error {
			var err error
			items, err = c.GetMulti(keys)
			return err
		})
	}

	b := &s.gets
	b.mu.Lock()
	var next []*getCall
	if len(b.queue) > 0 {
		n := min(len(b.queue), maxGetKeys)
		next = b.queue[:n:n]
		b.queue = b.queue[n:]
		if len(b.queue) == 0 {
			b.queue = nil
		}
	} else {
		b.running--
	}
	b.mu.Unlock()

	for _, c := range calls {
		switch {
		case err != nil && err != memcache.ErrCacheMiss:
			c.err = err
		case items[c.key] != nil:
			c.item = copyItem(items[c.key], len(calls) > 1)
		default:
			c.err = memcache.ErrCacheMiss
		}
		if c != self {
			close(c.done)
		}
	}
	if next != nil {
		next[0].lead = next
		close(next[0].done)
	}
}

// getOne is a plain get of one key on a pooled (or, for keepalive = 0, new)
// connection.
func (s *server) getOne(key string) (*memcache.Item, error) {
	var it *memcache.Item
	err := s.with(func(c *memcache.Client) error {
		var err error
		it, err = c.Get(key)
		return err
	})
	return it, err
}

// copyItem gives each caller an item of its own when several asked for one key, so
// that one may change its fields (to set it again, say) while the others read theirs.
func copyItem(it *memcache.Item, shared bool) *memcache.Item {
	if !shared {
		return it
	}
	cp := *it
	return &cp
}

// legalKey is gomemcache's key check: at most 250 bytes, no spaces or control
// characters.
func legalKey(key string) bool {
	if len(key) > 250 {
		return false
	}
	for i := 0; i < len(key); i++ {
		if key[i] <= ' ' || key[i] == 0x7f {
			return false
		}
	}
	return true
}
