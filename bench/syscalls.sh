#!/usr/bin/env bash
# Counts syscalls per StoreLogs call for each store, with strace -c -f.
#
# Each case runs twice, with -benchtime 100x and 1100x; the difference of the
# two counts is exactly 1000 StoreLogs calls (setup, open and close cancel
# out). fsync/fdatasync/write counts are exact; the total also holds the Go
# runtime's futex/nanosleep/epoll calls, which depend on timing (strace slows
# everything), so read it as an approximation.
# Objects a case creates are deleted by b.TempDir's cleanup, which the difference
# also counts: for ours-file that is one extra unlinkat per call.
#
# For ours-vgw, strace follows the versitygw child and the embedded etcd runs
# in the test process: its counts are client + S3 server + etcd.
#
# Usage: cd bench && ./syscalls.sh [store-regexp] [config-regexp]
#   e.g. ./syscalls.sh 'ours-file|raftwal|boltdb' '1x128B|64x4KiB'
# Needs strace (apt-get install -y strace).
set -euo pipefail
cd "$(dirname "$0")"
stores=${1:-'ours-file|raftwal|boltdb'}
configs=${2:-'1x128B|1x4KiB|64x128B|64x4KiB'}
command -v strace >/dev/null || { echo "strace not found (apt-get install -y strace)" >&2; exit 1; }

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
go test -c -o "$tmp/bench.test" .

count() { # $1 sub-benchmark, $2 N -> "syscall calls" lines
	strace -f -c -o "$tmp/trace" "$tmp/bench.test" -test.run '^$' \
		-test.bench "^BenchmarkStoreLogs\$/^$1\$" -test.benchtime "$2x" >/dev/null 2>&1
	awk '$NF != "total" && $1 ~ /^[0-9.]+$/ { print $NF, $4 }' "$tmp/trace"
}

printf '%-22s %8s %8s %8s %8s %8s %8s   %s\n' case fsync fdatsync write link+ren total "" "top syscalls per call"
for s in ours-file ours-vgw raftwal boltdb; do
	[[ $s =~ ^($stores)$ ]] || continue
	for c in 1x128B 1x4KiB 64x128B 64x4KiB; do
		[[ $c =~ ^($configs)$ ]] || continue
		count "$s/$c" 100 >"$tmp/a"
		count "$s/$c" 1100 >"$tmp/b"
		awk -v name="$s/$c" '
			NR == FNR { a[$1] = $2; next }
			{ b[$1] = $2 }
			END {
				for (k in b) { d[k] = (b[k] - a[k]) / 1000; tot += d[k] }
				w = d["write"] + d["pwrite64"] + d["writev"] + d["pwritev"]
				l = d["link"] + d["linkat"] + d["rename"] + d["renameat"] + d["renameat2"]
				top = ""
				n = 0
				for (k in d) if (d[k] >= 0.5) order[n++] = k
				for (i = 0; i < n; i++) for (j = i + 1; j < n; j++) if (d[order[j]] > d[order[i]]) { t = order[i]; order[i] = order[j]; order[j] = t }
				for (i = 0; i < n && i < 8; i++) top = top sprintf("%s=%.1f ", order[i], d[order[i]])
				printf "%-22s %8.2f %8.2f %8.2f %8.2f %8.1f   %s\n", name, d["fsync"], d["fdatasync"], w, l, tot, top
			}' "$tmp/a" "$tmp/b"
	done
done
