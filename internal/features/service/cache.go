package service

import (
	"context"
	"fmt"
	"time"

	"github.com/embedd/embedd/internal/features"
)

// The cache of decoded states (see the package documentation): an LRU of
// at most Options.CacheEntities entries, served as is within
// Options.CacheTTL and revalidated against the store's revision after it.
// Guarded by Service.cacheMu.

type cached struct {
	entity string
	st     *State
	at     time.Time
}

// states returns the state of each entity and where it came from (cache or
// online), reading the store once, pipelined, for the misses.
func (s *Service) states(ctx context.Context, ids []string, now time.Time) ([]*State, []features.Source, error) {
	out := make([]*State, len(ids))
	src := make([]features.Source, len(ids))
	var miss, stale []int
	var staleSt []*State
	s.cacheMu.Lock()
	for i, id := range ids {
		if el, ok := s.cache[id]; ok && s.opts.CacheTTL > 0 {
			c := el.Value.(*cached)
			s.lru.MoveToFront(el)
			if now.Sub(c.at) < s.opts.CacheTTL {
				out[i], src[i] = c.st, features.SourceCache
				continue
			}
			if c.st.Rev != "" {
				stale, staleSt = append(stale, i), append(staleSt, c.st)
				continue
			}
		}
		miss = append(miss, i)
	}
	s.cacheMu.Unlock()
	// Revalidate stale entries: one small round trip; unchanged states
	// are served from memory, changed ones reloaded.
	if rv, ok := s.opts.States.(Revisioner); ok && len(stale) > 0 {
		sids := make([]string, len(stale))
		for k, i := range stale {
			sids[k] = ids[i]
		}
		revs, err := rv.Revisions(ctx, sids)
		if err != nil {
			return nil, nil, fmt.Errorf("state (%s): %w", s.opts.States.Name(), err)
		}
		for k, i := range stale {
			if revs[k] == staleSt[k].Rev {
				out[i], src[i] = staleSt[k], features.SourceCache
				s.put(ids[i], staleSt[k], now)
			} else {
				miss = append(miss, i)
			}
		}
	} else {
		miss = append(miss, stale...)
	}
	if len(miss) == 0 {
		return out, src, nil
	}
	mids := make([]string, len(miss))
	for k, i := range miss {
		mids[k] = ids[i]
	}
	loaded, err := s.opts.States.Load(ctx, mids)
	if err != nil {
		return nil, nil, fmt.Errorf("state (%s): %w", s.opts.States.Name(), err)
	}
	for k, i := range miss {
		out[i], src[i] = loaded[k], features.SourceOnline
		if loaded[k] != nil && s.opts.CacheTTL > 0 {
			s.put(ids[i], loaded[k], now)
		}
	}
	return out, src, nil
}

func (s *Service) put(id string, st *State, now time.Time) {
	s.cacheMu.Lock()
	defer s.cacheMu.Unlock()
	if el, ok := s.cache[id]; ok {
		el.Value = &cached{id, st, now}
		s.lru.MoveToFront(el)
		return
	}
	s.cache[id] = s.lru.PushFront(&cached{id, st, now})
	for s.lru.Len() > s.opts.CacheEntities {
		last := s.lru.Back()
		s.lru.Remove(last)
		delete(s.cache, last.Value.(*cached).entity)
	}
}

func (s *Service) invalidate(id string) {
	s.cacheMu.Lock()
	defer s.cacheMu.Unlock()
	if el, ok := s.cache[id]; ok {
		s.lru.Remove(el)
		delete(s.cache, id)
	}
}
