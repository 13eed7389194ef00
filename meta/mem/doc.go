// Package mem is the in-memory meta.Store (and meta.Watcher), for unit and
// property tests. Linking it registers the "mem://" scheme with meta.Open.
package mem
