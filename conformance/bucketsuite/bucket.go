package bucketsuite

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"pgregory.net/rapid"

	"github.com/woodpecker-wal/woodpecker/conformance"
	"github.com/woodpecker-wal/woodpecker/conformance/internal/harness"
	"github.com/woodpecker-wal/woodpecker/objstore"
)

// BucketFactory returns a new, empty bucket for one test. The suite closes
// it; the factory registers any other cleanup with t.Cleanup.
type BucketFactory func(t testing.TB) objstore.Bucket

// TestBucket checks that buckets made by newBucket honour the objstore
// contract: conditional create, overwrite, ranged reads, idempotent delete,
// listing order and paging, key validation, Close, exactly one winner among
// racing creators, no lost update among racing compare-and-swappers (for
// objstore.CASBucket), and a rapid state machine against a map model.
func TestBucket(t *testing.T, newBucket BucketFactory, opts conformance.Options) {
	harness.Suite(t, func(t testing.TB) objstore.Bucket { return newBucket(t) }, []harness.Case[objstore.Bucket]{
		{Name: "Basic", Run: testBucketBasic},
		{Name: "Ranges", Run: testBucketRanges},
		{Name: "InvalidKeys", Run: testBucketInvalidKeys},
		{Name: "ListOrder", Run: testBucketListOrder},
		{Name: "ListPaging", Run: testBucketListPaging},
		{Name: "PutStream", Run: testBucketPutStream},
		{Name: "CAS", Run: testBucketCAS},
		{Name: "RaceCreate", Run: testBucketRaceCreate},
		{Name: "RaceCAS", Run: testBucketRaceCAS},
		{Name: "Close", Run: testBucketClose, OwnsClose: true},
	}, opts.Checks, func(rt *rapid.T) { testBucketModel(rt, t, newBucket) })
}

func mustRead(t testing.TB, ctx context.Context, b objstore.Bucket, key string) ([]byte, objstore.ObjectInfo) {
	t.Helper()
	data, info, err := objstore.ReadAll(ctx, b, key)
	if err != nil {
		t.Fatalf("read %q: %v", key, err)
	}
	return data, info
}

func testBucketBasic(t *testing.T, b objstore.Bucket) {
	ctx := harness.Ctx(t)
	const key = "basic/obj"
	if _, err := b.Head(ctx, key); !errors.Is(err, objstore.ErrNotFound) {
		t.Fatalf("Head of missing key: got %v, want ErrNotFound", err)
	}
	if _, _, err := b.Get(ctx, key, 0, -1); !errors.Is(err, objstore.ErrNotFound) {
		t.Fatalf("Get of missing key: got %v, want ErrNotFound", err)
	}
	data := []byte("hello, woodpecker")
	info, err := b.PutIfAbsent(ctx, key, data)
	if err != nil {
		t.Fatalf("PutIfAbsent: %v", err)
	}
	if info.Size != int64(len(data)) || info.ETag == "" {
		t.Fatalf("PutIfAbsent info = %+v, want size %d and an ETag", info, len(data))
	}
	got, ginfo := mustRead(t, ctx, b, key)
	if !bytes.Equal(got, data) {
		t.Fatalf("read back %q, want %q", got, data)
	}
	if ginfo.ETag != info.ETag || ginfo.Size != info.Size {
		t.Fatalf("Get info %+v differs from Put info %+v", ginfo, info)
	}
	hinfo, err := b.Head(ctx, key)
	if err != nil || hinfo.ETag != info.ETag || hinfo.Size != info.Size || hinfo.Key != key {
		t.Fatalf("Head = %+v, %v; want %+v", hinfo, err, info)
	}
	// Conditional create over an existing key fails and changes nothing.
	if _, err := b.PutIfAbsent(ctx, key, []byte("other")); !errors.Is(err, objstore.ErrExists) {
		t.Fatalf("second PutIfAbsent: got %v, want ErrExists", err)
	}
	if got, _ := mustRead(t, ctx, b, key); !bytes.Equal(got, data) {
		t.Fatalf("after failed PutIfAbsent read %q, want %q", got, data)
	}
	// The caller's buffer is not retained.
	buf := []byte("mutable")
	if _, err := b.PutIfAbsent(ctx, "basic/buf", buf); err != nil {
		t.Fatal(err)
	}
	buf[0] = 'X'
	if got, _ := mustRead(t, ctx, b, "basic/buf"); string(got) != "mutable" {
		t.Fatalf("bucket retained the caller's buffer: read %q", got)
	}
	// Unconditional overwrite.
	data2 := []byte("replaced")
	info2, err := b.Put(ctx, key, bytes.NewReader(data2), int64(len(data2)))
	if err != nil {
		t.Fatalf("Put: %v", err)
	}
	if info2.ETag == info.ETag {
		t.Fatalf("ETag did not change with the content: %q", info2.ETag)
	}
	if got, _ := mustRead(t, ctx, b, key); !bytes.Equal(got, data2) {
		t.Fatalf("after Put read %q, want %q", got, data2)
	}
	// Empty objects are objects.
	if _, err := b.PutIfAbsent(ctx, "basic/empty", nil); err != nil {
		t.Fatalf("PutIfAbsent empty: %v", err)
	}
	if got, info := mustRead(t, ctx, b, "basic/empty"); len(got) != 0 || info.Size != 0 {
		t.Fatalf("empty object read %d bytes, size %d", len(got), info.Size)
	}
	// Delete is idempotent.
	for i := 0; i < 2; i++ {
		if err := b.Delete(ctx, key); err != nil {
			t.Fatalf("Delete #%d: %v", i+1, err)
		}
	}
	if _, err := b.Head(ctx, key); !errors.Is(err, objstore.ErrNotFound) {
		t.Fatalf("Head after Delete: got %v, want ErrNotFound", err)
	}
	if err := b.Delete(ctx, "basic/never-existed"); err != nil {
		t.Fatalf("Delete of missing key: %v", err)
	}
	// A deleted key can be created again.
	if _, err := b.PutIfAbsent(ctx, key, data); err != nil {
		t.Fatalf("PutIfAbsent after Delete: %v", err)
	}
}

func testBucketRanges(t *testing.T, b objstore.Bucket) {
	ctx := harness.Ctx(t)
	data := make([]byte, 1000)
	for i := range data {
		data[i] = byte(i * 7)
	}
	if _, err := b.PutIfAbsent(ctx, "ranges/obj", data); err != nil {
		t.Fatal(err)
	}
	cases := []struct{ off, length int64 }{
		{0, -1}, {0, 1000}, {0, 1}, {1, 10}, {999, 1}, {999, -1}, {500, 2000}, {10, 0}, {1000, -1}, {1000, 5}, {5000, 10},
	}
	for _, c := range cases {
		rc, info, err := b.Get(ctx, "ranges/obj", c.off, c.length)
		if err != nil {
			t.Fatalf("Get(off=%d, len=%d): %v", c.off, c.length, err)
		}
		got, err := io.ReadAll(rc)
		rc.Close()
		if err != nil {
			t.Fatalf("Get(off=%d, len=%d) read: %v", c.off, c.length, err)
		}
		end := int64(len(data))
		if c.length >= 0 && c.off+c.length < end {
			end = c.off + c.length
		}
		var want []byte
		if c.off < end {
			want = data[c.off:end]
		}
		if !bytes.Equal(got, want) {
			t.Fatalf("Get(off=%d, len=%d) returned %d bytes, want %d", c.off, c.length, len(got), len(want))
		}
		if info.Size != int64(len(data)) {
			t.Fatalf("Get(off=%d, len=%d) info.Size = %d, want whole size %d", c.off, c.length, info.Size, len(data))
		}
	}
}

// InvalidKeys lists keys every backend must reject with ErrInvalidKey.
var InvalidKeys = []string{
	"", "/abs", "trailing/", "a//b", "../escape", "a/../../escape", "a/./b", ".", "..",
	"nul\x00byte", "back\\slash", strings.Repeat("k", objstore.MaxKeyLen+1), "bad\xffutf8",
}

func testBucketInvalidKeys(t *testing.T, b objstore.Bucket) {
	ctx := harness.Ctx(t)
	for _, key := range InvalidKeys {
		errs := map[string]error{}
		_, errs["PutIfAbsent"] = b.PutIfAbsent(ctx, key, []byte("x"))
		_, errs["Put"] = b.Put(ctx, key, strings.NewReader("x"), 1)
		_, _, errs["Get"] = b.Get(ctx, key, 0, -1)
		_, errs["Head"] = b.Head(ctx, key)
		errs["Delete"] = b.Delete(ctx, key)
		if cb, ok := b.(objstore.CASBucket); ok {
			_, errs["PutIfMatch"] = cb.PutIfMatch(ctx, key, []byte("x"), "etag")
		}
		for op, err := range errs {
			if !errors.Is(err, objstore.ErrInvalidKey) {
				t.Errorf("%s(%q): got %v, want ErrInvalidKey", op, key, err)
			}
		}
	}
	// Nothing escaped: the bucket still lists nothing.
	if objs, err := b.List(ctx, objstore.ListOptions{}); err != nil || len(objs) != 0 {
		t.Fatalf("List after invalid writes = %v, %v; want empty", objs, err)
	}
}

// listOrderKeys are chosen so that a directory walk would return them out of
// byte order ('-' < '/' < '0' < '_' < 'b').
var listOrderKeys = []string{"lo/a/b", "lo/a-c", "lo/a0/x", "lo/a_c", "lo/ab", "lo/a/c/d", "lo/a.x"}

func testBucketListOrder(t *testing.T, b objstore.Bucket) {
	ctx := harness.Ctx(t)
	for _, k := range listOrderKeys {
		if _, err := b.PutIfAbsent(ctx, k, []byte(k)); err != nil {
			t.Fatalf("PutIfAbsent(%q): %v", k, err)
		}
	}
	want := slices.Sorted(slices.Values(listOrderKeys))
	check := func(opts objstore.ListOptions, want []string) {
		t.Helper()
		objs, err := b.List(ctx, opts)
		if err != nil {
			t.Fatalf("List(%+v): %v", opts, err)
		}
		got := make([]string, len(objs))
		for i, o := range objs {
			got[i] = o.Key
			if o.Size != int64(len(o.Key)) {
				t.Fatalf("List(%+v): %q has size %d, want %d", opts, o.Key, o.Size, len(o.Key))
			}
		}
		if !slices.Equal(got, want) && !(len(got) == 0 && len(want) == 0) {
			t.Fatalf("List(%+v) = %q, want %q", opts, got, want)
		}
	}
	check(objstore.ListOptions{Prefix: "lo/"}, want)
	check(objstore.ListOptions{}, want)
	check(objstore.ListOptions{Prefix: "lo/a/"}, []string{"lo/a/b", "lo/a/c/d"})
	check(objstore.ListOptions{Prefix: "lo/a"}, want)
	check(objstore.ListOptions{Prefix: "lo/a_"}, []string{"lo/a_c"})
	check(objstore.ListOptions{Prefix: "lo/zz"}, nil)
	check(objstore.ListOptions{Prefix: "nothing/here/"}, nil)
	check(objstore.ListOptions{Prefix: "lo/", StartAfter: "lo/a/b"}, want[slices.Index(want, "lo/a/b")+1:])
	check(objstore.ListOptions{Prefix: "lo/", StartAfter: "lo/a/"}, want[slices.Index(want, "lo/a/b"):])
	check(objstore.ListOptions{Prefix: "lo/", Limit: 3}, want[:3])
	check(objstore.ListOptions{Prefix: "lo/", StartAfter: "lo/zzz"}, nil)
}

func testBucketListPaging(t *testing.T, b objstore.Bucket) {
	ctx := harness.Ctx(t)
	var want []string
	for i := 0; i < 23; i++ {
		k := fmt.Sprintf("page/%020d", i*37)
		want = append(want, k)
		if _, err := b.PutIfAbsent(ctx, k, []byte{byte(i)}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := b.PutIfAbsent(ctx, "pagex/other", nil); err != nil {
		t.Fatal(err)
	}
	var got []string
	after := ""
	for pages := 0; ; pages++ {
		objs, err := b.List(ctx, objstore.ListOptions{Prefix: "page/", StartAfter: after, Limit: 5})
		if err != nil {
			t.Fatal(err)
		}
		if len(objs) > 5 {
			t.Fatalf("page %d has %d keys, limit 5", pages, len(objs))
		}
		for _, o := range objs {
			got = append(got, o.Key)
		}
		if len(objs) < 5 {
			break
		}
		after = objs[len(objs)-1].Key
	}
	if !slices.Equal(got, want) {
		t.Fatalf("paged listing = %q, want %q", got, want)
	}
	got = got[:0]
	if err := objstore.ListAll(ctx, b, "page/", 4, func(o objstore.ObjectInfo) error {
		got = append(got, o.Key)
		return nil
	}); err != nil || !slices.Equal(got, want) {
		t.Fatalf("ListAll = %q, %v; want %q", got, err, want)
	}
}

func testBucketPutStream(t *testing.T, b objstore.Bucket) {
	ctx := harness.Ctx(t)
	data := bytes.Repeat([]byte("0123456789abcdef"), 64<<10) // 1 MiB
	// Unknown size: the backend streams it.
	info, err := b.Put(ctx, "stream/unknown", io.MultiReader(bytes.NewReader(data[:1000]), bytes.NewReader(data[1000:])), -1)
	if err != nil {
		t.Fatalf("Put(size -1): %v", err)
	}
	if info.Size != int64(len(data)) {
		t.Fatalf("Put(size -1) info.Size = %d, want %d", info.Size, len(data))
	}
	if got, _ := mustRead(t, ctx, b, "stream/unknown"); !bytes.Equal(got, data) {
		t.Fatalf("streamed object read back %d bytes differing from the %d written", len(got), len(data))
	}
	// A reader shorter than the declared size is an error and leaves nothing.
	if _, err := b.Put(ctx, "stream/short", bytes.NewReader(data[:10]), 20); err == nil {
		t.Fatalf("Put with a short reader succeeded")
	}
	if _, err := b.Head(ctx, "stream/short"); !errors.Is(err, objstore.ErrNotFound) {
		t.Fatalf("a failed short Put left an object (Head: %v)", err)
	}
}

func testBucketCAS(t *testing.T, b objstore.Bucket) {
	cb, ok := b.(objstore.CASBucket)
	if !ok {
		t.Skipf("%T does not implement objstore.CASBucket", b)
	}
	ctx := harness.Ctx(t)
	if _, err := cb.PutIfMatch(ctx, "cas/missing", []byte("x"), "0123456789abcdef0123456789abcdef"); !errors.Is(err, objstore.ErrPrecondition) {
		t.Fatalf("PutIfMatch on missing key: got %v, want ErrPrecondition", err)
	}
	if _, err := cb.Head(ctx, "cas/missing"); !errors.Is(err, objstore.ErrNotFound) {
		t.Fatalf("failed PutIfMatch created the object (Head: %v)", err)
	}
	v1, err := cb.PutIfAbsent(ctx, "cas/k", []byte("one"))
	if err != nil {
		t.Fatal(err)
	}
	v2, err := cb.PutIfMatch(ctx, "cas/k", []byte("two"), v1.ETag)
	if err != nil {
		t.Fatalf("PutIfMatch with current ETag: %v", err)
	}
	if _, err := cb.PutIfMatch(ctx, "cas/k", []byte("stale"), v1.ETag); !errors.Is(err, objstore.ErrPrecondition) {
		t.Fatalf("PutIfMatch with stale ETag: got %v, want ErrPrecondition", err)
	}
	got, info := mustRead(t, ctx, cb, "cas/k")
	if string(got) != "two" || info.ETag != v2.ETag {
		t.Fatalf("after CAS read %q (etag %q), want %q (etag %q)", got, info.ETag, "two", v2.ETag)
	}
}

func testBucketRaceCreate(t *testing.T, b objstore.Bucket) {
	ctx := harness.Ctx(t)
	for round := 0; round < 5; round++ {
		key := "race/create/" + strconv.Itoa(round)
		var wins atomic.Int32
		winner := make(chan string, harness.RaceN)
		var wg sync.WaitGroup
		start := make(chan struct{})
		for g := 0; g < harness.RaceN; g++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				<-start
				body := fmt.Sprintf("writer-%d", g)
				_, err := b.PutIfAbsent(ctx, key, []byte(body))
				switch {
				case err == nil:
					wins.Add(1)
					winner <- body
				case errors.Is(err, objstore.ErrExists):
				default:
					t.Errorf("racing PutIfAbsent: %v", err)
				}
			}()
		}
		close(start)
		wg.Wait()
		if n := wins.Load(); n != 1 {
			t.Fatalf("round %d: %d racing creators won, want exactly 1", round, n)
		}
		if got, _ := mustRead(t, ctx, b, key); string(got) != <-winner {
			t.Fatalf("round %d: stored %q is not the winner's body", round, got)
		}
	}
}

func testBucketRaceCAS(t *testing.T, b objstore.Bucket) {
	cb, ok := b.(objstore.CASBucket)
	if !ok {
		t.Skipf("%T does not implement objstore.CASBucket", b)
	}
	ctx := harness.Ctx(t)
	const key, perWriter, writers = "race/cas", 10, 8
	if _, err := cb.PutIfAbsent(ctx, key, []byte("0")); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for g := 0; g < writers; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for done := 0; done < perWriter; {
				data, info, err := objstore.ReadAll(ctx, cb, key)
				if err != nil {
					t.Errorf("read: %v", err)
					return
				}
				n, _ := strconv.Atoi(string(data))
				_, err = cb.PutIfMatch(ctx, key, []byte(strconv.Itoa(n+1)), info.ETag)
				switch {
				case err == nil:
					done++
				case errors.Is(err, objstore.ErrPrecondition):
				default:
					t.Errorf("PutIfMatch: %v", err)
					return
				}
			}
		}()
	}
	wg.Wait()
	if got, _ := mustRead(t, ctx, cb, key); string(got) != strconv.Itoa(writers*perWriter) {
		t.Fatalf("counter = %s after %d increments: an update was lost", got, writers*perWriter)
	}
}

func testBucketClose(t *testing.T, b objstore.Bucket) {
	ctx := harness.Ctx(t)
	if _, err := b.PutIfAbsent(ctx, "close/k", []byte("x")); err != nil {
		t.Fatal(err)
	}
	if err := b.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if err := b.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	if _, err := b.PutIfAbsent(ctx, "close/k2", []byte("x")); !errors.Is(err, objstore.ErrClosed) {
		t.Fatalf("PutIfAbsent after Close: got %v, want ErrClosed", err)
	}
	if _, _, err := b.Get(ctx, "close/k", 0, -1); !errors.Is(err, objstore.ErrClosed) {
		t.Fatalf("Get after Close: got %v, want ErrClosed", err)
	}
	if _, err := b.List(ctx, objstore.ListOptions{}); !errors.Is(err, objstore.ErrClosed) {
		t.Fatalf("List after Close: got %v, want ErrClosed", err)
	}
}

// modelKeys never include one key that is a directory prefix of another, so
// path-based backends can hold any subset of them.
var modelKeys = []string{"m/a", "m/b", "m/c0", "m/c_1", "m/d/e", "m/d/f", "m/d-g", "m/e/0/1"}

func testBucketModel(rt *rapid.T, t *testing.T, newBucket BucketFactory) {
	b := newBucket(t)
	defer b.Close()
	ctx := harness.Ctx(t)
	model := map[string][]byte{}
	etags := map[string]string{} // last known ETag per live key
	cb, isCAS := b.(objstore.CASBucket)
	keyGen := rapid.SampledFrom(modelKeys)
	dataGen := rapid.SliceOfN(rapid.Byte(), 0, 64)

	actions := map[string]func(*rapid.T){
		"PutIfAbsent": func(rt *rapid.T) {
			k, d := keyGen.Draw(rt, "key"), dataGen.Draw(rt, "data")
			info, err := b.PutIfAbsent(ctx, k, d)
			if _, exists := model[k]; exists {
				if !errors.Is(err, objstore.ErrExists) {
					rt.Fatalf("PutIfAbsent(%q) over existing: got %v, want ErrExists", k, err)
				}
				return
			}
			if err != nil {
				rt.Fatalf("PutIfAbsent(%q): %v", k, err)
			}
			model[k], etags[k] = d, info.ETag
		},
		"Put": func(rt *rapid.T) {
			k, d := keyGen.Draw(rt, "key"), dataGen.Draw(rt, "data")
			info, err := b.Put(ctx, k, bytes.NewReader(d), int64(len(d)))
			if err != nil {
				rt.Fatalf("Put(%q): %v", k, err)
			}
			model[k], etags[k] = d, info.ETag
		},
		"Delete": func(rt *rapid.T) {
			k := keyGen.Draw(rt, "key")
			if err := b.Delete(ctx, k); err != nil {
				rt.Fatalf("Delete(%q): %v", k, err)
			}
			delete(model, k)
			delete(etags, k)
		},
		"Get": func(rt *rapid.T) {
			k := keyGen.Draw(rt, "key")
			off := rapid.Int64Range(0, 70).Draw(rt, "off")
			n := rapid.Int64Range(-1, 70).Draw(rt, "len")
			rc, info, err := b.Get(ctx, k, off, n)
			want, exists := model[k]
			if !exists {
				if !errors.Is(err, objstore.ErrNotFound) {
					rt.Fatalf("Get(%q) of missing key: got %v, want ErrNotFound", k, err)
				}
				return
			}
			if err != nil {
				rt.Fatalf("Get(%q): %v", k, err)
			}
			got, err := io.ReadAll(rc)
			rc.Close()
			if err != nil {
				rt.Fatalf("Get(%q) read: %v", k, err)
			}
			end := int64(len(want))
			if n >= 0 && off+n < end {
				end = off + n
			}
			var exp []byte
			if off < end {
				exp = want[off:end]
			}
			if !bytes.Equal(got, exp) {
				rt.Fatalf("Get(%q, %d, %d) = %x, want %x", k, off, n, got, exp)
			}
			if info.ETag != etags[k] {
				rt.Fatalf("Get(%q) ETag %q, want %q", k, info.ETag, etags[k])
			}
		},
		"List": func(rt *rapid.T) {
			prefix := rapid.SampledFrom([]string{"", "m/", "m/d", "m/d/", "m/c", "m/e/0/", "x"}).Draw(rt, "prefix")
			after := rapid.SampledFrom(append([]string{""}, modelKeys...)).Draw(rt, "startAfter")
			limit := rapid.IntRange(0, 4).Draw(rt, "limit")
			objs, err := b.List(ctx, objstore.ListOptions{Prefix: prefix, StartAfter: after, Limit: limit})
			if err != nil {
				rt.Fatalf("List: %v", err)
			}
			var want []string
			for k := range model {
				if strings.HasPrefix(k, prefix) && k > after {
					want = append(want, k)
				}
			}
			sort.Strings(want)
			if limit > 0 && len(want) > limit {
				want = want[:limit]
			}
			got := make([]string, len(objs))
			for i, o := range objs {
				got[i] = o.Key
				if o.Size != int64(len(model[o.Key])) {
					rt.Fatalf("List: %q size %d, want %d", o.Key, o.Size, len(model[o.Key]))
				}
			}
			if len(got) != len(want) || (len(got) > 0 && !slices.Equal(got, want)) {
				rt.Fatalf("List(%q, after %q, limit %d) = %q, want %q", prefix, after, limit, got, want)
			}
		},
		"PutIfMatch": func(rt *rapid.T) {
			if !isCAS {
				rt.Skip("not a CASBucket")
			}
			k, d := keyGen.Draw(rt, "key"), dataGen.Draw(rt, "data")
			stale := rapid.Bool().Draw(rt, "stale")
			etag := etags[k]
			if stale || etag == "" {
				etag = "00000000000000000000000000000000"
			}
			info, err := cb.PutIfMatch(ctx, k, d, etag)
			if _, exists := model[k]; !exists || etag != etags[k] {
				if !errors.Is(err, objstore.ErrPrecondition) {
					rt.Fatalf("PutIfMatch(%q) with wrong ETag: got %v, want ErrPrecondition", k, err)
				}
				return
			}
			if err != nil {
				rt.Fatalf("PutIfMatch(%q): %v", k, err)
			}
			model[k], etags[k] = d, info.ETag
		},
	}
	rt.Repeat(actions)
}
