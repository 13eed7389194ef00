package wal

import (
	"context"
	"errors"
	"fmt"
	"sync"

	"github.com/woodpecker-wal/woodpecker/objstore"
	"github.com/woodpecker-wal/woodpecker/wal/codec"
)

// author is who writes a log's fragments, and what each fragment it writes
// carries: the log's incarnation (logID), the writer's epoch and its random
// nonce, under the log's key prefix. A Writer is one; DeleteLog makes one
// for the epoch it took, to fence the log's open segment.
type author struct {
	name   string // the log's name, for errors and logs
	prefix string // bucket key prefix of the log's fragments
	logID  uint64
	epoch  uint64
	nonce  uint64
}

// fenceSegment ends segment s of an earlier writer for a, a later one: it writes a fence at the
// lowest sequence number g not holding a data fragment and returns g and the
// index of the last entry below it. Every fragment below g is valid data;
// anything above is void.
//
// The previous writer may still be writing (a zombie). Its fragments can
// land at g before the fence does; then the chase goes on above them. To
// overtake a busy zombie the fence is tried at a window of sequence numbers
// at once, doubling the window each round: the lowest of them where a fence
// lands (or an earlier fence already sits), with data in every slot below,
// ends the segment. Fences above it are void like any other fragment there.
func (c *Client) fenceSegment(ctx context.Context, w author, s segRec) (g, last uint64, err error) {
	g, err = denseFragments(ctx, c.cfg.Bucket, w.prefix, s.ID, 0)
	if err != nil {
		return 0, 0, fmt.Errorf("wal: fence log %q: %w", w.name, err)
	}
	fence := func(seq uint64) ([]byte, error) {
		return codec.AppendFragment(nil, codec.Header{
			Kind: codec.KindFence, LogID: w.logID, Segment: s.ID, Seq: seq, Epoch: w.epoch, Nonce: w.nonce,
		}, nil)
	}
	window := uint64(1)
	for rt := c.retrier(); ; {
		outcomes := make([]error, window)
		var wg sync.WaitGroup
		for k := uint64(0); k < window; k++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				f, err := fence(g + k)
				if err != nil {
					outcomes[k] = err
					return
				}
				actx, cancel := c.requestCtx(ctx)
				defer cancel()
				_, outcomes[k] = c.cfg.Bucket.PutIfAbsent(actx, codec.FragmentKey(w.prefix, s.ID, g+k), f)
			}()
		}
		wg.Wait()
		end, found, retry := uint64(0), false, error(nil)
		for k := uint64(0); k < window && !found && retry == nil; k++ {
			switch perr := outcomes[k]; {
			case perr == nil:
				end, found = g+k, true
			case errors.Is(perr, objstore.ErrExists):
				actx, cancel := c.requestCtx(ctx)
				info, herr := c.cfg.Bucket.Head(actx, codec.FragmentKey(w.prefix, s.ID, g+k))
				cancel()
				switch {
				case herr != nil:
					retry = herr
					g += k
				case isFence(info): // a fence or seal (ours, retried, or an earlier one)
					end, found = g+k, true
				}
				// else: data of the old writer that landed first; it counts.
			default:
				retry = perr // unknown outcome at g+k: resolve it before going higher
				g += k
			}
		}
		if found {
			g = end
			break
		}
		if retry == nil {
			// A busy old writer filled the whole window: skip what it landed.
			if g, err = denseFragments(ctx, c.cfg.Bucket, w.prefix, s.ID, g+window); err != nil {
				return 0, 0, fmt.Errorf("wal: fence log %q: %w", w.name, err)
			}
			window = min(window*2, 64)
			continue
		}
		c.cfg.Logger.Warn("wal: fence write failed; retrying", "log", w.name, "segment", s.ID, "seq", g, "err", retry)
		if !rt.Again(ctx) {
			return 0, 0, fmt.Errorf("wal: fence log %q segment %d at %d: %w", w.name, s.ID, g, retry)
		}
		c.metrics.putRetries.Inc()
		window = 1
	}
	last = s.First - 1
	if g > 0 {
		key := codec.FragmentKey(w.prefix, s.ID, g-1)
		f, err := c.fragment(ctx, key)
		if err != nil {
			return 0, 0, fmt.Errorf("wal: recover log %q: read tail fragment: %w", w.name, err)
		}
		last = f.Header.LastIndex()
	}
	c.metrics.recoveries.Inc()
	c.stats.segFenced.Add(1)
	c.cfg.Logger.Info("wal: fenced segment", "log", w.name, "segment", s.ID, "fence_seq", g, "last", last)
	return g, last, nil
}

// denseFragments returns the number of valid fragments of segment seg of
// the log under logPrefix: the dense run from sequence 0 up to the first
// gap, fence or seal (80 bytes: the LIST alone tells), which is also the
// lowest sequence number holding no data fragment, where a fence goes
// (docs/design.md, decision 3). Fragments 0..from-1 are taken to be valid:
// only the keys after them are listed, in pages of 1,000. Readers without
// the writer count an open segment with it; fencing finds its slot with it.
func denseFragments(ctx context.Context, b objstore.Bucket, logPrefix string, seg, from uint64) (uint64, error) {
	n := from
	after := ""
	if from > 0 {
		after = codec.FragmentKey(logPrefix, seg, from-1)
	}
	const page = 1000
	for {
		objs, err := b.List(ctx, objstore.ListOptions{Prefix: codec.SegmentPrefix(logPrefix, seg), StartAfter: after, Limit: page})
		if err != nil {
			return 0, fmt.Errorf("wal: list segment %d: %w", seg, err)
		}
		for _, o := range objs {
			_, seq, ok := codec.ParseFragmentKey(o.Key)
			if !ok || seq != n || isFence(o) {
				return n, nil
			}
			n++
		}
		if len(objs) < page {
			return n, nil
		}
		after = objs[len(objs)-1].Key
	}
}

// isFence tells a fence (or seal) object from data by its size, as
// recovery does.
func isFence(o objstore.ObjectInfo) bool { return o.Size == codec.FixedHeaderSize }
