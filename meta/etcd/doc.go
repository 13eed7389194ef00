// Package etcd is the meta.Store (and meta.Watcher) on etcd v3: every
// write is one transaction on one key's ModRevision. The configuration, its
// URL form and TLS are in config.go, the calls in store.go, the watch in
// watch.go. Linking it registers the "etcd://" and "etcds://" schemes with
// meta.Open (see ConfigFromURL).
package etcd
