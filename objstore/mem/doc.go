// Package mem is the in-memory objstore.Bucket, for unit and property
// tests: safe for concurrent use, ETags the hex MD5 of the content as on S3,
// nothing kept past the process. Linking it registers the "mem://" scheme
// with objstore.Open (a new, empty bucket per Open).
package mem
