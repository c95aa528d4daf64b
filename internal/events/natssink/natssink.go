// Package natssink delivers careflow's domain events (internal/events) to
// a NATS JetStream stream, a sink of the events publisher
// (serve --nats URL).
//
// Invariants:
//
//   - The stream is the operator's: Open makes sure it exists, creating it
//     with the subjects "<prefix>.>" when it is missing, and refuses a
//     stream that does not take those subjects rather than change it.
//   - Each event is one message on "<prefix>.<aggregate_type>.<kind>" (its
//     kind's dots make more tokens), its body the event as stored (ids and
//     states, never PHI) and its Nats-Msg-Id the event id, so JetStream
//     drops a re-delivery within the stream's duplicate window.
//   - Deliver keeps one message per aggregate in flight and publishes an
//     aggregate's next event only after the stream acknowledged the one
//     before, so the stream holds each aggregate's events in sequence
//     order; different aggregates' events are published together. A
//     failure refuses the call and the publisher hands the events again
//     later (at least once: its positions move only after every ack).
//   - While the connection is down Deliver fails at once instead of
//     waiting out a timeout per aggregate; nats.go reconnects forever.
package natssink

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/careflow/careflow/internal/events"
)

// Defaults of Config.
const (
	DefaultStream        = "CAREFLOW_EVENTS"
	DefaultSubjectPrefix = "careflow.events"
	DefaultAckTimeout    = 5 * time.Second
)

// Config configures a Sink.
type Config struct {
	// URL is the NATS server (nats://host:4222; several comma-separated).
	URL string
	// Stream is the JetStream stream's name (DefaultStream if empty).
	Stream string
	// SubjectPrefix starts every subject (DefaultSubjectPrefix if empty).
	SubjectPrefix string
	// AckTimeout bounds the wait for one message's acknowledgement.
	AckTimeout time.Duration
}

// Sink publishes events to a JetStream stream. It is safe for concurrent
// use; Close it when the publisher has stopped.
type Sink struct {
	cfg Config
	nc  *nats.Conn
	js  jetstream.JetStream
}

// ValidName reports whether name is a stream name JetStream takes.
func ValidName(name string) bool {
	return name != "" && len(name) <= 255 && !strings.ContainsAny(name, " \t\r\n.*>/\\")
}

// ValidPrefix reports whether prefix is a subject prefix of literal
// tokens ("careflow.events").
func ValidPrefix(prefix string) bool {
	if prefix == "" || len(prefix) > 200 {
		return false
	}
	for _, tok := range strings.Split(prefix, ".") {
		if tok == "" || strings.ContainsAny(tok, " \t\r\n*>") {
			return false
		}
	}
	return true
}

// Open connects to cfg.URL and makes sure the stream exists.
func Open(ctx context.Context, cfg Config) (*Sink, error) {
	if cfg.Stream == "" {
		cfg.Stream = DefaultStream
	}
	if cfg.SubjectPrefix == "" {
		cfg.SubjectPrefix = DefaultSubjectPrefix
	}
	if cfg.AckTimeout <= 0 {
		cfg.AckTimeout = DefaultAckTimeout
	}
	if !ValidName(cfg.Stream) {
		return nil, errors.New("nats: the stream name must be letters, digits, - and _ (no dots, spaces or wildcards)")
	}
	if !ValidPrefix(cfg.SubjectPrefix) {
		return nil, errors.New("nats: the subject prefix must be dot-separated tokens without wildcards or spaces")
	}
	nc, err := nats.Connect(cfg.URL, nats.Name("careflow"), nats.MaxReconnects(-1), nats.Timeout(5*time.Second))
	if err != nil {
		return nil, fmt.Errorf("nats: connect: %w", err)
	}
	js, err := jetstream.New(nc)
	if err != nil {
		nc.Close()
		return nil, fmt.Errorf("nats: %w", err)
	}
	s := &Sink{cfg: cfg, nc: nc, js: js}
	if err := s.ensureStream(ctx); err != nil {
		nc.Close()
		return nil, err
	}
	return s, nil
}

// Subjects is the subject filter of the stream's events.
func (s *Sink) Subjects() string { return s.cfg.SubjectPrefix + ".>" }

func (s *Sink) ensureStream(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	st, err := s.js.Stream(ctx, s.cfg.Stream)
	if errors.Is(err, jetstream.ErrStreamNotFound) {
		_, err = s.js.CreateStream(ctx, jetstream.StreamConfig{
			Name:        s.cfg.Stream,
			Description: "careflow's domain events (ids and states, never PHI)",
			Subjects:    []string{s.Subjects()},
			Storage:     jetstream.FileStorage,
			Duplicates:  2 * time.Minute,
		})
		if err != nil {
			return fmt.Errorf("nats: create the stream %s: %w", s.cfg.Stream, err)
		}
		return nil
	}
	if err != nil {
		return fmt.Errorf("nats: look the stream %s up: %w", s.cfg.Stream, err)
	}
	if subj := st.CachedInfo().Config.Subjects; !slices.Contains(subj, s.Subjects()) && !slices.Contains(subj, ">") {
		return fmt.Errorf("nats: the stream %s exists but does not take the subjects %s; add them or name another stream", s.cfg.Stream, s.Subjects())
	}
	return nil
}

// Subject is the subject an event is published on.
func (s *Sink) Subject(ev events.Event) string {
	return s.cfg.SubjectPrefix + "." + token(ev.AggregateType) + "." + kindTokens(ev.Kind)
}

// token makes s one subject token: characters outside letters, digits,
// - and _ become _.
func token(s string) string {
	b := []byte(s)
	for i, c := range b {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
			b[i] = '_'
		}
	}
	if len(b) == 0 {
		return "_"
	}
	return string(b)
}

// kindTokens keeps a kind's dots as token separators.
func kindTokens(kind string) string {
	parts := strings.Split(kind, ".")
	for i, p := range parts {
		parts[i] = token(p)
	}
	return strings.Join(parts, ".")
}

// Deliver implements events.Sink. Each aggregate has at most one message
// in flight: its next event is published only once the stream has
// acknowledged the one before, so the stream holds every aggregate's
// events in sequence order even when a publish fails part-way (the rest
// of the call is refused, and what was stored is dropped as a duplicate
// when handed again). Different aggregates' events go out together,
// asynchronously, a round at a time: round r publishes every aggregate's
// r-th event and waits for all their acknowledgements.
func (s *Sink) Deliver(ctx context.Context, evs []events.Event) error {
	if !s.nc.IsConnected() {
		return errors.New("nats: not connected (reconnecting)")
	}
	var (
		queues [][]events.Event
		index  = map[string]int{}
	)
	for _, ev := range evs {
		k := ev.AggregateType + "\x00" + ev.AggregateID
		i, ok := index[k]
		if !ok {
			i = len(queues)
			index[k] = i
			queues = append(queues, nil)
		}
		queues[i] = append(queues[i], ev)
	}
	for round := 0; ; round++ {
		type inflight struct {
			id  int64
			ack jetstream.PubAckFuture
		}
		var sent []inflight
		for _, q := range queues {
			if round >= len(q) {
				continue
			}
			ev := q[round]
			body, err := json.Marshal(ev)
			if err != nil {
				return err
			}
			msg := nats.NewMsg(s.Subject(ev))
			msg.Data = body
			msg.Header.Set(jetstream.MsgIDHeader, strconv.FormatInt(ev.ID, 10))
			f, err := s.js.PublishMsgAsync(msg)
			if err != nil {
				return fmt.Errorf("nats: publish event %d: %w", ev.ID, err)
			}
			sent = append(sent, inflight{ev.ID, f})
		}
		if len(sent) == 0 {
			return nil
		}
		timeout := time.NewTimer(s.cfg.AckTimeout)
		for _, f := range sent {
			select {
			case <-f.ack.Ok():
			case err := <-f.ack.Err():
				timeout.Stop()
				return fmt.Errorf("nats: publish event %d: %w", f.id, err)
			case <-timeout.C:
				return fmt.Errorf("nats: no acknowledgement of event %d within %v", f.id, s.cfg.AckTimeout)
			case <-ctx.Done():
				timeout.Stop()
				return ctx.Err()
			}
		}
		timeout.Stop()
	}
}

// Close disconnects: every publish was acknowledged, so nothing is pending.
func (s *Sink) Close() { s.nc.Close() }
