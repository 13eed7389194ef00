// Package etcdraft is a durable drop-in for go.etcd.io/raft/v3's
// MemoryStorage, kept in a woodpecker WAL log on object storage.
//
// A *Storage implements raft.Storage with MemoryStorage's semantics — a
// fresh store has FirstIndex 1, LastIndex 0, Term(0) = 0 and an empty,
// non-nil ConfState; errors are exactly raft.ErrCompacted,
// raft.ErrUnavailable, raft.ErrSnapOutOfDate and
// raft.ErrSnapshotTemporarilyUnavailable, never wrapped — and has
// MemoryStorage's mutators (Append, ApplySnapshot, CreateSnapshot, Compact,
// SetHardState), each durable on return. Where MemoryStorage panics on bad
// input (a gap in Append, Entries beyond the last index, CreateSnapshot or
// Compact beyond the last index) Storage returns an error. Reopening from
// the same stores restores everything.
//
// For a Raft loop, Save persists a whole Ready (or MsgStorageAppend) in
// the crash-safe order — snapshot, then entries, then HardState:
//
//	rd := rn.Ready()
//	if err := st.Save(rd.HardState, rd.Entries, rd.Snapshot); err != nil { ... }
//	send(rd.Messages); apply(rd.CommittedEntries); rn.Advance(rd)
//
// # Concurrency
//
// Every method is safe for concurrent use, as Config.AsyncStorageWrites
// needs: mutators are serialized among themselves; each durable step of a
// mutator becomes visible to readers at once, and a reader never sees an
// entry before it is durable. Reads of recent entries come from an
// in-memory tail cache (Options.TailCacheBytes) and never wait for a
// mutator's I/O; older ones go through the WAL and its fragment cache, and
// wait only while a mutator replaces entries (an overwrite or a snapshot
// install), so a result never mixes old and new entries.
//
// # Timeouts and failures
//
// raft.Storage has no context: every call's I/O is bounded by
// Options.CallTimeout. Each layer retries only what no other layer does
// (see "Which layer retries what" in package wal). The backends make one
// attempt per request. The WAL engine alone retries the writes it makes —
// fragment PUTs, fences, record updates — with backoff for up to its
// client's wal.Config.RetryBudget of outage (default 30s, each attempt
// bounded by RequestTimeout); the Storage never retries those itself. What
// the engine does not retry the Storage does: reads of entries (until
// CallTimeout) and the PUT of a snapshot's data (within the same
// RetryBudget). CallTimeout bounds all of it per call, so a call rides out
// at most that much outage whatever the layers do inside it; it is at
// least the RetryBudget — by default RetryBudget + 2×RequestTimeout (the
// budget counts from the first failure, which may come one RequestTimeout
// after the call started, and the last attempt may take one more); a
// shorter one is refused — so a call never gives up while the engine still
// retries.
//
// A write that still fails (the stores unreachable for longer than that)
// leaves the durable state uncertain — an object-store write may land after
// reporting an error — at one of the step boundaries listed under Crash
// safety. The mutator's error wraps ErrWriteFailed, and the Storage stays
// usable: the next mutator reopens the log and takes up what the reopened
// writer recovered, exactly as a new process would, then goes on, so a Raft
// loop that saves the same Ready again rides out an outage of any length
// without a restart. Reads are served throughout. Reopening is a
// conditional takeover naming the writer the Storage held: opening a
// Storage fences any earlier writer of the log (another process or a stale
// handle), and a Storage whose writer failed while another one opened the
// log never takes it back. Once fenced — found out by a write or by the
// reopen — every mutator fails with an error wrapping logstore.ErrFenced. Errors
// other than ErrWriteFailed and raft's sentinels are permanent.
//
// # Stored format
//
// The Raft log lives in the WAL log Options.LogName; entry i is at WAL
// index i, encoded as
//
//	[1 byte format = 1][uvarint generation][protobuf raftpb.Entry]
//
// The WAL log's metadata record (wal.Writer.SetMeta, one compare-and-swap
// per update, fenced by the writer's epoch) holds three values:
//
//	etcdraft.hs    [1 byte format = 1][protobuf raftpb.HardState]
//	etcdraft.log   [1 byte format = 1][uvarint off][uvarint term of off][uvarint generation]
//	etcdraft.snap  [1 byte format = 1][1 byte flags: bit 0 = Data non-nil][uvarint size]
//	               [4 bytes CRC-32C (Castagnoli) of the data, little endian]
//	               [uvarint key length][key][protobuf raftpb.SnapshotMetadata]
//
// "off" is the compaction point: the WAL holds exactly the entries (off,
// LastIndex]. A snapshot's data is one object among the log's blobs
// (logstore.Client.Blobs) under "snap/<index, 20 digits>_<16 random hex
// digits>" — for the embedded engine, "<prefix>/<log>/snap/..." in the
// bucket; the record holds that relative key (older records held the bucket
// key, which is read the same way),
// written before the metadata that references it and deleted once a newer
// snapshot is durable; empty data has no object. The generation is bumped by
// every applied snapshot, which replaces the whole log: WAL entries with an
// older generation are leftovers of a reset interrupted by a crash, and
// recovery discards them. Unknown format numbers are
// logstore.ErrUnsupportedVersion; damage is logstore.ErrCorrupt.
//
// # Crash safety
//
// Each step below is durable before the next starts. After a crash at any
// point the recovered state is one of the step boundaries, and
// HardState.Commit <= LastIndex holds at each of them:
//
//   - Save with a snapshot (and ApplySnapshot): PUT snapshot data; CAS
//     {snapshot, off = index, generation+1} (the old entries are void from
//     here on; without entries to save, the HardState rides in this CAS);
//     empty the WAL (CAS); append entries (one fragment PUT, after a CAS
//     restarting the WAL at the new index); CAS HardState; delete the old
//     snapshot object.
//   - Save without a snapshot: as Append, then CAS HardState once the
//     entries are durable (skipped when the HardState is unchanged).
//   - Append with an overlap: TruncateBack (CAS); append.
//   - Compact: CAS {off}; TruncateFront (CAS); recovery finishes an
//     interrupted truncation.
//   - CreateSnapshot: PUT data; CAS {snapshot}; delete the old object.
package etcdraft
