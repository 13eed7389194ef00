package etcd_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"

	"github.com/woodpecker-wal/woodpecker/conformance"
	"github.com/woodpecker-wal/woodpecker/conformance/metasuite"
	"github.com/woodpecker-wal/woodpecker/internal/testserver/etcdserver"
	"github.com/woodpecker-wal/woodpecker/meta"
	etcdmeta "github.com/woodpecker-wal/woodpecker/meta/etcd"
)

// etcdSecret is a password that must never show up in an error.
const etcdSecret = "hunter2-Zq9x"

func etcdCtx(t testing.TB) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func etcdOpen(t testing.TB, cfg etcdmeta.Config) *etcdmeta.Store {
	t.Helper()
	s, err := etcdmeta.New(etcdCtx(t), cfg)
	require.NoError(t, err)
	t.Cleanup(func() { _ = s.Close() })
	return s
}

func etcdRandomPrefix() string { return "t_" + strings.ToLower(rand.Text()) }

func TestEtcdConfigFromURL(t *testing.T) {
	good := []struct {
		url  string
		want etcdmeta.Config
		tls  bool // want a non-nil TLS
	}{
		{url: "etcd://127.0.0.1:2379/woodpecker",
			want: etcdmeta.Config{Endpoints: []string{"127.0.0.1:2379"}, Prefix: "woodpecker"}},
		// url.Parse only checks the text after the last ':' as a port, so
		// a host without a port can only come before the first ported one,
		// and an IPv6 literal can only be alone.
		{url: "etcd://h3,h1:1,h2:2/a/b/",
			want: etcdmeta.Config{Endpoints: []string{"h3:2379", "h1:1", "h2:2"}, Prefix: "a/b"}},
		{url: "etcd://[::1]:2380/p",
			want: etcdmeta.Config{Endpoints: []string{"[::1]:2380"}, Prefix: "p"}},
		{url: "etcd://[fe80::1]/p",
			want: etcdmeta.Config{Endpoints: []string{"[fe80::1]:2379"}, Prefix: "p"}},
		{url: "etcd://h:1//leading",
			want: etcdmeta.Config{Endpoints: []string{"h:1"}, Prefix: "/leading"}},
		{url: "etcd://u:" + etcdSecret + "@h:1/p",
			want: etcdmeta.Config{Endpoints: []string{"h:1"}, Prefix: "p", Username: "u", Password: etcdSecret}},
		{url: "etcd://u:p%40ss%2Fw@h:1/p",
			want: etcdmeta.Config{Endpoints: []string{"h:1"}, Prefix: "p", Username: "u", Password: "p@ss/w"}},
		{url: "etcd://h:1/p?user=u&password=" + etcdSecret,
			want: etcdmeta.Config{Endpoints: []string{"h:1"}, Prefix: "p", Username: "u", Password: etcdSecret}},
		{url: "etcd://h:1/p?dial_timeout=250ms&timeout=3s",
			want: etcdmeta.Config{Endpoints: []string{"h:1"}, Prefix: "p", DialTimeout: 250 * time.Millisecond, RequestTimeout: 3 * time.Second}},
		{url: "etcd://h:1/p?tls=true", tls: true,
			want: etcdmeta.Config{Endpoints: []string{"h:1"}, Prefix: "p"}},
		{url: "etcds://h:1/p", tls: true,
			want: etcdmeta.Config{Endpoints: []string{"h:1"}, Prefix: "p"}},
		{url: "etcds://h:1/p?tls=1", tls: true,
			want: etcdmeta.Config{Endpoints: []string{"h:1"}, Prefix: "p"}},
		{url: "etcd://h:1/p?tls=false",
			want: etcdmeta.Config{Endpoints: []string{"h:1"}, Prefix: "p"}},
		{url: "etcd://h:1/p?ca_file=/x/ca.pem&cert_file=/x/c.pem&key_file=/x/k.pem",
			want: etcdmeta.Config{Endpoints: []string{"h:1"}, Prefix: "p", CAFile: "/x/ca.pem", CertFile: "/x/c.pem", KeyFile: "/x/k.pem"}},
		{url: "etcds://h:1/p?ca_file=/x/ca.pem",
			want: etcdmeta.Config{Endpoints: []string{"h:1"}, Prefix: "p", CAFile: "/x/ca.pem"}},
	}
	for _, tc := range good {
		t.Run("good/"+strings.ReplaceAll(tc.url, etcdSecret, "SECRET"), func(t *testing.T) {
			u, err := url.Parse(tc.url)
			require.NoError(t, err)
			got, err := etcdmeta.ConfigFromURL(u)
			require.NoError(t, err)
			assert.Equal(t, tc.tls, got.TLS != nil, "TLS")
			got.TLS = nil
			assert.Equal(t, tc.want, got)
		})
	}

	bad := []struct{ url, want string }{
		{"http://h:1/p", `scheme "http"`},
		{"etcd:///p", "empty host list"},
		{"etcd://h:1", "missing prefix"},
		{"etcd://h:1/", "missing prefix"},
		{"etcd://h:1,,h:2/p", "empty host"},
		{"etcd://h:0/p", `port "0"`},
		{"etcd://h:99999/p", `port "99999"`},
		{"etcd://h:x,h:2/p", `port "x"`},
		{"etcd://:1/p", "empty host"},
		{"etcd://h:1/P", "Prefix"},
		{"etcd://h:1/a//b", "Prefix"},
		{"etcd://h:1/a/../b", "Prefix"},
		{"etcd://h:1/p?bogus=1", `unknown parameter "bogus"`},
		{"etcd://h:1/p?tls=maybe", `tls="maybe"`},
		{"etcds://h:1/p?tls=false", "contradicts"},
		{"etcd://h:1/p?tls=false&ca_file=/x", "tls=false"},
		{"etcd://h:1/p?timeout=-1s", "timeout"},
		{"etcd://h:1/p?dial_timeout=soon", "dial_timeout"},
		{"etcd://h:1/p?tls=true&tls=true", `"tls" given 2 times`},
		{"etcd://h:1/p?cert_file=/c", "KeyFile"},
		{"etcd://h:1/p#frag", "fragment"},
		{"etcd://u:pw@h:1/p?password=ab#" + etcdSecret, "fragment"}, // a password holding an unescaped #
		{"etcd://u@h:1/p", "Username \"u\" set without Password"},
		{"etcd://:" + etcdSecret + "@h:1/p", "userinfo without a user name"},
		{"etcd://h:1/p?password=" + etcdSecret, "Password set without Username"},
		{"etcd://u:" + etcdSecret + "@h:1/p?user=v", "user given both"},
		{"etcd://u:" + etcdSecret + "@h:1/p?password=" + etcdSecret, "password given both"},
		{"etcd://u:" + etcdSecret + "@h:1/p?password=" + etcdSecret + "&password=" + etcdSecret, `"password" given 2 times`},
		{"etcd://u:" + etcdSecret + "@h:1/p?bogus=" + etcdSecret, `unknown parameter "bogus"`},
		{"etcd://u:" + etcdSecret + "@h:1/p?password=%zz" + etcdSecret, "malformed query"},
		{"etcd://u:" + etcdSecret + "@h:1", "missing prefix"},
	}
	for _, tc := range bad {
		t.Run("bad/"+strings.ReplaceAll(tc.url, etcdSecret, "SECRET"), func(t *testing.T) {
			u, err := url.Parse(tc.url)
			require.NoError(t, err)
			_, err = etcdmeta.ConfigFromURL(u)
			require.Error(t, err)
			assert.Contains(t, err.Error(), tc.want)
			assert.NotContains(t, err.Error(), etcdSecret, "the password leaked into the error")
		})
	}

	_, err := etcdmeta.ConfigFromURL(nil)
	assert.Error(t, err)
}

func TestEtcdConfigValidate(t *testing.T) {
	base := etcdmeta.Config{Endpoints: []string{"127.0.0.1:1"}, Prefix: "p"}
	for _, tc := range []struct {
		name string
		edit func(*etcdmeta.Config)
		want string
	}{
		{"no endpoints", func(c *etcdmeta.Config) { c.Endpoints = nil }, "Endpoints: empty"},
		{"empty endpoint", func(c *etcdmeta.Config) { c.Endpoints = []string{""} }, "Endpoints[0]: empty"},
		{"no port", func(c *etcdmeta.Config) { c.Endpoints = []string{"h"} }, `Endpoints[0]: "h"`},
		{"bad port", func(c *etcdmeta.Config) { c.Endpoints = []string{"h:1", "h:70000"} }, `Endpoints[1]: "h:70000": port "70000"`},
		{"bad scheme", func(c *etcdmeta.Config) { c.Endpoints = []string{"ftp://h:1"} }, `scheme "ftp"`},
		{"creds in endpoint", func(c *etcdmeta.Config) { c.Endpoints = []string{"http://u:" + etcdSecret + "@h:1"} }, "credentials in an endpoint"},
		{"http with TLS", func(c *etcdmeta.Config) { c.Endpoints = []string{"http://h:1"}; c.CAFile = "/ca" }, "TLS is configured"},
		{"bad prefix", func(c *etcdmeta.Config) { c.Prefix = "a/" }, `Prefix: "a/"`},
		{"user without password", func(c *etcdmeta.Config) { c.Username = "u" }, "without Password"},
		{"password without user", func(c *etcdmeta.Config) { c.Password = etcdSecret }, "Password set without Username"},
		{"cert without key", func(c *etcdmeta.Config) { c.CertFile = "/c" }, "set both or neither"},
		{"negative dial timeout", func(c *etcdmeta.Config) { c.DialTimeout = -time.Second }, "DialTimeout -1s"},
		{"negative request timeout", func(c *etcdmeta.Config) { c.RequestTimeout = -time.Second }, "RequestTimeout -1s"},
		{"missing CA file", func(c *etcdmeta.Config) { c.CAFile = "/nonexistent/ca.pem" }, "CAFile"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := base
			tc.edit(&cfg)
			_, err := etcdmeta.New(context.Background(), cfg)
			require.Error(t, err)
			assert.Contains(t, err.Error(), tc.want)
			assert.NotContains(t, err.Error(), etcdSecret)
		})
	}

	s := etcdmeta.Config{Endpoints: []string{"h:1"}, Username: "u", Password: etcdSecret}.String()
	assert.NotContains(t, s, etcdSecret)
	assert.Contains(t, s, `Username:"u"`)
	assert.NotContains(t, fmt.Sprintf("%v %+v", base, etcdmeta.Config{Password: etcdSecret}), etcdSecret)
}

func TestEtcdNewFromClientPrefix(t *testing.T) {
	_, err := etcdmeta.NewFromClient(nil, "p")
	assert.Error(t, err)
}

// An unreachable endpoint fails within DialTimeout, with the endpoint and
// the cause in the error.
func TestEtcdUnreachable(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := l.Addr().String()
	require.NoError(t, l.Close())

	for _, creds := range []bool{false, true} {
		t.Run(fmt.Sprintf("creds=%t", creds), func(t *testing.T) {
			cfg := etcdmeta.Config{Endpoints: []string{addr}, Prefix: "p", DialTimeout: 300 * time.Millisecond}
			if creds {
				cfg.Username, cfg.Password = "root", etcdSecret
			}
			start := time.Now()
			s, err := etcdmeta.New(context.Background(), cfg)
			elapsed := time.Since(start)
			if s != nil {
				_ = s.Close()
			}
			require.Error(t, err)
			t.Logf("after %v: %v", elapsed, err)
			assert.Less(t, elapsed, 5*time.Second)
			assert.ErrorIs(t, err, context.DeadlineExceeded)
			assert.Contains(t, err.Error(), addr)
			assert.NotContains(t, err.Error(), etcdSecret)
		})
	}
}

func TestEtcdAuth(t *testing.T) {
	srv := etcdserver.Start(t)
	srv.EnableAuth(t, "root", etcdSecret)

	cfg := srv.Config("p")
	s := etcdOpen(t, cfg)
	ctx := etcdCtx(t)
	_, err := s.Create(ctx, "k", []byte("v"))
	require.NoError(t, err)

	// A URL with the credentials works too.
	u, err := url.Parse(srv.URL("p"))
	require.NoError(t, err)
	ucfg, err := etcdmeta.ConfigFromURL(u)
	require.NoError(t, err)
	s2 := etcdOpen(t, ucfg)
	rec, err := s2.Get(ctx, "k")
	require.NoError(t, err)
	assert.Equal(t, "v", string(rec.Value))

	wrong := cfg
	wrong.Password = "wrong-" + etcdSecret
	_, err = etcdmeta.New(ctx, wrong)
	require.Error(t, err)
	t.Logf("wrong password: %v", err)
	assert.ErrorIs(t, err, rpctypes.ErrAuthFailed)
	assert.Contains(t, err.Error(), `user "root"`)
	assert.NotContains(t, err.Error(), etcdSecret)

	none := cfg
	none.Username, none.Password = "", ""
	_, err = etcdmeta.New(ctx, none)
	require.Error(t, err)
	t.Logf("no credentials: %v", err)
	assert.ErrorIs(t, err, rpctypes.ErrUserEmpty)
}

func TestEtcdCAS(t *testing.T) {
	srv := etcdserver.Start(t)
	s := etcdOpen(t, srv.Config("cas"))
	ctx := etcdCtx(t)

	v1, err := s.Create(ctx, "a/k", []byte("one"))
	require.NoError(t, err)
	_, err = s.Create(ctx, "a/k", []byte("again"))
	require.ErrorIs(t, err, meta.ErrExists)

	rec, err := s.Get(ctx, "a/k")
	require.NoError(t, err)
	assert.Equal(t, meta.Record{Key: "a/k", Value: []byte("one"), Version: v1}, rec)

	v2, err := s.Update(ctx, "a/k", []byte("two"), v1)
	require.NoError(t, err)
	assert.NotEqual(t, v1, v2)
	_, err = s.Update(ctx, "a/k", []byte("stale"), v1)
	require.ErrorIs(t, err, meta.ErrPrecondition)
	assert.Contains(t, err.Error(), "current "+string(v2))
	require.ErrorIs(t, s.Delete(ctx, "a/k", v1), meta.ErrPrecondition)

	// Versions this backend never issues are mismatches, not other errors.
	for _, v := range []meta.Version{"", "0", "-1", "+" + v2, "0" + v2, "abc", v2 + "x", "99999999999999999999"} {
		_, err := s.Update(ctx, "a/k", []byte("x"), v)
		assert.ErrorIs(t, err, meta.ErrPrecondition, "update with version %q", v)
		assert.ErrorIs(t, s.Delete(ctx, "a/k", v), meta.ErrPrecondition, "delete with version %q", v)
	}
	rec, err = s.Get(ctx, "a/k")
	require.NoError(t, err)
	assert.Equal(t, v2, rec.Version)

	require.NoError(t, s.Delete(ctx, "a/k", v2))
	_, err = s.Get(ctx, "a/k")
	require.ErrorIs(t, err, meta.ErrNotFound)
	_, err = s.Update(ctx, "a/k", []byte("gone"), v2)
	require.ErrorIs(t, err, meta.ErrPrecondition)
	assert.Contains(t, err.Error(), "does not exist")
	require.ErrorIs(t, s.Delete(ctx, "a/k", v2), meta.ErrPrecondition)

	v3, err := s.Create(ctx, "a/k", nil)
	require.NoError(t, err)
	assert.NotContains(t, []meta.Version{v1, v2}, v3)
	rec, err = s.Get(ctx, "a/k")
	require.NoError(t, err)
	assert.Empty(t, rec.Value)
	assert.Equal(t, v3, rec.Version)

	// The record lives under the deployment prefix in etcd.
	raw, err := srv.Client(t).Get(ctx, "cas/a/k")
	require.NoError(t, err)
	require.Len(t, raw.Kvs, 1)
	assert.Equal(t, string(v3), strconv.FormatInt(raw.Kvs[0].ModRevision, 10))

	// Input validation happens before any request.
	_, err = s.Create(ctx, "Bad", nil)
	assert.ErrorIs(t, err, meta.ErrInvalidKey)
	_, err = s.Get(ctx, "a//b")
	assert.ErrorIs(t, err, meta.ErrInvalidKey)
	_, err = s.List(ctx, "A")
	assert.ErrorIs(t, err, meta.ErrInvalidKey)
	_, err = s.Create(ctx, "big", make([]byte, meta.MaxValueSize+1))
	assert.ErrorIs(t, err, meta.ErrTooLarge)
	_, err = s.Create(ctx, "max", make([]byte, meta.MaxValueSize))
	assert.NoError(t, err, "a MaxValueSize value fits in one etcd request")

	require.NoError(t, s.Close())
	require.NoError(t, s.Close())
	_, err = s.Get(ctx, "a/k")
	assert.ErrorIs(t, err, meta.ErrClosed)
	_, err = s.Create(ctx, "b", nil)
	assert.ErrorIs(t, err, meta.ErrClosed)
	_, err = s.Update(ctx, "a/k", nil, v3)
	assert.ErrorIs(t, err, meta.ErrClosed)
	assert.ErrorIs(t, s.Delete(ctx, "a/k", v3), meta.ErrClosed)
	_, err = s.List(ctx, "")
	assert.ErrorIs(t, err, meta.ErrClosed)
	_, err = s.Watch(ctx, "")
	assert.ErrorIs(t, err, meta.ErrClosed)
}

// List pages through more records than one etcd range request returns, in
// key order, and sees nothing of other deployment prefixes.
func TestEtcdListPaging(t *testing.T) {
	srv := etcdserver.Start(t)
	cli := srv.Client(t)
	s, err := etcdmeta.NewFromClient(cli, "dep")
	require.NoError(t, err)
	neighbour, err := etcdmeta.NewFromClient(cli, "dep2")
	require.NoError(t, err)
	ctx := etcdCtx(t)

	const n = 300
	var want []string
	for i := range n {
		k := fmt.Sprintf("log/%05d/manifest", i)
		want = append(want, k)
		_, err := s.Create(ctx, k, []byte(k))
		require.NoError(t, err)
	}
	_, err = neighbour.Create(ctx, "log/00001/manifest", []byte("other"))
	require.NoError(t, err)
	_, err = cli.Put(ctx, "dep", "bare prefix key")
	require.NoError(t, err)

	recs, err := s.List(ctx, "")
	require.NoError(t, err)
	var got []string
	for _, r := range recs {
		got = append(got, r.Key)
		assert.Equal(t, r.Key, string(r.Value))
		assert.NotEmpty(t, r.Version)
	}
	assert.Equal(t, want, got)

	recs, err = s.List(ctx, "log/001")
	require.NoError(t, err)
	require.Len(t, recs, 100)
	assert.Equal(t, "log/00100/manifest", recs[0].Key)
	assert.Equal(t, "log/00199/manifest", recs[99].Key)

	recs, err = s.List(ctx, "nothing")
	require.NoError(t, err)
	assert.Empty(t, recs)

	recs, err = neighbour.List(ctx, "")
	require.NoError(t, err)
	require.Len(t, recs, 1)
	assert.Equal(t, "log/00001/manifest", recs[0].Key)

	// Close of a store made from a client leaves the client open.
	require.NoError(t, s.Close())
	_, err = neighbour.Get(ctx, "log/00001/manifest")
	require.NoError(t, err)
}

// etcdNext receives one event or fails the test.
func etcdNext(t *testing.T, ch <-chan meta.Event) meta.Event {
	t.Helper()
	select {
	case ev, ok := <-ch:
		require.True(t, ok, "watch channel closed")
		return ev
	case <-time.After(10 * time.Second):
		t.Fatal("no watch event within 10s")
		return meta.Event{}
	}
}

func etcdClosed(t *testing.T, ch <-chan meta.Event) {
	t.Helper()
	deadline := time.After(10 * time.Second)
	for {
		select {
		case _, ok := <-ch:
			if !ok {
				return
			}
		case <-deadline:
			t.Fatal("watch channel not closed within 10s")
		}
	}
}

func TestEtcdWatch(t *testing.T) {
	srv := etcdserver.Start(t)
	s := etcdOpen(t, srv.Config("w"))
	ctx := etcdCtx(t)

	before, err := s.Create(ctx, "logs/old", []byte("before"))
	require.NoError(t, err)

	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	ch, err := s.Watch(wctx, "logs/")
	require.NoError(t, err)

	_, err = s.Create(ctx, "other/x", []byte("outside"))
	require.NoError(t, err)
	v1, err := s.Create(ctx, "logs/a", []byte("1"))
	require.NoError(t, err)
	assert.Equal(t, meta.Event{Type: meta.EventPut, Record: meta.Record{Key: "logs/a", Value: []byte("1"), Version: v1}}, etcdNext(t, ch))

	v2, err := s.Update(ctx, "logs/a", []byte("2"), v1)
	require.NoError(t, err)
	assert.Equal(t, meta.Event{Type: meta.EventPut, Record: meta.Record{Key: "logs/a", Value: []byte("2"), Version: v2}}, etcdNext(t, ch))

	require.NoError(t, s.Delete(ctx, "logs/old", before))
	assert.Equal(t, meta.Event{Type: meta.EventDelete, Record: meta.Record{Key: "logs/old"}}, etcdNext(t, ch))

	_, err = s.Create(ctx, "logsx", []byte("not under logs/"))
	require.NoError(t, err)
	require.NoError(t, s.Delete(ctx, "logs/a", v2))
	assert.Equal(t, meta.Event{Type: meta.EventDelete, Record: meta.Record{Key: "logs/a"}}, etcdNext(t, ch))

	cancel()
	etcdClosed(t, ch)

	// Close ends a watch too.
	ch2, err := s.Watch(ctx, "")
	require.NoError(t, err)
	require.NoError(t, s.Close())
	etcdClosed(t, ch2)
}

// A slow consumer gets the latest state of every key.
func TestEtcdWatchSlowConsumer(t *testing.T) {
	srv := etcdserver.Start(t)
	s := etcdOpen(t, srv.Config("slow"))
	ctx := etcdCtx(t)
	ch, err := s.Watch(ctx, "")
	require.NoError(t, err)

	const keys, writes = 5, 80 // more than the 256 events a watch queues before coalescing
	want := map[string]string{}
	for k := range keys {
		key := fmt.Sprintf("k%d", k)
		v, err := s.Create(ctx, key, []byte("0"))
		require.NoError(t, err)
		for i := 1; i < writes; i++ {
			v, err = s.Update(ctx, key, []byte(strconv.Itoa(i)), v)
			require.NoError(t, err)
		}
		want[key] = strconv.Itoa(writes - 1)
	}
	got := map[string]string{}
	n := 0
	for !etcdSameState(got, want) {
		ev := etcdNext(t, ch)
		n++
		require.Equal(t, meta.EventPut, ev.Type)
		got[ev.Record.Key] = string(ev.Record.Value)
	}
	t.Logf("%d events for %d writes", n, keys*writes)
	assert.Less(t, n, keys*writes, "a slow consumer's events were not coalesced")
}

func etcdSameState(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if w, ok := b[k]; !ok || w != v {
			return false
		}
	}
	return true
}

// etcdProxy forwards TCP connections to an etcd server. Pause cuts every
// connection and holds new ones until Resume.
type etcdProxy struct {
	l       net.Listener
	backend string

	mu     sync.Mutex
	conns  map[net.Conn]bool // guarded by mu
	paused chan struct{}     // closed while not paused; guarded by mu
	wg     sync.WaitGroup
}

func etcdStartProxy(t *testing.T, backend string) *etcdProxy {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	p := &etcdProxy{l: l, backend: backend, conns: map[net.Conn]bool{}, paused: make(chan struct{})}
	close(p.paused)
	p.wg.Add(1)
	go p.accept()
	t.Cleanup(func() {
		_ = l.Close()
		p.Resume()
		p.cut()
		p.wg.Wait()
	})
	return p
}

func (p *etcdProxy) Addr() string { return p.l.Addr().String() }

func (p *etcdProxy) accept() {
	defer p.wg.Done()
	for {
		c, err := p.l.Accept()
		if err != nil {
			return
		}
		p.wg.Add(1)
		go p.serve(c)
	}
}

func (p *etcdProxy) track(c net.Conn) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.conns[c] = true
}

func (p *etcdProxy) serve(c net.Conn) {
	defer p.wg.Done()
	p.track(c)
	p.mu.Lock()
	gate := p.paused
	p.mu.Unlock()
	<-gate
	b, err := net.Dial("tcp", p.backend)
	if err != nil {
		_ = c.Close()
		return
	}
	p.track(b)
	done := make(chan struct{}, 2)
	go func() { _, _ = io.Copy(b, c); _ = b.Close(); done <- struct{}{} }()
	go func() { _, _ = io.Copy(c, b); _ = c.Close(); done <- struct{}{} }()
	<-done
	<-done
}

func (p *etcdProxy) cut() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for c := range p.conns {
		_ = c.Close()
	}
	clear(p.conns)
}

// Pause closes every open connection and holds new ones.
func (p *etcdProxy) Pause() {
	p.mu.Lock()
	p.paused = make(chan struct{})
	p.mu.Unlock()
	p.cut()
}

// Resume lets held and new connections through.
func (p *etcdProxy) Resume() {
	p.mu.Lock()
	defer p.mu.Unlock()
	select {
	case <-p.paused:
	default:
		close(p.paused)
	}
}

// etcdLogBuffer collects log output from several goroutines.
type etcdLogBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *etcdLogBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *etcdLogBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// A watch that loses its connection while the revisions it needs are
// compacted away re-lists and still delivers the latest state, deletes
// included. Calls cut off by a timeout are reported as ambiguous.
func TestEtcdWatchResyncAfterCompaction(t *testing.T) {
	srv := etcdserver.Start(t)
	proxy := etcdStartProxy(t, srv.Endpoints[0])
	cfg := srv.Config("resync")
	cfg.Endpoints = []string{proxy.Addr()}
	var logs etcdLogBuffer
	cfg.Logger = slog.New(slog.NewTextHandler(&logs, nil))
	watched := etcdOpen(t, cfg)
	direct := etcdOpen(t, srv.Config("resync"))
	ctx := etcdCtx(t)

	va, err := direct.Create(ctx, "a", []byte("a0"))
	require.NoError(t, err)
	vb, err := direct.Create(ctx, "b", []byte("b0"))
	require.NoError(t, err)
	ch, err := watched.Watch(ctx, "")
	require.NoError(t, err)
	va, err = direct.Update(ctx, "a", []byte("a1"), va)
	require.NoError(t, err)
	assert.Equal(t, "a1", string(etcdNext(t, ch).Record.Value))

	proxy.Pause()
	// A write on the cut connection fails at once (gRPC Unavailable, the
	// request may have been sent); the next one waits for a connection
	// and times out. Both are "outcome unknown".
	for i := range 2 {
		short, cancel := context.WithTimeout(ctx, 200*time.Millisecond)
		_, err = watched.Create(short, "c", []byte("lost"))
		cancel()
		t.Logf("create while cut off: %v", err)
		require.Error(t, err)
		assert.Contains(t, err.Error(), `create "c": outcome unknown`)
		if i == 1 {
			assert.ErrorIs(t, err, context.DeadlineExceeded)
		}
	}

	_, err = direct.Update(ctx, "a", []byte("a2"), va)
	require.NoError(t, err)
	require.NoError(t, direct.Delete(ctx, "b", vb))
	_, err = direct.Create(ctx, "d", []byte("d0"))
	require.NoError(t, err)
	cli := srv.Client(t)
	resp, err := cli.Get(ctx, "resync/a")
	require.NoError(t, err)
	_, err = cli.Compact(ctx, resp.Header.Revision)
	require.NoError(t, err)
	proxy.Resume()

	want := map[string]string{"a": "a2", "d": "d0"}
	got := map[string]string{"a": "a1", "b": "b0"}
	for !etcdSameState(got, want) {
		ev := etcdNext(t, ch)
		switch ev.Type {
		case meta.EventPut:
			got[ev.Record.Key] = string(ev.Record.Value)
		case meta.EventDelete:
			delete(got, ev.Record.Key)
		}
	}

	assert.Contains(t, logs.String(), "etcd watch broken, re-listing")
	assert.Contains(t, logs.String(), "compacted")
	t.Logf("logs:\n%s", logs.String())

	// The watch keeps working after the resync.
	_, err = direct.Create(ctx, "e", []byte("e0"))
	require.NoError(t, err)
	ev := etcdNext(t, ch)
	assert.Equal(t, "e", ev.Record.Key)
}

// Eight goroutines increment one counter 50 times each with
// read-modify-CAS; no increment is lost.
func TestEtcdConcurrentIncrement(t *testing.T) {
	srv := etcdserver.Start(t)
	s := etcdOpen(t, srv.Config("race"))
	ctx := etcdCtx(t)
	_, err := s.Create(ctx, "counter", []byte("0"))
	require.NoError(t, err)

	const workers, incs = 8, 50
	var wg sync.WaitGroup
	errs := make(chan error, workers)
	for range workers {
		wg.Go(func() {
			for range incs {
				for {
					rec, err := s.Get(ctx, "counter")
					if err != nil {
						errs <- err
						return
					}
					n, err := strconv.Atoi(string(rec.Value))
					if err != nil {
						errs <- err
						return
					}
					_, err = s.Update(ctx, "counter", []byte(strconv.Itoa(n+1)), rec.Version)
					if errors.Is(err, meta.ErrPrecondition) {
						continue
					}
					if err != nil {
						errs <- err
						return
					}
					break
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	rec, err := s.Get(ctx, "counter")
	require.NoError(t, err)
	assert.Equal(t, strconv.Itoa(workers*incs), string(rec.Value))
}

// Exactly one of many concurrent creates of one key wins.
func TestEtcdConcurrentCreate(t *testing.T) {
	srv := etcdserver.Start(t)
	s := etcdOpen(t, srv.Config("create"))
	ctx := etcdCtx(t)
	const n = 16
	results := make(chan error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			_, err := s.Create(ctx, "only", []byte(strconv.Itoa(i)))
			results <- err
		})
	}
	wg.Wait()
	close(results)
	var wins []error
	for err := range results {
		if err == nil {
			wins = append(wins, err)
		} else {
			require.ErrorIs(t, err, meta.ErrExists)
		}
	}
	assert.Len(t, wins, 1)
}

// The shared metadata-store suite, on one embedded server; every store gets
// a fresh deployment prefix.
func TestEtcdConformance(t *testing.T) {
	srv := etcdserver.Start(t)
	metasuite.TestMetaStore(t, func(t testing.TB) meta.Store {
		t.Helper()
		s, err := etcdmeta.New(context.Background(), srv.Config(etcdRandomPrefix()))
		if err != nil {
			t.Fatalf("NewEtcd: %v", err)
		}
		t.Cleanup(func() { _ = s.Close() })
		return s
	}, conformance.Options{Checks: 10})
}
