// Command kvstore is a replicated key-value store on Raft — hashicorp/raft
// or etcd raft, chosen with --engine — whose nodes keep all their state (log,
// term and vote, snapshots) in a bucket through woodpecker's adapters: a
// local directory by default, S3 with etcd metadata in production. A node
// that loses its machine comes back from its bucket alone.
//
// Run one node:
//
//	kvstore --engine=hashicorp --id=1 --http=127.0.0.1:8001 --raft=127.0.0.1:7001 \
//	    --peers=1=127.0.0.1:7001,2=127.0.0.1:7002,3=127.0.0.1:7003
//
// or a whole local cluster (what `make run` does), or a load generator:
//
//	kvstore cluster --engine=etcd
//	kvstore bench --addr=127.0.0.1:8001
//
// The HTTP API is described in internal/server; the storage flags take the
// adapters' URL pair: --bucket file:///abs/dir (metadata in the bucket, the
// default under --data-dir) or --bucket 's3://bucket/prefix?endpoint=host:port&…'
// with --meta etcd://host:port/prefix. Nodes may share a bucket and an etcd
// prefix: node N's log is named node_N.
package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/woodpecker-wal/woodpecker/examples/kvstore/internal/node"
	"github.com/woodpecker-wal/woodpecker/wal"

	// The example takes s3:// buckets and etcd:// metadata too.
	_ "github.com/woodpecker-wal/woodpecker/meta/etcd"
	_ "github.com/woodpecker-wal/woodpecker/objstore/s3"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := rootCmd().ExecuteContext(ctx); err != nil {
		fmt.Fprintln(os.Stderr, "kvstore:", err)
		var ee exitError
		if errors.As(err, &ee) {
			os.Exit(int(ee))
		}
		if errors.Is(err, wal.ErrFenced) {
			os.Exit(exitFenced)
		}
		os.Exit(1)
	}
}

// exitFenced is the exit code of a node stopped because another process
// took its log over: restarting it would take the log back (its first
// open is unconditional), so the cluster supervisor does not.
const exitFenced = 3

// exitError carries an exit code through cobra.
type exitError int

func (e exitError) Error() string { return fmt.Sprintf("exit status %d", int(e)) }

func rootCmd() *cobra.Command {
	root := nodeCmd()
	root.CompletionOptions.DisableDefaultCmd = true
	root.AddCommand(clusterCmd(), benchCmd())
	return root
}

// command returns a command that takes no arguments and runs run. Its
// errors are printed once, by main, without the usage.
func command(use, short, long string, run func(context.Context) error) *cobra.Command {
	return &cobra.Command{
		Use: use, Short: short, Long: long,
		Args:          cobra.NoArgs,
		SilenceUsage:  true,
		SilenceErrors: true,
		RunE:          func(cmd *cobra.Command, _ []string) error { return run(cmd.Context()) },
	}
}

// checkEngine checks an --engine flag.
func checkEngine(engine string) error {
	if engine != node.EngineHashicorp && engine != node.EngineEtcd {
		return fmt.Errorf("--engine %q: want %s or %s", engine, node.EngineHashicorp, node.EngineEtcd)
	}
	return nil
}
