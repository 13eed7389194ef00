package file

// WithTestHooks returns opts with the process a bucket sees replaced: pid
// is its pid (in its temporary file names), alive says whether another pid
// is running (the sweep removes the temporary files of those that are
// not), random supplies the randomness of temporary file names and ETags.
func WithTestHooks(opts Options, pid int, alive func(pid int) bool, random func() uint64) Options {
	opts.hooks = &testHooks{pid: pid, alive: alive, random: random}
	return opts
}
