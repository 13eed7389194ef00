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
