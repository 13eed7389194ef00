package node

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"sync"
	"time"

	"go.etcd.io/raft/v3/raftpb"
	"google.golang.org/protobuf/proto"

	"github.com/woodpecker-wal/woodpecker/internal/retry"
)

// transport carries etcd raft messages between nodes over HTTP: each peer
// has a queue drained by one goroutine that POSTs batches of messages to
// http://<peer raft address>/raft/messages, in order. Raft tolerates lost
// messages, so a full queue drops and a failed POST reports the peer
// unreachable (and a snapshot in it failed) instead of retrying.
//
// Body: repeated [uvarint length][protobuf raftpb.Message]. Headers name the
// sender's ID and Raft address, so a node learns the address of a peer that
// contacts it (a new member learns the leader's this way).
type transport struct {
	id   uint64
	addr string // advertised Raft address
	lg   *slog.Logger
	ln   net.Listener
	srv  *http.Server
	cli  *http.Client

	deliver func(ctx context.Context, m *raftpb.Message) // hands an incoming message to the raft loop
	report  func(r peerReport)                           // unreachable peers, snapshot outcomes

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu    sync.Mutex
	peers map[uint64]*peer // guarded by mu
}

// peerReport tells the raft loop what happened to messages sent to a peer.
type peerReport struct {
	id          uint64
	unreachable bool
	snapshot    bool // a MsgSnap was in the batch
	snapshotOK  bool
}

type peer struct {
	id   uint64
	mu   sync.Mutex
	addr string // guarded by mu
	q    chan *raftpb.Message
}

const (
	hdrFrom     = "X-Kvstore-Raft-From"
	hdrFromAddr = "X-Kvstore-Raft-Addr"
	msgPath     = "/raft/messages"
	queueLen    = 4096
	maxBatch    = 256
)

func newTransport(id uint64, addr string, lg *slog.Logger) (*transport, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("raft transport: listen on %s: %w", addr, err)
	}
	t := &transport{id: id, addr: ln.Addr().String(), lg: lg, ln: ln, peers: map[uint64]*peer{}}
	t.ctx, t.cancel = context.WithCancel(context.Background())
	t.cli = &http.Client{
		Timeout: 10 * time.Second,
		Transport: &http.Transport{
			DialContext:         (&net.Dialer{Timeout: time.Second}).DialContext,
			MaxIdleConnsPerHost: 4,
			IdleConnTimeout:     time.Minute,
		},
	}
	mux := http.NewServeMux()
	mux.HandleFunc("POST "+msgPath, t.handle)
	t.srv = &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	return t, nil
}

// serve starts accepting messages; deliver and report must be set.
func (t *transport) serve() {
	t.wg.Add(1)
	go func() {
		defer t.wg.Done()
		if err := t.srv.Serve(t.ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			t.lg.Error("raft transport stopped", "err", err)
		}
	}()
}

// setPeer records (or updates) the address of peer id.
func (t *transport) setPeer(id uint64, addr string) {
	if id == t.id || addr == "" {
		return
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if p, ok := t.peers[id]; ok {
		p.mu.Lock()
		if p.addr != addr {
			t.lg.Info("peer address", "peer", id, "raft", addr)
		}
		p.addr = addr
		p.mu.Unlock()
		return
	}
	p := &peer{id: id, addr: addr, q: make(chan *raftpb.Message, queueLen)}
	t.peers[id] = p
	t.wg.Add(1)
	go t.run(p)
}

// removePeer stops sending to id.
func (t *transport) removePeer(id uint64) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if p, ok := t.peers[id]; ok {
		close(p.q)
		delete(t.peers, id)
	}
}

// send queues m for its recipient without blocking.
func (t *transport) send(m *raftpb.Message) {
	t.mu.Lock()
	p := t.peers[m.GetTo()]
	if p == nil {
		t.mu.Unlock()
		t.report(peerReport{id: m.GetTo(), unreachable: true, snapshot: m.GetType() == raftpb.MessageType_MsgSnap})
		return
	}
	select {
	case p.q <- m:
		t.mu.Unlock()
	default:
		t.mu.Unlock()
		t.report(peerReport{id: m.GetTo(), unreachable: true, snapshot: m.GetType() == raftpb.MessageType_MsgSnap})
	}
}

func (t *transport) run(p *peer) {
	defer t.wg.Done()
	var buf bytes.Buffer
	failures := 0
	for m := range p.q {
		batch := []*raftpb.Message{m}
	drain:
		for len(batch) < maxBatch {
			select {
			case m2, ok := <-p.q:
				if !ok {
					break drain
				}
				batch = append(batch, m2)
			default:
				break drain
			}
		}
		hasSnap := false
		buf.Reset()
		var lenBuf [binary.MaxVarintLen64]byte
		for _, m := range batch {
			b, err := proto.Marshal(m)
			if err != nil {
				t.lg.Error("marshal raft message", "err", err)
				continue
			}
			buf.Write(lenBuf[:binary.PutUvarint(lenBuf[:], uint64(len(b)))])
			buf.Write(b)
			hasSnap = hasSnap || m.GetType() == raftpb.MessageType_MsgSnap
		}
		p.mu.Lock()
		addr := p.addr
		p.mu.Unlock()
		err := t.post(addr, buf.Bytes())
		if err != nil {
			failures++
			if failures == 1 || failures%100 == 0 {
				t.lg.Debug("send to peer failed", "peer", p.id, "raft", addr, "err", err, "failures", failures)
			}
			t.report(peerReport{id: p.id, unreachable: true, snapshot: hasSnap})
			// Do not spin against a dead peer: raft resends after the
			// unreachable report anyway.
			if retry.Sleep(t.ctx, 50*time.Millisecond) != nil {
				return
			}
			continue
		}
		failures = 0
		if hasSnap {
			t.report(peerReport{id: p.id, snapshot: true, snapshotOK: true})
		}
	}
}

func (t *transport) post(addr string, body []byte) error {
	req, err := http.NewRequestWithContext(t.ctx, http.MethodPost, "http://"+addr+msgPath, bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set(hdrFrom, strconv.FormatUint(t.id, 10))
	req.Header.Set(hdrFromAddr, t.addr)
	req.Header.Set("Content-Type", "application/octet-stream")
	resp, err := t.cli.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	io.Copy(io.Discard, resp.Body)
	if resp.StatusCode != http.StatusNoContent {
		return fmt.Errorf("peer answered %s", resp.Status)
	}
	return nil
}

func (t *transport) handle(w http.ResponseWriter, r *http.Request) {
	from, err := strconv.ParseUint(r.Header.Get(hdrFrom), 10, 64)
	if err != nil || from == 0 {
		http.Error(w, "missing "+hdrFrom, http.StatusBadRequest)
		return
	}
	if addr := r.Header.Get(hdrFromAddr); addr != "" {
		t.setPeer(from, addr)
	}
	br := bufio.NewReader(r.Body)
	for {
		n, err := binary.ReadUvarint(br)
		if err == io.EOF {
			break
		}
		if err != nil || n > 512<<20 {
			http.Error(w, "bad message framing", http.StatusBadRequest)
			return
		}
		b := make([]byte, n)
		if _, err := io.ReadFull(br, b); err != nil {
			http.Error(w, "short message", http.StatusBadRequest)
			return
		}
		m := &raftpb.Message{}
		if err := proto.Unmarshal(b, m); err != nil {
			http.Error(w, "bad message: "+err.Error(), http.StatusBadRequest)
			return
		}
		if m.GetTo() != t.id {
			http.Error(w, fmt.Sprintf("message for node %d reached node %d", m.GetTo(), t.id), http.StatusMisdirectedRequest)
			return
		}
		t.deliver(r.Context(), m)
	}
	w.WriteHeader(http.StatusNoContent)
}

// close stops the server and every peer goroutine.
func (t *transport) close() error {
	t.cancel()
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	err := t.srv.Shutdown(ctx)
	if err != nil {
		t.srv.Close()
	}
	t.mu.Lock()
	for id, p := range t.peers {
		close(p.q)
		delete(t.peers, id)
	}
	t.mu.Unlock()
	t.wg.Wait()
	t.cli.CloseIdleConnections()
	return nil
}
