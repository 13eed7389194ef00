// Package hashiraft stores a github.com/hashicorp/raft node's log, stable
// values and snapshots on object storage through woodpecker's WAL: a
// drop-in for raft-boltdb or raft-wal.
//
//	store, err := hashiraft.Open(ctx, "s3://bucket/node1?endpoint=10.0.0.5:9000", "etcd://10.0.0.1:2379/app", hashiraft.Options{})
//	r, err := raft.NewRaft(conf, fsm, store, store, store.Snapshots(), transport)
//
// A Store implements raft.LogStore, raft.StableStore, raft.MonotonicLogStore
// and raft.CommitTrackingLogStore over one WAL log; Store.Snapshots is a
// raft.SnapshotStore in the same bucket. A node needs nothing but its bucket
// (and metadata store) to come back: a fresh process opening the same URLs
// and log name sees the same log, term, vote and snapshots.
//
// # Contract (docs/raft-contracts.md)
//
//   - StoreLogs, DeleteRange, Set and SetUint64 are durable when they return.
//     StoreLogs is all or nothing: a write whose outcome is unknown (a PUT
//     that timed out but may have landed) is resolved inside the call by
//     reopening the WAL writer, which recovers exactly what landed, and
//     appending the rest. Only a failure that outlasts Options.CallTimeout is
//     returned; a prefix of the batch may then have landed, and the next
//     mutation removes it first, restoring the log raft last saw
//     acknowledged (a crash before that leaves it as an uncommitted tail).
//   - GetLog returns exactly raft.ErrLogNotFound, unwrapped, for an index
//     outside the log (raft compares with ==), and retries every transient
//     failure until Options.CallTimeout: raft panics when GetLog fails during
//     NewRaft or apply. DeleteRange retries the same way, because raft ignores
//     a failed wipe after installing a snapshot.
//   - All six raft.Log fields round-trip; AppendedAt is stored as seconds and
//     nanoseconds, and the zero time (what BootstrapCluster stores) comes
//     back as the zero time. Returned slices are the caller's.
//   - The log is dense (IsMonotonic is true). DeleteRange takes a prefix, a
//     suffix or everything; a range strictly inside the log is an error. After
//     everything is deleted the next StoreLogs may start at any index.
//     StoreLogs at or below LastIndex first removes the suffix from there;
//     StoreLogs beyond LastIndex+1 (a gap, which a monotonic store never
//     holds) drops the whole log first, as raft would have after restoring a
//     snapshot.
//   - The stable values (CurrentTerm, LastVoteTerm, LastVoteCand) live in the
//     WAL log's metadata record and change by one compare-and-swap under the
//     writer's epoch: once another process opened the log (fencing this one),
//     this Store can change neither the log nor the values, so a zombie never
//     sets the term backwards. Reads come from memory. A missing key reads as
//     (nil, nil) and (0, nil), as with raft-wal.
//   - The commit index staged with StageCommitIndex is stored inside the
//     entries of the next StoreLogs call: it is exactly as durable as they
//     are, costs no extra request, and GetCommitIndex (the one stored with the
//     last entry) never exceeds LastIndex.
//   - FirstIndex and LastIndex read memory and never fail. GetLog serves
//     recent entries from a tail cache (Options.TailCacheBytes) and older ones
//     through the WAL's fragment cache with prefetch.
//   - Every method is safe for concurrent use; mutations are serialized.
//   - What raft compacts away is eventually deleted by the client's
//     garbage collector, which runs every wal.Config.GCInterval (default a
//     minute; a negative value leaves it to the caller's Client.GC).
//
// # Retries and timeouts
//
// Each layer retries only what no other layer does (see "Which layer
// retries what" in package wal). The backends make one attempt per
// request. The WAL engine alone retries the writes it makes — fragment
// PUTs, fences, record updates — with backoff for up to its client's
// wal.Config.RetryBudget of outage (default 30s, each attempt bounded by
// RequestTimeout), and only then breaks the writer (logstore.ErrBroken). The
// Store never retries those writes itself: when the writer breaks, or a
// call runs out of time with an operation still queued, it reopens the log
// — a conditional takeover naming the incarnation and epoch of the writer
// it held, so that a log another process opened meanwhile is never taken
// back (the Store is fenced instead, for good) — and the reopened writer's
// recovery tells it what is left to do. What the engine does not retry the
// Store retries itself: reads (GetLog, GetCommitIndex) and the snapshot
// objects' requests. All of it runs within one Options.CallTimeout per
// call (per chunk or metadata request for snapshots): that bounds the
// outage a call rides out, whatever the layers do inside it, and it is at
// least the RetryBudget — by default RetryBudget + 2×RequestTimeout (the
// budget counts from the first failure, which may come one RequestTimeout
// after the call started, and the last attempt may take one more); a
// shorter one is refused — so a call never gives up while the engine is
// still retrying. An outage longer than that fails the call; once the
// stores are back, the next call reopens the writer and carries on.
//
// # Snapshots
//
// A snapshot is written as chunk objects of Options.SnapshotChunkSize while
// the FSM writes it (neither a sink nor a reader holds more than one chunk),
// then published by writing its metadata object last. List ignores anything
// without metadata, so a crash or Cancel leaves nothing visible; Size is
// exact and every chunk is checked against its CRC-32C before its bytes are
// returned. After each new snapshot the Options.SnapshotRetain newest are
// kept and the rest deleted (not while a reader in this process has them
// open); chunks of abandoned sinks older than the oldest kept snapshot are
// deleted too.
//
// # Storage assumptions
//
// Those of the WAL (see package wal): conditional create on the bucket and
// compare-and-swap on the metadata store. Snapshots need only plain PUT,
// GET, LIST and DELETE, and are not fenced: a zombie process may still
// publish one, which is harmless because a snapshot only ever holds
// committed state.
//
// The stored formats are described in FORMAT.md.
package hashiraft
