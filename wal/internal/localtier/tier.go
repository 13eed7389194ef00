package localtier

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"

	"github.com/woodpecker-wal/woodpecker/internal/vfs"
)

// Identity says whose records a tier holds.
type Identity struct {
	// LogID, Epoch and Owner name the writer that wrote the newest records
	// (wal.WriterID).
	LogID uint64 `json:"log_id"`
	Epoch uint64 `json:"epoch"`
	Owner uint64 `json:"owner"`
	// TierID is random, chosen when the tier starts afresh; it is in every
	// record, so that records of an earlier tier in the same directory never
	// pass as this one's.
	TierID uint64 `json:"tier_id"`
}

// Options configure a Tier.
type Options struct {
	// FS is the filesystem; nil is the real one.
	FS vfs.FS
	// SegmentSize is the size segments are zero-filled to; a segment rolls
	// once the next group commit does not fit. Default 16 MiB.
	SegmentSize int64
}

// Recovered is what Open found in the directory.
type Recovered struct {
	// Identity is the tier's identity; zero when the directory held none
	// (a new tier, or one closed cleanly).
	Identity Identity
	// Base is the log's state before Ops; Ops are the operations of the
	// retained segments, in order; State is the state after them.
	Base, State State
	Ops         []Op
	// NextLSN is the LSN the next operation gets.
	NextLSN uint64
	// TornBytes is how many bytes were cut from the last segment's tail: a
	// group commit that was written but never acknowledged.
	TornBytes int64
}

type segInfo struct {
	id     uint64
	endLSN uint64 // the LSN after the segment's last op
}

// Tier is an open local tier. Write is called by one goroutine at a time;
// Retire may be called concurrently with it.
type Tier struct {
	fs   vfs.FS
	dir  string
	size int64
	lock io.Closer

	ident   Identity
	state   State  // after the last written op
	nextLSN uint64 // of the next op

	cur    vfs.File // the segment being written; nil before Reset/Resume
	curOff int64
	err    error // sticky: a failed write or fsync is never retried

	// spareMu serializes what moves the spare file: a roll taking it, a
	// retirement recycling a segment into it, its zero-filling. Lock order:
	// spareMu, then mu.
	spareMu sync.Mutex

	mu         sync.Mutex
	segs       []segInfo // retained segments, oldest first; the last one is cur
	spareReady bool      // "spare" exists, synced, ready to become the next segment
	spareBusy  bool      // a goroutine is preparing it
	spareDone  chan struct{}
	closed     bool
}

const (
	lockName     = "LOCK"
	identityName = "IDENTITY"
	spareName    = "spare"
	segSuffix    = ".seg"
)

func segName(id uint64) string { return fmt.Sprintf("%020d%s", id, segSuffix) }

// Open opens the tier in dir, creating the directory if needed, takes its
// lock (failing at once, naming the directory, if another process or
// writer has it) and replays its segments.
func Open(dir string, opts Options) (*Tier, *Recovered, error) {
	if opts.FS == nil {
		opts.FS = vfs.OS
	}
	if opts.SegmentSize <= 0 {
		opts.SegmentSize = 16 << 20
	}
	fsys := opts.FS
	if err := fsys.MkdirAll(dir, 0o755); err != nil {
		return nil, nil, fmt.Errorf("localtier: create %s: %w", dir, err)
	}
	// The directory and its ancestors may have just been created: make
	// every entry on the path durable (a power cut must not take the tier).
	for d := filepath.Clean(dir); ; d = filepath.Dir(d) {
		if err := fsys.SyncDir(d); err != nil {
			return nil, nil, fmt.Errorf("localtier: sync %s: %w", d, err)
		}
		if filepath.Dir(d) == d {
			break
		}
	}
	lk, err := fsys.Lock(filepath.Join(dir, lockName))
	if err != nil {
		if errors.Is(err, vfs.ErrLocked) {
			return nil, nil, fmt.Errorf("localtier: %s is in use by another writer (one writer per local directory and log): %w", dir, err)
		}
		return nil, nil, fmt.Errorf("localtier: lock %s: %w", dir, err)
	}
	t := &Tier{fs: fsys, dir: dir, size: opts.SegmentSize, lock: lk}
	rec, err := t.replay()
	if err != nil {
		lk.Close()
		return nil, nil, err
	}
	return t, rec, nil
}

func (t *Tier) path(name string) string { return filepath.Join(t.dir, name) }

func (t *Tier) replay() (*Recovered, error) {
	rec := &Recovered{NextLSN: 1}
	b, err := readFile(t.fs, t.path(identityName))
	switch {
	case errors.Is(err, fs.ErrNotExist):
	case err != nil:
		return nil, fmt.Errorf("localtier: read %s: %w", t.path(identityName), err)
	default:
		if err := json.Unmarshal(b, &rec.Identity); err != nil {
			return nil, fmt.Errorf("%w: %s: %v", ErrCorrupt, t.path(identityName), err)
		}
	}
	names, err := t.fs.ReadDir(t.dir)
	if err != nil {
		return nil, fmt.Errorf("localtier: list %s: %w", t.dir, err)
	}
	var ids []uint64
	for _, n := range names {
		switch {
		case strings.HasSuffix(n, ".tmp"):
			_ = t.fs.Remove(t.path(n))
		case n == spareName:
			t.spareReady = false // its content may not be durable: prepare a new one
			_ = t.fs.Remove(t.path(n))
		case strings.HasSuffix(n, segSuffix):
			id, err := strconv.ParseUint(strings.TrimSuffix(n, segSuffix), 10, 64)
			if err != nil {
				return nil, fmt.Errorf("%w: unexpected file %s", ErrCorrupt, t.path(n))
			}
			ids = append(ids, id)
		}
	}
	if rec.Identity.LogID == 0 {
		// No writer's identity: a new tier (perhaps with its TierID chosen,
		// by Prepare), or one whose clean close was cut short after
		// removing the identity. Its segments hold nothing pending.
		for _, id := range ids {
			_ = t.fs.Remove(t.path(segName(id)))
		}
		return rec, nil
	}
	for k, id := range ids {
		last := k == len(ids)-1
		data, err := readFile(t.fs, t.path(segName(id)))
		if err != nil {
			return nil, fmt.Errorf("localtier: read segment %s: %w", t.path(segName(id)), err)
		}
		h, _, base, n, ok := decodeRecord(data, id, rec.Identity.TierID, 0)
		if !ok || h.kind != kindBase {
			if k == 0 || last {
				// A segment created but never written (a crash right after
				// it was created): nothing in it was acknowledged.
				if err := t.fs.Remove(t.path(segName(id))); err != nil {
					return nil, fmt.Errorf("localtier: remove unwritten segment: %w", err)
				}
				continue
			}
			return nil, fmt.Errorf("%w: segment %s has no base record", ErrCorrupt, t.path(segName(id)))
		}
		if len(t.segs) == 0 {
			rec.Base, rec.State, rec.NextLSN = base, base, h.lsn
		} else if h.lsn != rec.NextLSN || base != rec.State {
			return nil, fmt.Errorf("%w: segment %s starts at LSN %d in state %+v; the one before ended before LSN %d in state %+v",
				ErrCorrupt, t.path(segName(id)), h.lsn, base, rec.NextLSN, rec.State)
		}
		off, lsn := n, h.lsn // the base record carries the LSN of the segment's first op
		for {
			h, op, _, n, ok := decodeRecord(data[off:], id, rec.Identity.TierID, lsn)
			if !ok || h.kind == kindBase {
				break
			}
			rec.Ops = append(rec.Ops, op)
			rec.State = rec.State.Apply(op)
			off += n
			lsn++
		}
		if last {
			rec.TornBytes = tornBytes(data[off:])
		}
		rec.NextLSN = lsn
		t.mu.Lock()
		t.segs = append(t.segs, segInfo{id: id, endLSN: lsn})
		t.mu.Unlock()
	}
	if len(t.segs) == 0 {
		// A writer's identity but no record: the crash came before its
		// first segment was durable, so nothing was acknowledged. Keep the
		// tier id (the log's record may name it), forget the writer.
		rec.Identity = Identity{TierID: rec.Identity.TierID}
		rec.Base, rec.State, rec.Ops, rec.NextLSN = State{}, State{}, nil, 1
	}
	t.ident, t.state, t.nextLSN = rec.Identity, rec.State, rec.NextLSN
	return rec, nil
}

// tornBytes measures, for the log, the non-zero bytes right after the last
// valid record (up to 1 MiB): the torn write of an unacknowledged commit
// (zero-filled space reads as none; a recycled segment's stale records
// count too, so it is a measure, not a promise).
func tornBytes(b []byte) int64 {
	n := 0
	for n < len(b) && n < 1<<20 && b[n] != 0 {
		n++
	}
	return int64(n)
}

func readFile(fsys vfs.FS, name string) ([]byte, error) {
	f, err := fsys.OpenFile(name, os.O_RDONLY, 0)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return io.ReadAll(f)
}

// Prepare discards every segment and records tierID as the tier's id
// before its writer takes the log: a crash before the first record then
// leaves a tier whose id the log's record names, so the next open on this
// directory does not take its own empty tier for a lost one.
func (t *Tier) Prepare(tierID uint64) error {
	if err := t.dropAll(); err != nil {
		return err
	}
	if err := t.writeIdentity(Identity{TierID: tierID}); err != nil {
		return t.fail(err)
	}
	t.ident = Identity{TierID: tierID}
	return nil
}

func (t *Tier) dropAll() error {
	if err := t.closeCur(); err != nil {
		return err
	}
	t.mu.Lock()
	old := t.segs
	t.segs = nil
	t.mu.Unlock()
	for _, s := range old {
		if err := t.fs.Remove(t.path(segName(s.id))); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return t.fail(fmt.Errorf("localtier: remove segment: %w", err))
		}
	}
	if err := t.fs.SyncDir(t.dir); err != nil {
		return t.fail(fmt.Errorf("localtier: sync %s: %w", t.dir, err))
	}
	return nil
}

// Reset discards every segment, then makes id the tier's identity and st
// the log's state, in a new segment: the start of a new tier, or of one
// whose records were found to belong to a writer that was fenced.
func (t *Tier) Reset(id Identity, st State) error {
	if err := t.dropAll(); err != nil {
		return err
	}
	t.nextLSN = 1
	return t.start(id, st, 1)
}

// Resume continues the tier under the identity id (the same TierID, a new
// epoch): a new segment with base state st, the log's state once the
// recovered operations are in the bucket; then the recovered segments go.
func (t *Tier) Resume(id Identity, st State) error {
	t.mu.Lock()
	old := t.segs
	t.segs = nil
	t.mu.Unlock()
	if err := t.start(id, st, t.nextLSN); err != nil {
		return err
	}
	for _, s := range old {
		if err := t.fs.Remove(t.path(segName(s.id))); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return t.fail(fmt.Errorf("localtier: remove segment: %w", err))
		}
		if err := t.fs.SyncDir(t.dir); err != nil {
			return t.fail(fmt.Errorf("localtier: sync %s: %w", t.dir, err))
		}
	}
	return nil
}

// start writes the identity and opens a new segment whose base record,
// with LSN lsn, holds st.
func (t *Tier) start(id Identity, st State, lsn uint64) error {
	if t.err != nil {
		return t.err
	}
	// The segment first, the identity after: a crash between leaves the
	// previous identity (Prepare's tier id alone, or the same tier at an
	// earlier epoch of the same owner), which recovers as such.
	t.ident, t.state, t.nextLSN = id, st, lsn
	var segID uint64 = 1
	t.mu.Lock()
	for _, s := range t.segs {
		segID = max(segID, s.id+1)
	}
	t.mu.Unlock()
	names, err := t.fs.ReadDir(t.dir)
	if err != nil {
		return t.fail(fmt.Errorf("localtier: list %s: %w", t.dir, err))
	}
	for _, n := range names {
		if v, err := strconv.ParseUint(strings.TrimSuffix(n, segSuffix), 10, 64); err == nil && strings.HasSuffix(n, segSuffix) {
			segID = max(segID, v+1)
		}
	}
	if err := t.roll(segID); err != nil {
		return err
	}
	if err := t.writeIdentity(id); err != nil {
		return t.fail(err)
	}
	return nil
}

func (t *Tier) writeIdentity(id Identity) error {
	b, _ := json.Marshal(id)
	tmp := t.path(identityName + ".tmp")
	f, err := t.fs.OpenFile(tmp, os.O_RDWR|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		return fmt.Errorf("localtier: write identity: %w", err)
	}
	_, err = f.Write(b)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = t.fs.Rename(tmp, t.path(identityName))
	}
	if err == nil {
		err = t.fs.SyncDir(t.dir)
	}
	if err != nil {
		return fmt.Errorf("localtier: write identity: %w", err)
	}
	return nil
}

// roll makes segment id the current one and writes its base record (the
// current state) at LSN t.nextLSN. The segment file is the spare when one
// is ready, else a new file; its directory entry is durable before roll
// returns, and so is the base record.
func (t *Tier) roll(id uint64) error {
	if err := t.closeCur(); err != nil {
		return err
	}
	t.waitSpare()
	t.spareMu.Lock()
	t.mu.Lock()
	useSpare := t.spareReady
	t.spareReady = false
	t.mu.Unlock()
	name := t.path(segName(id))
	var err error
	if useSpare {
		err = t.fs.Rename(t.path(spareName), name)
	} else {
		err = t.zeroFile(name)
	}
	t.spareMu.Unlock()
	if err == nil {
		err = t.fs.SyncDir(t.dir)
	}
	if err != nil {
		return t.fail(fmt.Errorf("localtier: create segment %s: %w", name, err))
	}
	f, err := t.fs.OpenFile(name, os.O_RDWR, 0)
	if err != nil {
		return t.fail(fmt.Errorf("localtier: open segment %s: %w", name, err))
	}
	t.cur, t.curOff = f, 0
	t.mu.Lock()
	t.segs = append(t.segs, segInfo{id: id, endLSN: t.nextLSN})
	t.mu.Unlock()
	buf := appendRecord(nil, t.hdr(kindBase, t.nextLSN), Op{Kind: kindBase}, t.state)
	if err := t.writeSync(buf); err != nil {
		return err
	}
	t.mu.Lock()
	only := len(t.segs) == 1
	t.mu.Unlock()
	if only {
		t.prepareSpare() // no uploaded segment will be recycled before this one fills
	}
	return nil
}

func (t *Tier) hdr(k Kind, lsn uint64) recHeader {
	return recHeader{kind: k, seg: t.curID(), tier: t.ident.TierID, epoch: t.ident.Epoch, lsn: lsn}
}

func (t *Tier) curID() uint64 {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.segs[len(t.segs)-1].id
}

func (t *Tier) setEnd() {
	t.mu.Lock()
	t.segs[len(t.segs)-1].endLSN = t.nextLSN
	t.mu.Unlock()
}

// zeroFile creates name as a zero-filled, synced file of the segment size
// (written, not sparse: overwriting written blocks needs no metadata in
// the fdatasync of a group commit).
func (t *Tier) zeroFile(name string) error {
	tmp := name + ".tmp"
	f, err := t.fs.OpenFile(tmp, os.O_RDWR|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		return err
	}
	zero := make([]byte, 1<<20)
	for off := int64(0); off < t.size && err == nil; off += int64(len(zero)) {
		n := min(int64(len(zero)), t.size-off)
		_, err = f.WriteAt(zero[:n], off)
	}
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = t.fs.Rename(tmp, name)
	}
	if err != nil {
		_ = t.fs.Remove(tmp)
	}
	return err
}

// prepareSpare zero-fills the next segment in the background.
func (t *Tier) prepareSpare() {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.spareReady || t.spareBusy || t.closed {
		return
	}
	t.spareBusy = true
	done := make(chan struct{})
	t.spareDone = done
	go func() {
		defer close(done)
		t.spareMu.Lock()
		defer t.spareMu.Unlock()
		err := t.zeroFile(t.path(spareName))
		t.mu.Lock()
		t.spareBusy = false
		t.spareReady = err == nil
		t.mu.Unlock()
	}()
}

// WaitSpare waits for the background preparation of the next segment.
func (t *Tier) WaitSpare() { t.waitSpare() }

func (t *Tier) waitSpare() {
	t.mu.Lock()
	ch := t.spareDone
	t.mu.Unlock()
	if ch != nil {
		<-ch
	}
}

func (t *Tier) writeSync(buf []byte) error {
	if _, err := t.cur.WriteAt(buf, t.curOff); err != nil {
		return t.fail(fmt.Errorf("localtier: write %s: %w", t.cur.Name(), err))
	}
	if err := t.cur.Sync(); err != nil {
		return t.fail(fmt.Errorf("localtier: fdatasync %s: %w", t.cur.Name(), err))
	}
	t.curOff += int64(len(buf))
	return nil
}

// fail makes err sticky: after a failed write or fsync the tier is broken
// for good (Linux may drop the unwritten pages and report success on a
// retried fsync).
func (t *Tier) fail(err error) error {
	if t.err == nil {
		t.err = fmt.Errorf("%w (the local tier is broken: reopen the writer)", err)
	}
	return t.err
}

// Dir returns the tier's directory.
func (t *Tier) Dir() string { return t.dir }

// Err returns the tier's sticky failure.
func (t *Tier) Err() error { return t.err }

// NextLSN returns the LSN the next op must carry.
func (t *Tier) NextLSN() uint64 { return t.nextLSN }

// Identity returns the tier's identity.
func (t *Tier) Identity() Identity { return t.ident }

// Write makes ops durable with one write and one fdatasync (plus, when the
// current segment is full, a roll to a new one). Their LSNs must continue
// the tier's sequence. After a failure every later call fails.
func (t *Tier) Write(ops []Op) error {
	if t.err != nil {
		return t.err
	}
	if t.cur == nil {
		return errors.New("localtier: Write before Reset or Resume")
	}
	size := 0
	for i, op := range ops {
		if op.LSN != t.nextLSN+uint64(i) {
			return fmt.Errorf("localtier: op %d has LSN %d, want %d", i, op.LSN, t.nextLSN+uint64(i))
		}
		if op.Kind == kindBase || op.Kind > KindTruncateFront || op.Kind == 0 {
			return fmt.Errorf("localtier: op %d has kind %v", i, op.Kind)
		}
		size += headerSize + payloadSize(op)
	}
	if t.curOff+int64(size) > t.size && t.curOff > headerSize+17 {
		if err := t.roll(t.curID() + 1); err != nil {
			return err
		}
	}
	buf := make([]byte, 0, size)
	for _, op := range ops {
		buf = appendRecord(buf, t.hdr(op.Kind, op.LSN), op, State{})
	}
	if err := t.writeSync(buf); err != nil {
		return err
	}
	if t.curOff > t.size/2 {
		// The next segment: a retired one recycled by now, or zero-filled
		// in the background from here on.
		t.prepareSpare()
	}
	for _, op := range ops {
		t.state = t.state.Apply(op)
	}
	t.nextLSN += uint64(len(ops))
	t.setEnd()
	return nil
}

// Retire removes the segments, other than the current one, all of whose
// operations have LSN <= upTo (they are in the bucket). The newest removed
// one becomes the spare when none is ready (a recycled segment: its stale
// records carry another segment id).
func (t *Tier) Retire(upTo uint64) error {
	for {
		t.spareMu.Lock()
		t.mu.Lock()
		if t.closed || len(t.segs) < 2 || t.segs[0].endLSN-1 > upTo {
			t.mu.Unlock()
			t.spareMu.Unlock()
			return nil
		}
		s := t.segs[0]
		t.segs = t.segs[1:]
		recycle := !t.spareReady && !t.spareBusy
		if recycle {
			t.spareBusy = true
		}
		t.mu.Unlock()
		var err error
		if recycle {
			err = t.fs.Rename(t.path(segName(s.id)), t.path(spareName))
		} else {
			err = t.fs.Remove(t.path(segName(s.id)))
		}
		if err == nil {
			err = t.fs.SyncDir(t.dir) // removals stay in order: the retained ones are a suffix
		}
		t.mu.Lock()
		if recycle {
			t.spareBusy = false
			t.spareReady = err == nil
		}
		t.mu.Unlock()
		t.spareMu.Unlock()
		if err != nil {
			return fmt.Errorf("localtier: retire segment %d: %w", s.id, err)
		}
	}
}

func (t *Tier) closeCur() error {
	if t.cur == nil {
		return nil
	}
	err := t.cur.Close()
	t.cur = nil
	return err
}

// Discard removes every segment and the identity: after a clean close,
// when everything is in the bucket. The directory then holds no tier.
func (t *Tier) Discard() error {
	if err := t.closeCur(); err != nil {
		return err
	}
	t.waitSpare()
	if err := t.fs.Remove(t.path(identityName)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("localtier: remove identity: %w", err)
	}
	if err := t.fs.SyncDir(t.dir); err != nil {
		return fmt.Errorf("localtier: sync %s: %w", t.dir, err)
	}
	t.mu.Lock()
	segs := t.segs
	t.segs = nil
	t.mu.Unlock()
	for _, s := range segs {
		_ = t.fs.Remove(t.path(segName(s.id)))
	}
	return nil
}

// Close releases the tier's files and its lock.
func (t *Tier) Close() error {
	t.mu.Lock()
	if t.closed {
		t.mu.Unlock()
		return nil
	}
	t.closed = true
	t.mu.Unlock()
	t.waitSpare()
	err := t.closeCur()
	if lerr := t.lock.Close(); err == nil {
		err = lerr
	}
	return err
}
