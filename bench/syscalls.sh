#!/usr/bin/env bash
# Counts syscalls per call for each store, with strace.
#
# Each case runs twice, with -benchtime 100x and 1100x; the difference of the
# two counts is exactly 1000 calls (setup, open, warm-up and close cancel
# out). fsync/fdatasync/write counts are exact; the total also holds the Go
# runtime's futex/nanosleep/epoll calls, which depend on timing (strace slows
# everything), so read it as an approximation.
# Objects a case creates are deleted by b.TempDir's cleanup, which the difference
# also counts: for ours-file that is one extra unlinkat per call.
#
# Table 1: StoreLogs (strace -c -f), every store.
#
# For ours-vgw, strace follows the versitygw child and the embedded etcd runs
# in the test process: its counts are client + S3 server + etcd.
#
# Table 2: the fsyncs, fdatasyncs and writes per call by the file they hit
# (strace -f -y), for ours-tiered's StoreLogs and for the etcd raft Save
# contenders (BenchmarkSave, one contender at a time with -contenders):
#   seg     the tiered writer's local segment (*.seg): the group commits
#   local   the rest of LocalDir: identity, directory fsyncs, segment
#           zero-fill (*.seg.tmp, spare.tmp)
#   bucket  the file:// bucket: fragment uploads, metadata records (the
#           log record's compare-and-swap of a SetMeta)
#   etcdwal etcd's WAL files and directory
# For the tiered cases the bucket column includes the background uploader,
# whose work depends on time (one upload per UploadInterval = 1s, or per
# 8 MiB); under strace 1000 calls take about 1-10 s.
# The local segment rolls every 16 MiB (LocalSegmentSize default): its
# rename, directory fsync, base record and the zero-fill of the next spare
# (or the recycling of an uploaded segment) are counted per call like the
# rest, amortized (every ~64 calls at 64 x 4 KiB).
#
# Usage: cd bench && ./syscalls.sh [store-regexp] [config-regexp] [save-contender-regexp] [save-shape-regexp]
#   e.g. ./syscalls.sh 'ours-file|raftwal|boltdb' '1x128B|64x4KiB'
#        ./syscalls.sh ours-tiered '1x128B' etcdwal '1x128B'
#        ./syscalls.sh none none             # table 2's Save cases only
# Needs strace (apt-get install -y strace).
set -euo pipefail
cd "$(dirname "$0")"
stores=${1:-'ours-file|ours-tiered|raftwal|boltdb'}
configs=${2:-'1x128B|1x4KiB|64x128B|64x4KiB'}
savers=${3:-'etcdraft-tiered|etcdraft-tiered-samehs|etcdwal|etcdraft-file'}
saveshapes=${4:-'1x128B|64x128B|16x4KiB'}
command -v strace >/dev/null || { echo "strace not found (apt-get install -y strace)" >&2; exit 1; }

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
go test -c -o "$tmp/bench.test" .

run() { # $1 output, $2 strace options, $3 bench regexp, $4 N, $5... extra test flags
	local out=$1 opts=$2 bench=$3 n=$4
	shift 4
	# shellcheck disable=SC2086
	strace $opts -o "$out" "$tmp/bench.test" -test.run '^$' -test.bench "$bench" -test.benchtime "${n}x" "$@" >/dev/null 2>&1
}

count() { # $1 bench regexp, $2 N, $3... extra flags -> "syscall calls" lines
	run "$tmp/trace" "-f -c" "$@"
	awk '$NF != "total" && $1 ~ /^[0-9.]+$/ { print $NF, $4 }' "$tmp/trace"
}

printf '%-22s %8s %8s %8s %8s %8s   %s\n' case fsync fdatsync write link+ren total "top syscalls per call"
for s in ours-file ours-tiered ours-vgw raftwal boltdb; do
	[[ $s =~ ^($stores)$ ]] || continue
	for c in 1x128B 1x4KiB 64x128B 64x4KiB; do
		[[ $c =~ ^($configs)$ ]] || continue
		count "^BenchmarkStoreLogs\$/^$s/$c\$" 100 >"$tmp/a"
		count "^BenchmarkStoreLogs\$/^$s/$c\$" 1100 >"$tmp/b"
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

# ---- table 2: by file ----

bypath() { # $1 bench regexp, $2 N, $3... extra flags -> "syscall:category count" lines
	run "$tmp/ptrace" "-f -y -e trace=fsync,fdatasync,write,pwrite64" "$@"
	awk '
		match($0, /^[0-9]+ +(fsync|fdatasync|write|pwrite64)\(/) {
			call = substr($0, RSTART, RLENGTH)
			sub(/^[0-9]+ +/, "", call); sub(/\($/, "", call)
			if (call == "pwrite64") call = "write"
			path = ""
			if (match($0, /<[^>]*>/)) path = substr($0, RSTART + 1, RLENGTH - 2)
			if (path !~ /^\//) next # pipes, sockets, eventfds
			if (path ~ /\/local\/.*\.seg$/) cat = "seg"
			else if (path ~ /\/local(\/|$)/) cat = "local"
			else if (path ~ /\/bucket(\/|$)/) cat = "bucket"
			else if (path ~ /\/etcdwal(\/|$)/) cat = "etcdwal"
			else cat = "other"
			if (call == "fsync" || call == "fdatasync") n[call ":" cat]++
			else n["write:" cat]++
		}
		END { for (k in n) print k, n[k] }' "$tmp/ptrace"
}

diffpath() { # $1 name; files a, b
	awk -v name="$1" '
		NR == FNR { a[$1] = $2; next }
		{ b[$1] = $2 }
		END {
			for (k in b) d[k] = (b[k] - a[k]) / 1000
			printf "%-38s %7.2f %7.2f %7.2f %7.2f %7.2f %7.2f %7.2f %7.2f\n", name,
				d["fdatasync:seg"], d["write:seg"],
				d["fsync:local"] + d["fdatasync:local"],
				d["fsync:bucket"] + d["fdatasync:bucket"], d["write:bucket"],
				d["fsync:etcdwal"] + d["fdatasync:etcdwal"], d["write:etcdwal"],
				d["fsync:other"] + d["fdatasync:other"]
		}' "$tmp/a" "$tmp/b"
}

echo
printf '%-38s %7s %7s %7s %7s %7s %7s %7s %7s\n' "case (per call)" seg-sync seg-wr local-sy bkt-sync bkt-wr etcd-sy etcd-wr other-sy
for c in 1x128B 1x4KiB 64x128B 64x4KiB; do
	[[ ours-tiered =~ ^($stores)$ && $c =~ ^($configs)$ ]] || continue
	bypath "^BenchmarkStoreLogs\$/^ours-tiered/$c\$" 100 >"$tmp/a"
	bypath "^BenchmarkStoreLogs\$/^ours-tiered/$c\$" 1100 >"$tmp/b"
	diffpath "StoreLogs/ours-tiered/$c"
done
for c in 1x128B 64x128B 16x4KiB; do
	[[ $c =~ ^($saveshapes)$ ]] || continue
	for s in etcdraft-tiered etcdraft-tiered-samehs etcdwal etcdraft-file; do
		[[ $s =~ ^($savers)$ ]] || continue
		bypath "^BenchmarkSave\$/^$c\$" 100 -contenders "^$s\$" >"$tmp/a"
		bypath "^BenchmarkSave\$/^$c\$" 1100 -contenders "^$s\$" >"$tmp/b"
		diffpath "Save/$c/$s"
	done
done
