package hashiraft

import (
	"context"
	"log/slog"

	"github.com/hashicorp/go-hclog"
)

// FromHclog returns a *slog.Logger writing to l, so the store logs through
// the same hclog.Logger as raft (raft.Config.Logger):
//
//	opts := hashiraft.Options{Logger: hashiraft.FromHclog(conf.Logger)}
func FromHclog(l hclog.Logger) *slog.Logger { return slog.New(&hclogHandler{l: l}) }

// hclogHandler is a slog.Handler forwarding records to an hclog.Logger.
type hclogHandler struct {
	l      hclog.Logger
	prefix string // group prefix of attribute keys ("a.b.")
}

func (h *hclogHandler) Enabled(_ context.Context, lvl slog.Level) bool {
	switch {
	case lvl >= slog.LevelError:
		return h.l.IsError()
	case lvl >= slog.LevelWarn:
		return h.l.IsWarn()
	case lvl >= slog.LevelInfo:
		return h.l.IsInfo()
	default:
		return h.l.IsDebug()
	}
}

func (h *hclogHandler) Handle(_ context.Context, r slog.Record) error {
	args := make([]any, 0, 2*r.NumAttrs())
	r.Attrs(func(a slog.Attr) bool {
		args = appendAttr(args, h.prefix, a)
		return true
	})
	switch {
	case r.Level >= slog.LevelError:
		h.l.Error(r.Message, args...)
	case r.Level >= slog.LevelWarn:
		h.l.Warn(r.Message, args...)
	case r.Level >= slog.LevelInfo:
		h.l.Info(r.Message, args...)
	default:
		h.l.Debug(r.Message, args...)
	}
	return nil
}

func appendAttr(args []any, prefix string, a slog.Attr) []any {
	v := a.Value.Resolve()
	if v.Kind() == slog.KindGroup {
		for _, g := range v.Group() {
			args = appendAttr(args, prefix+a.Key+".", g)
		}
		return args
	}
	if a.Key == "" {
		return args
	}
	return append(args, prefix+a.Key, v.Any())
}

func (h *hclogHandler) WithAttrs(attrs []slog.Attr) slog.Handler {
	var args []any
	for _, a := range attrs {
		args = appendAttr(args, h.prefix, a)
	}
	return &hclogHandler{l: h.l.With(args...), prefix: h.prefix}
}

func (h *hclogHandler) WithGroup(name string) slog.Handler {
	if name == "" {
		return h
	}
	return &hclogHandler{l: h.l, prefix: h.prefix + name + "."}
}
