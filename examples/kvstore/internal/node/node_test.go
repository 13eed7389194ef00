package node

import (
	"maps"
	"testing"
)

func TestParsePeers(t *testing.T) {
	got, err := ParsePeers(" 1=127.0.0.1:7001, 2=[::1]:7002 ,3=host:7003")
	want := map[uint64]string{1: "127.0.0.1:7001", 2: "[::1]:7002", 3: "host:7003"}
	if err != nil || !maps.Equal(got, want) {
		t.Fatalf("ParsePeers = %v, %v; want %v", got, err, want)
	}
	if got, err := ParsePeers(""); err != nil || len(got) != 0 {
		t.Fatalf("empty: %v, %v", got, err)
	}
	for _, bad := range []string{"1", "0=h:1", "x=h:1", "1=h", "1=h:1,1=h:2"} {
		if _, err := ParsePeers(bad); err == nil {
			t.Errorf("ParsePeers(%q) accepted", bad)
		}
	}
}

func TestRedact(t *testing.T) {
	for in, want := range map[string]string{
		"s3://b/p?endpoint=h:1&secret_key=s": "s3://b/p?…",
		"etcd://user:pw@h:2379/kv":           "etcd://user:xxxxx@h:2379/kv",
		"file:///data/node-1":                "file:///data/node-1",
	} {
		if got := redact(in); got != want {
			t.Errorf("redact(%q) = %q, want %q", in, got, want)
		}
	}
}
