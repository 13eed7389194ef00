// Package server is the kvstore HTTP API over a node.Engine:
//
//	PUT    /kv/{key}                  body = value        → 200 {"index": N}  (POST works too)
//	GET    /kv/{key}                  local read           → 200 value | 404
//	GET    /kv/{key}?linearizable=true leader read         → 200 value | 404
//	DELETE /kv/{key}                                       → 200 {"index": N, "existed": bool}
//	GET    /kv                        all keys (local)     → 200 {"key": "value", …}
//	POST   /join    {"id": 4, "raft": "host:port", "http": "host:port"}
//	POST   /remove  {"id": 3}
//	GET    /status
//
// Reads are local by default: any node answers from its own state machine,
// which may lag the leader by a few milliseconds (or more while it is cut
// off). linearizable=true reads at the leader after confirming its
// leadership (hashicorp: VerifyLeader, after a Barrier once per term; etcd:
// ReadIndex), so they see every write acknowledged before they started.
//
// Writes, linearizable reads, join and remove go to the leader: another node
// answers 307 Temporary Redirect to the same path at the leader's HTTP
// address (curl -L and Go's http.Client follow it, resending the body), or
// 503 with a JSON error when no leader is known. Errors are JSON:
// {"error": "...", "code": "...", "leader_id": N, "leader_http": "..."}.
// Codes: not_leader and no_leader (nothing was done; retry), unknown_outcome
// (a write that may or may not have been applied: leadership was lost or the
// request timed out), bad_request, not_found, stopped, internal.
package server

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"time"

	"github.com/woodpecker-wal/woodpecker/examples/kvstore/internal/kv"
	"github.com/woodpecker-wal/woodpecker/examples/kvstore/internal/node"
)

// Limits on requests.
const (
	MaxKeyLen   = 1024
	MaxValueLen = 1 << 20
)

// Server serves the API of one node.
type Server struct {
	e       node.Engine
	lg      *slog.Logger
	timeout time.Duration
	mux     *http.ServeMux
}

// New returns the API handler over e; timeout bounds each request that
// goes through Raft.
func New(e node.Engine, timeout time.Duration, lg *slog.Logger) *Server {
	s := &Server{e: e, lg: lg, timeout: timeout, mux: http.NewServeMux()}
	s.mux.HandleFunc("PUT /kv/{key...}", s.put)
	s.mux.HandleFunc("POST /kv/{key...}", s.put)
	s.mux.HandleFunc("GET /kv/{key...}", s.get)
	s.mux.HandleFunc("DELETE /kv/{key...}", s.del)
	s.mux.HandleFunc("GET /kv", s.dump)
	s.mux.HandleFunc("POST /join", s.join)
	s.mux.HandleFunc("POST /remove", s.remove)
	s.mux.HandleFunc("GET /status", s.status)
	return s
}

func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) { s.mux.ServeHTTP(w, r) }

type errorBody struct {
	Error      string `json:"error"`
	Code       string `json:"code"`
	LeaderID   uint64 `json:"leader_id,omitempty"`
	LeaderHTTP string `json:"leader_http,omitempty"`
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.Encode(v)
}

func badRequest(w http.ResponseWriter, msg string) {
	writeJSON(w, http.StatusBadRequest, errorBody{Error: msg, Code: "bad_request"})
}

// fail answers err: a redirect to the leader, or a JSON error.
func (s *Server) fail(w http.ResponseWriter, r *http.Request, err error) {
	var nl *node.NotLeaderError
	switch {
	case errors.As(err, &nl) && nl.LeaderHTTP != "":
		w.Header().Set("X-Kvstore-Leader", strconv.FormatUint(nl.LeaderID, 10))
		http.Redirect(w, r, "http://"+nl.LeaderHTTP+r.URL.RequestURI(), http.StatusTemporaryRedirect)
	case errors.As(err, &nl):
		code := "no_leader"
		if nl.LeaderID != 0 {
			code = "not_leader"
		}
		w.Header().Set("Retry-After", "1")
		writeJSON(w, http.StatusServiceUnavailable, errorBody{Error: err.Error(), Code: code, LeaderID: nl.LeaderID})
	case errors.Is(err, node.ErrUnknownOutcome):
		writeJSON(w, http.StatusServiceUnavailable, errorBody{Error: err.Error(), Code: "unknown_outcome"})
	case errors.Is(err, node.ErrStopped):
		writeJSON(w, http.StatusServiceUnavailable, errorBody{Error: err.Error(), Code: "stopped"})
	case errors.Is(err, context.DeadlineExceeded):
		writeJSON(w, http.StatusServiceUnavailable, errorBody{Error: err.Error(), Code: "timeout"})
	default:
		s.lg.Warn("request failed", "method", r.Method, "path", r.URL.Path, "err", err)
		writeJSON(w, http.StatusInternalServerError, errorBody{Error: err.Error(), Code: "internal"})
	}
}

func (s *Server) key(w http.ResponseWriter, r *http.Request) (string, bool) {
	k := r.PathValue("key")
	switch {
	case k == "":
		badRequest(w, "empty key: use /kv/<key>")
		return "", false
	case len(k) > MaxKeyLen:
		badRequest(w, "key longer than "+strconv.Itoa(MaxKeyLen)+" bytes")
		return "", false
	}
	return k, true
}

func (s *Server) ctx(r *http.Request) (context.Context, context.CancelFunc) {
	return context.WithTimeout(r.Context(), s.timeout)
}

func (s *Server) put(w http.ResponseWriter, r *http.Request) {
	k, ok := s.key(w, r)
	if !ok {
		return
	}
	v, err := io.ReadAll(io.LimitReader(r.Body, MaxValueLen+1))
	if err != nil {
		badRequest(w, "read body: "+err.Error())
		return
	}
	if len(v) > MaxValueLen {
		badRequest(w, "value longer than 1 MiB")
		return
	}
	s.propose(w, r, kv.Command{Op: kv.OpPut, Key: k, Value: string(v)})
}

func (s *Server) del(w http.ResponseWriter, r *http.Request) {
	k, ok := s.key(w, r)
	if !ok {
		return
	}
	s.propose(w, r, kv.Command{Op: kv.OpDelete, Key: k})
}

// propose replicates c and answers its result.
func (s *Server) propose(w http.ResponseWriter, r *http.Request, c kv.Command) {
	ctx, cancel := s.ctx(r)
	defer cancel()
	res, err := s.e.Propose(ctx, c)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, res)
}

func (s *Server) get(w http.ResponseWriter, r *http.Request) {
	k, ok := s.key(w, r)
	if !ok {
		return
	}
	lin, err := parseBool(r.URL.Query().Get("linearizable"))
	if err != nil {
		badRequest(w, "linearizable: "+err.Error())
		return
	}
	if lin {
		ctx, cancel := s.ctx(r)
		defer cancel()
		if err := s.e.LinearizableRead(ctx); err != nil {
			s.fail(w, r, err)
			return
		}
	}
	v, found := s.e.State().Get(k)
	w.Header().Set("X-Kvstore-Applied", strconv.FormatUint(s.e.State().Applied(), 10))
	if !found {
		writeJSON(w, http.StatusNotFound, errorBody{Error: "key " + strconv.Quote(k) + " not found", Code: "not_found"})
		return
	}
	w.Header().Set("Content-Type", "application/octet-stream")
	io.WriteString(w, v)
}

func parseBool(s string) (bool, error) {
	if s == "" {
		return false, nil
	}
	return strconv.ParseBool(s)
}

func (s *Server) dump(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, s.e.State().Dump())
}

type joinBody struct {
	ID   uint64 `json:"id"`
	Raft string `json:"raft"`
	HTTP string `json:"http"`
}

func (s *Server) join(w http.ResponseWriter, r *http.Request) {
	var b joinBody
	if err := json.NewDecoder(io.LimitReader(r.Body, 1<<16)).Decode(&b); err != nil {
		badRequest(w, `want {"id": N, "raft": "host:port", "http": "host:port"}: `+err.Error())
		return
	}
	if b.ID == 0 || b.Raft == "" {
		badRequest(w, `want {"id": N, "raft": "host:port", "http": "host:port"} with id >= 1 and a raft address`)
		return
	}
	ctx, cancel := s.ctx(r)
	defer cancel()
	if err := s.e.AddMember(ctx, kv.Member{ID: b.ID, Raft: b.Raft, HTTP: b.HTTP}); err != nil {
		s.fail(w, r, err)
		return
	}
	s.lg.Info("member joined", "id", b.ID, "raft", b.Raft, "http", b.HTTP)
	writeJSON(w, http.StatusOK, s.e.Status())
}

func (s *Server) remove(w http.ResponseWriter, r *http.Request) {
	var b joinBody
	if q := r.URL.Query().Get("id"); q != "" {
		id, err := strconv.ParseUint(q, 10, 64)
		if err != nil {
			badRequest(w, "id: "+err.Error())
			return
		}
		b.ID = id
	} else if err := json.NewDecoder(io.LimitReader(r.Body, 1<<16)).Decode(&b); err != nil {
		badRequest(w, `want {"id": N} or ?id=N: `+err.Error())
		return
	}
	if b.ID == 0 {
		badRequest(w, "id must be at least 1")
		return
	}
	ctx, cancel := s.ctx(r)
	defer cancel()
	if err := s.e.RemoveMember(ctx, b.ID); err != nil {
		s.fail(w, r, err)
		return
	}
	s.lg.Info("member removed", "id", b.ID)
	writeJSON(w, http.StatusOK, s.e.Status())
}

func (s *Server) status(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, s.e.Status())
}
