package wal_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/woodpecker-wal/woodpecker/objstore"
	"github.com/woodpecker-wal/woodpecker/wal"
)

// A log's blobs share its area of the bucket with its fragments, but can
// neither see nor touch them: keys under a log ID are refused and left out
// of listings, whose pages still end only at the end. An invalid log name
// gives blobs that refuse everything.
func TestBlobsStayOutOfTheLogsData(t *testing.T) {
	ctx := context.Background()
	b, m := memStores()
	c := newClient(t, b, m, nil)
	l := createLog(t, c, "raft")
	w := openWriter(t, l)
	mustAppend(t, w, 1, entries(1, 50))
	bl := c.LogStore().Blobs("raft")
	for i := range 7 {
		key := fmt.Sprintf("snap/%02d", i)
		if _, err := bl.PutIfAbsent(ctx, key, []byte(key)); err != nil {
			t.Fatal(err)
		}
	}
	var listed []string
	if err := objstore.ListAll(ctx, bl, "", 2, func(o objstore.ObjectInfo) error {
		listed = append(listed, o.Key)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if len(listed) != 7 || listed[0] != "snap/00" || listed[6] != "snap/06" {
		t.Fatalf("blobs listed %q, want exactly snap/00 .. snap/06", listed)
	}
	var dataKey string
	if err := objstore.ListAll(ctx, b, "wal/raft/", 0, func(o objstore.ObjectInfo) error {
		if k := strings.TrimPrefix(o.Key, "wal/raft/"); !strings.HasPrefix(k, "snap/") && dataKey == "" {
			dataKey = k
		}
		return nil
	}); err != nil || dataKey == "" {
		t.Fatalf("no fragment found beside the blobs (%v)", err)
	}
	if _, err := bl.Head(ctx, dataKey); !errors.Is(err, objstore.ErrInvalidKey) {
		t.Errorf("Head(%q), a fragment of the log, through its blobs = %v, want ErrInvalidKey", dataKey, err)
	}
	if err := bl.Delete(ctx, dataKey); !errors.Is(err, objstore.ErrInvalidKey) {
		t.Errorf("Delete(%q) through the blobs = %v, want ErrInvalidKey", dataKey, err)
	}
	for _, name := range []string{"raft/snap", "", "Raft"} {
		if _, err := c.LogStore().Blobs(name).Head(ctx, "x"); !errors.Is(err, objstore.ErrInvalidKey) {
			t.Errorf("Blobs(%q).Head = %v, want ErrInvalidKey", name, err)
		}
	}
	if got := mustGet(t, l, 50); got != string(entries(1, 50)[49]) {
		t.Errorf("entry 50 = %q after the blob calls", got)
	}
}

// With the metadata in the bucket, the deployment prefix cannot be the one
// the metadata lives under, or a log's area would hold the records.
func TestOpenURLRefusesThePrefixOfTheMetadata(t *testing.T) {
	_, err := wal.OpenURL(context.Background(), "mem://", "", wal.Config{Prefix: "meta"})
	if err == nil || !strings.Contains(err.Error(), "Config.Prefix") {
		t.Fatalf("OpenURL with Prefix \"meta\" and the metadata in the bucket = %v, want an error naming Config.Prefix", err)
	}
	c, err := wal.OpenURL(context.Background(), "mem://", "mem://", wal.Config{Prefix: "meta"})
	if err != nil {
		t.Fatalf("OpenURL with Prefix \"meta\" and the metadata apart: %v", err)
	}
	c.Close()
}

// Deleting a log leaves the blobs kept beside it (its snapshots), which its
// next incarnation finds again.
func TestDeleteLogKeepsItsBlobs(t *testing.T) {
	ctx := context.Background()
	b, m := memStores()
	c := newClient(t, b, m, nil)
	w := openWriter(t, createLog(t, c, "raft"))
	mustAppend(t, w, 1, entries(1, 3))
	if _, err := c.LogStore().Blobs("raft").PutIfAbsent(ctx, "snap/1", []byte("state")); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if err := c.DeleteLog(ctx, "raft"); err != nil {
		t.Fatal(err)
	}
	createLog(t, c, "raft")
	data, _, err := objstore.ReadAll(ctx, c.LogStore().Blobs("raft"), "snap/1")
	if err != nil || string(data) != "state" {
		t.Fatalf("blob after DeleteLog and CreateLog = %q, %v; want it kept", data, err)
	}
}
