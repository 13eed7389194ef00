// Package redact hides the credentials in storage URLs before they are
// logged or shown: woodpecker's binaries print the bucket and metadata URLs
// they were given, and those may carry an S3 secret key in the query or an
// etcd password in the user info.
package redact

import "net/url"

// URL returns raw with its password masked and its query, where the
// backends take their keys, replaced by "?…". A URL that does not parse is
// returned as "<malformed URL>": it cannot be told apart from a secret.
func URL(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return "<malformed URL>"
	}
	return Parsed(u)
}

// Parsed is URL for a parsed URL; a fragment, which may be the rest of a
// secret holding an unescaped '#', is replaced by "#…" too.
func Parsed(u *url.URL) string {
	v := *u
	v.RawQuery, v.ForceQuery, v.Fragment, v.RawFragment = "", false, "", ""
	out := v.Redacted()
	if u.RawQuery != "" || u.ForceQuery {
		out += "?…"
	}
	if u.Fragment != "" {
		out += "#…"
	}
	return out
}
