// Command woodpecker inspects woodpecker's buckets and metadata stores and
// runs a demo of the storage layers.
//
//	woodpecker demo --dir DIR          conditional writes and CAS on a local directory
//	woodpecker ls BUCKET-URL [PREFIX]  list objects
//	woodpecker cat BUCKET-URL KEY      print an object
//	woodpecker meta ls META-URL [PREFIX]
//
// Bucket URLs: mem://, file:///abs/dir, s3://bucket/prefix?endpoint=host:port.
// Metadata URLs: etcd://host:port/prefix, bucket+<bucket URL>.
//
// The commands that only read (ls, cat, meta ls) open a file:// bucket with
// nocreate=true, so a missing directory is an error naming it rather than a
// new, empty bucket; pass nocreate=false in the URL to override.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/url"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/woodpecker-wal/woodpecker/meta"
	metabucket "github.com/woodpecker-wal/woodpecker/meta/bucket"
	"github.com/woodpecker-wal/woodpecker/objstore"

	// Every backend woodpecker ships, so every URL an operator types works.
	_ "github.com/woodpecker-wal/woodpecker/meta/etcd"
	_ "github.com/woodpecker-wal/woodpecker/objstore/s3"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	if err := rootCmd().ExecuteContext(ctx); err != nil {
		fmt.Fprintln(os.Stderr, "woodpecker:", err)
		os.Exit(1)
	}
}

func rootCmd() *cobra.Command {
	root := &cobra.Command{
		Use:           "woodpecker",
		Short:         "Raft logs on object storage: inspection and demo tool",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.AddCommand(demoCmd(), lsCmd(), catCmd(), metaCmd(), benchCmd())
	return root
}

// listCmd is a command that takes a URL and an optional PREFIX (default
// "") and runs list on them, writing to the command's output.
func listCmd(use, short string, list func(ctx context.Context, w io.Writer, rawURL, prefix string) error) *cobra.Command {
	return &cobra.Command{
		Use:   use,
		Short: short,
		Args:  cobra.RangeArgs(1, 2),
		RunE: func(cmd *cobra.Command, args []string) error {
			prefix := ""
			if len(args) == 2 {
				prefix = args[1]
			}
			return list(cmd.Context(), cmd.OutOrStdout(), args[0], prefix)
		},
	}
}

func lsCmd() *cobra.Command {
	return listCmd("ls BUCKET-URL [PREFIX]", "List objects in key order", func(ctx context.Context, w io.Writer, rawURL, prefix string) error {
		b, err := objstore.Open(ctx, readOnlyBucketURL(rawURL))
		if err != nil {
			return err
		}
		defer b.Close()
		return objstore.ListAll(ctx, b, prefix, 0, func(o objstore.ObjectInfo) error {
			_, err := fmt.Fprintf(w, "%10d  %s  %s\n", o.Size, o.ETag, o.Key)
			return err
		})
	})
}

func catCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "cat BUCKET-URL KEY",
		Short: "Write an object's bytes to stdout",
		Args:  cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			b, err := objstore.Open(cmd.Context(), readOnlyBucketURL(args[0]))
			if err != nil {
				return err
			}
			defer b.Close()
			rc, _, err := b.Get(cmd.Context(), args[1], 0, -1)
			if err != nil {
				return err
			}
			defer rc.Close()
			_, err = io.Copy(cmd.OutOrStdout(), rc)
			return err
		},
	}
}

func metaCmd() *cobra.Command {
	m := &cobra.Command{Use: "meta", Short: "Inspect a metadata store"}
	m.AddCommand(listCmd("ls META-URL [PREFIX]", "List records with their versions and sizes", func(ctx context.Context, w io.Writer, rawURL, prefix string) error {
		s, err := meta.Open(ctx, readOnlyMetaURL(rawURL))
		if err != nil {
			return err
		}
		defer s.Close()
		recs, err := s.List(ctx, prefix)
		if err != nil {
			return err
		}
		for _, r := range recs {
			fmt.Fprintf(w, "%6d  %-34s  %s\n", len(r.Value), r.Version, r.Key)
		}
		return nil
	}))
	return m
}

// readOnlyBucketURL returns rawURL with nocreate=true added when it is a
// file:// URL that does not set nocreate itself, so that opening it creates
// nothing. Other URLs, and ones that do not parse (Open reports those),
// are returned unchanged.
func readOnlyBucketURL(rawURL string) string {
	u, err := url.Parse(rawURL)
	if err != nil || u.Scheme != "file" || u.Opaque != "" || (u.Host != "" && u.Host != "localhost") ||
		u.Query().Has("nocreate") {
		return rawURL // not a file URL, or one Open rejects: let it say why
	}
	if u.RawQuery != "" {
		u.RawQuery += "&"
	}
	u.RawQuery += "nocreate=true"
	return u.String()
}

// readOnlyMetaURL is readOnlyBucketURL for the bucket of a bucket+ metadata
// URL.
func readOnlyMetaURL(rawURL string) string {
	if rest, ok := strings.CutPrefix(rawURL, "bucket+"); ok {
		return "bucket+" + readOnlyBucketURL(rest)
	}
	return rawURL
}

func demoCmd() *cobra.Command {
	var dir string
	c := &cobra.Command{
		Use:   "demo",
		Short: "Show the storage layers at work on a local directory",
		RunE: func(cmd *cobra.Command, args []string) error {
			return demo(cmd.Context(), cmd.OutOrStdout(), dir)
		},
	}
	c.Flags().StringVar(&dir, "dir", filepath.Join(os.TempDir(), "woodpecker-demo"), "directory holding the demo bucket")
	return c
}

// demo shows what the WAL builds on: conditional creates that fence a
// second writer, and compare-and-swap metadata with no server at all.
func demo(ctx context.Context, w io.Writer, dir string) error {
	dir, err := filepath.Abs(dir)
	if err != nil {
		return err
	}
	url := "file://" + dir
	b, err := objstore.Open(ctx, url)
	if err != nil {
		return err
	}
	defer b.Close()
	s, err := metabucket.New(b, "meta")
	if err != nil {
		return err
	}
	fmt.Fprintf(w, "bucket: %s\n", url)

	// A run counter under compare-and-swap.
	run := 1
	rec, err := s.Get(ctx, "demo/runs")
	switch {
	case errors.Is(err, meta.ErrNotFound):
		if _, err := s.Create(ctx, "demo/runs", []byte("1")); err != nil {
			return err
		}
	case err != nil:
		return err
	default:
		run, _ = strconv.Atoi(string(rec.Value))
		run++
		if _, err := s.Update(ctx, "demo/runs", []byte(strconv.Itoa(run)), rec.Version); err != nil {
			return fmt.Errorf("another demo raced us: %w", err)
		}
	}
	fmt.Fprintf(w, "run #%d (a metadata record updated with If-Match)\n", run)

	// Dense, zero-padded fragment keys created with If-None-Match: *.
	start := time.Now()
	const n = 100
	for i := 0; i < n; i++ {
		key := fmt.Sprintf("demo/run/%020d/%020d", run, i)
		if _, err := b.PutIfAbsent(ctx, key, []byte(fmt.Sprintf("entry %d of run %d\n", i, run))); err != nil {
			return err
		}
	}
	el := time.Since(start)
	fmt.Fprintf(w, "wrote %d objects with conditional creates in %v (%.0f/s, each fsynced)\n", n, el.Round(time.Millisecond), n/el.Seconds())

	// A zombie writer trying to overwrite an existing key is refused.
	zombie := fmt.Sprintf("demo/run/%020d/%020d", run, 0)
	if _, err := b.PutIfAbsent(ctx, zombie, []byte("zombie")); errors.Is(err, objstore.ErrExists) {
		fmt.Fprintf(w, "a second writer's create of %s was refused: %v\n", zombie, err)
	}
	var objs int
	if err := objstore.ListAll(ctx, b, "demo/run/", 0, func(objstore.ObjectInfo) error { objs++; return nil }); err != nil {
		return err
	}
	fmt.Fprintf(w, "the bucket holds %d demo objects over %d runs; inspect with:\n  go run ./cmd/woodpecker ls %s demo/run/\n", objs, run, url)
	return nil
}
