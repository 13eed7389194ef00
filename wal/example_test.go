package wal_test

import (
	"context"
	"fmt"
	"os"

	"github.com/woodpecker-wal/woodpecker/wal"
)

// A log on a local directory with metadata in the same directory: no server.
func Example() {
	ctx := context.Background()
	dir, _ := os.MkdirTemp("", "wal-example")
	defer os.RemoveAll(dir)

	c, err := wal.OpenURL(ctx, "file://"+dir, "", wal.Config{})
	if err != nil {
		panic(err)
	}
	defer c.Close()
	if err := c.CreateLog(ctx, "orders"); err != nil {
		panic(err)
	}
	log, _ := c.OpenLog(ctx, "orders")

	w, err := log.OpenWriter(ctx) // fences any earlier writer of "orders"
	if err != nil {
		panic(err)
	}
	// Durable on return.
	if err := w.Append(ctx, 1, [][]byte{[]byte("first"), []byte("second")}); err != nil {
		panic(err)
	}
	// Asynchronous: futures resolve in index order.
	f := w.AppendAsync(3, [][]byte{[]byte("third")})
	if err := f.Wait(ctx); err != nil {
		panic(err)
	}
	w.TruncateFront(ctx, 2) // entries below 2 are gone
	w.Close()

	r, _ := log.NewReader(ctx, wal.Earliest)
	defer r.Close()
	for range 2 {
		i, e, _ := r.Next(ctx)
		fmt.Println(i, string(e))
	}
	// Output:
	// 2 second
	// 3 third
}
