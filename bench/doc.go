// Package bench compares woodpecker's hashicorp/raft LogStore
// (adapters/hashiraft) with raft-wal and raft-boltdb/v2. It is a separate
// module so that the comparison stores' dependencies stay out of the
// library's go.mod. See README.md.
package bench
