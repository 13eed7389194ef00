package redact

import "testing"

func TestURL(t *testing.T) {
	cases := []struct{ in, want string }{
		{"s3://b/p?endpoint=h:1&secret_key=s", "s3://b/p?…"},
		{"etcd://user:pw@h:2379/kv", "etcd://user:xxxxx@h:2379/kv"},
		{"file:///data/node-1", "file:///data/node-1"},
		{"%zz://x?secret_key=s", "<malformed URL>"},
		{"etcd://h:2379/p?password=ab#S3CRET", "etcd://h:2379/p?…#…"},
		{"file:dir?secret_key=S3CRET", "file:dir?…"},
	}
	for _, c := range cases {
		if got := URL(c.in); got != c.want {
			t.Errorf("URL(%q) = %q, want %q", c.in, got, c.want)
		}
	}
}
