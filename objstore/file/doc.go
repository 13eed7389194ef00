// Package file is the objstore.Bucket in a local directory, the embedded
// default: objects are written to a temporary file, fsynced, and linked
// into place (docs/design.md, decision 10), so a crash never leaves a torn
// object under a key and a conditional create has exactly one winner, also
// across processes. Linking it registers the "file://" scheme with
// objstore.Open: file:///abs/dir[?nosync=true][&nocreate=true].
package file
