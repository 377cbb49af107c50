package batch

import (
	"slices"
	"time"
)

// dispatcher forms every batch. It runs in one goroutine and owns the
// waiting items, so forming a batch takes no lock that submitters or workers
// wait on.
type dispatcher[In, Out any] struct {
	b        *Batcher[In, Out]
	q        [2]fifo[In, Out]  // waiting items by Priority, oldest first
	idle     []*batch[In, Out] // buffers of idle workers; a batch is formed only when one is here
	streak   int               // Online batches formed in a row while Bulk items waited
	draining bool              // intake is closed: flush without waiting for MaxQueueDelay
	last     [2]int            // items in the last batch formed, by Priority; the load it saw
	online   time.Time         // when the last Online item was queued
	reported uint64            // depth last passed to Observer.QueueDepth
	toks     []int             // scratch for pick
	keys     []uint64          // scratch for pick
	picks    []int             // scratch for pick
}

func newDispatcher[In, Out any](b *Batcher[In, Out]) *dispatcher[In, Out] {
	return &dispatcher[In, Out]{
		b:     b,
		idle:  make([]*batch[In, Out], 0, b.opts.Workers),
		last:  [2]int{b.opts.MaxBatchSize, b.opts.MaxBatchSize},
		toks:  make([]int, 0, b.opts.GroupWindow),
		keys:  make([]uint64, 0, b.opts.GroupWindow),
		picks: make([]int, 0, b.opts.MaxBatchSize),
	}
}

// loop runs until Shutdown closed intake and every item is dispatched, then
// waits for the workers and closes done.
func (d *dispatcher[In, Out]) loop() {
	b := d.b
	intake := b.intake
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	var timerC <-chan time.Time
	var timerAt time.Time
	for {
		next := d.dispatch(time.Now())
		d.reportDepth()
		if d.draining && d.q[Online].len() == 0 && d.q[Bulk].len() == 0 {
			break
		}
		// Arm the timer for the delay flush only while a worker could take
		// the batch; a busy pool wakes us through free.
		switch {
		case next.IsZero():
			if timerC != nil {
				timer.Stop()
				timerC, timerAt = nil, time.Time{}
			}
		case !next.Equal(timerAt):
			timer.Reset(time.Until(next))
			timerC, timerAt = timer.C, next
		}
		select {
		case it, ok := <-intake:
			// Take everything already admitted before forming a batch, so
			// that the batch is chosen from the whole queue.
			for ok && it != nil {
				d.add(it)
				it = nil
				select {
				case it, ok = <-intake:
				default:
				}
			}
			if !ok {
				d.draining, intake = true, nil
			}
		case bt := <-b.free:
			d.idle = append(d.idle, bt)
		case <-b.wake:
			d.purge(Online, d.q[Online].len())
			d.purge(Bulk, d.q[Bulk].len())
		case <-timerC:
			timerC, timerAt = nil, time.Time{}
		}
	}
	close(b.work)
	b.workers.Wait()
	b.stopRun(ErrClosed)
	close(b.done)
}

// add queues an admitted chain of items.
func (d *dispatcher[In, Out]) add(it *item[In, Out]) {
	for it != nil {
		next := it.next
		it.next = nil
		d.q[it.prio].push(it)
		if it.prio == Online {
			d.online = it.enq
		}
		it = next
	}
}

// dispatch hands batches to idle workers while some priority is ready. It
// returns when the next batch becomes due by MaxQueueDelay, or the zero time
// if there is nothing to wait for (no idle worker or no item).
func (d *dispatcher[In, Out]) dispatch(now time.Time) time.Time {
	o := &d.b.opts
	for len(d.idle) > 0 {
		p, ok := d.choose()
		if !ok {
			return time.Time{}
		}
		q := &d.q[p]
		w := min(q.len(), o.GroupWindow)
		if d.purge(p, w) > 0 {
			continue // the queue changed; choose again
		}
		oldest := q.at(0).enq
		due := d.draining || o.MaxQueueDelay == 0 || !now.Before(oldest.Add(o.MaxQueueDelay)) ||
			(!o.FixedQueueDelay && q.len() >= d.last[p]) || // the load that formed the last batch is back
			(p == Bulk && d.q[Online].len() > 0) // its anti-starvation turn: take what is there
		d.toks = d.toks[:0]
		for i := range w {
			d.toks = append(d.toks, q.at(i).tokens)
		}
		var full bool
		size := o.MaxBatchSize
		if p == Bulk && now.Sub(d.online) < OnlineRecent {
			size = o.BulkBatchSizeWhileOnline // bound an Online arrival's wait
		}
		d.picks, d.keys, full = pick(d.toks, size, o.MaxBatchTokens, !o.DisableLengthGrouping, d.keys, d.picks)
		if !due && !full {
			return oldest.Add(o.MaxQueueDelay)
		}
		bt := d.idle[len(d.idle)-1]
		d.idle = d.idle[:len(d.idle)-1]
		for _, i := range d.picks {
			bt.items = append(bt.items, q.at(i))
			q.set(i, nil)
		}
		q.compact(w)
		d.last[p] = len(d.picks)
		d.b.release(len(d.picks), p)
		if p == Online && d.q[Bulk].len() > 0 {
			d.streak++
		} else {
			d.streak = 0
		}
		d.b.work <- bt // never blocks: one slot per worker
	}
	return time.Time{}
}

// choose returns the priority of the next batch: Online while Online items
// wait, except that Bulk gets a turn after BulkEvery Online batches in a row
// formed while Bulk items waited.
func (d *dispatcher[In, Out]) choose() (Priority, bool) {
	online, bulk := d.q[Online].len(), d.q[Bulk].len()
	switch {
	case online == 0 && bulk == 0:
		return 0, false
	case bulk > 0 && (online == 0 || d.streak >= d.b.opts.BulkEvery):
		return Bulk, true
	default:
		return Online, true
	}
}

// purge drops the items among the oldest n of priority p whose ctx has
// ended, replies to them with the ctx error, and returns how many it dropped.
func (d *dispatcher[In, Out]) purge(p Priority, n int) int {
	q := &d.q[p]
	dropped := 0
	for i := range n {
		it := q.at(i)
		if err := it.ctx.Err(); err != nil {
			q.set(i, nil)
			d.b.drop(it, err)
			dropped++
		}
	}
	if dropped > 0 {
		q.compact(n)
		d.b.release(dropped, p)
	}
	return dropped
}

func (d *dispatcher[In, Out]) reportDepth() {
	if v := d.b.depth.Load(); v != d.reported {
		d.reported = v
		d.b.obs.QueueDepth(unpackDepth(v))
	}
}

// pick chooses the items of the next batch. toks holds the token counts of
// the oldest waiting items of one priority in arrival order. It returns the
// indices of the chosen items in ascending order, always including 0 (the
// oldest), and whether the batch is full: it has maxSize items or no other
// waiting item would fit within maxTokens padded tokens. keys and picks are
// scratch space, returned for reuse.
//
// Without grouping it takes items in arrival order and stops at the first
// that does not fit. With grouping it takes the oldest item, then the others
// by closeness of their token count to the oldest one's (ties: shorter
// first, then older first), skipping those that do not fit.
func pick(toks []int, maxSize, maxTokens int, group bool, keys []uint64, picks []int) ([]int, []uint64, bool) {
	picks = append(picks[:0], 0)
	longest := toks[0]
	rejected := false
	switch {
	case !group || len(toks) <= maxSize && fits(len(toks), slices.Max(toks), maxTokens):
		// In arrival order: FIFO, or everything waiting fits anyway.
		for i := 1; i < len(toks) && len(picks) < maxSize; i++ {
			l := max(longest, toks[i])
			if !fits(len(picks)+1, l, maxTokens) {
				rejected = true
				break
			}
			picks = append(picks, i)
			longest = l
		}
	default:
		anchor := toks[0]
		keys = keys[:0]
		for i := 1; i < len(toks); i++ {
			var dist, above uint64
			if t := toks[i]; t > anchor {
				dist, above = uint64(t-anchor), 1
			} else {
				dist = uint64(anchor - t)
			}
			keys = append(keys, min(dist, 1<<31-1)<<33|above<<32|uint64(i))
		}
		slices.Sort(keys)
		for _, k := range keys {
			if len(picks) == maxSize {
				break
			}
			i := int(uint32(k))
			l := max(longest, toks[i])
			if !fits(len(picks)+1, l, maxTokens) {
				rejected = true
				continue
			}
			picks = append(picks, i)
			longest = l
		}
		slices.Sort(picks)
	}
	full := len(picks) >= maxSize || rejected || !fits(len(picks)+1, longest, maxTokens)
	return picks, keys, full
}

// fits reports whether n items padded to longest tokens stay within
// maxTokens, without overflowing.
func fits(n, longest, maxTokens int) bool { return longest <= maxTokens/n }

// fifo is a queue of items, oldest first, that can also remove items from
// the front window it is picked from.
type fifo[In, Out any] struct {
	buf  []*item[In, Out]
	head int
}

func (f *fifo[In, Out]) len() int                     { return len(f.buf) - f.head }
func (f *fifo[In, Out]) at(i int) *item[In, Out]      { return f.buf[f.head+i] }
func (f *fifo[In, Out]) set(i int, it *item[In, Out]) { f.buf[f.head+i] = it }

func (f *fifo[In, Out]) push(it *item[In, Out]) {
	if f.head > 0 && len(f.buf) == cap(f.buf) && f.head >= len(f.buf)/2 {
		// Reuse the consumed front instead of growing.
		n := copy(f.buf, f.buf[f.head:])
		clear(f.buf[n:])
		f.buf, f.head = f.buf[:n], 0
	}
	f.buf = append(f.buf, it)
}

// compact removes the nil entries among the first n items, keeping order.
// It slides the survivors to the back of that window and advances head, so
// it costs O(n) whatever the queue length.
func (f *fifo[In, Out]) compact(n int) {
	win := f.buf[f.head : f.head+n]
	j := n
	for i := n - 1; i >= 0; i-- {
		if win[i] != nil {
			j--
			win[j] = win[i]
		}
	}
	clear(win[:j])
	f.head += j
	if f.head == len(f.buf) {
		f.buf, f.head = f.buf[:0], 0
	}
}
