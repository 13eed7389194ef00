// Package s3 is the objstore.Bucket on any S3-compatible store, through
// minio-go: conditional creates with If-None-Match, compare-and-swap with
// If-Match, single-part PUTs for fragments and multipart for streams. The
// configuration, its URL form and TLS are in config.go; the translation of
// answers into objstore's sentinels (and the optional retries) in
// errors.go; the calls in bucket.go. Linking it registers the "s3://"
// scheme with objstore.Open (see ConfigFromURL).
package s3
