// Package bucket is the meta.Store kept in an objstore.CASBucket, the
// zero-service default: each record is one object, created with
// If-None-Match and replaced with If-Match, carrying a random nonce so that
// ETags never repeat and an ambiguous write is resolved by reading it back
// (docs/design.md, decision 9). Linking it registers "bucket+<bucket URL>"
// with meta.Open.
package bucket
