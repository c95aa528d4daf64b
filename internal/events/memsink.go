package events

import (
	"context"
	"sync"
)

// MemorySink keeps what it is handed, in order: a sink for tests and for
// code that reacts to events in-process. Fail, if set, is asked about each
// call first; an error it returns refuses the whole call.
type MemorySink struct {
	Fail func(batch []Event) error

	mu     sync.Mutex
	events []Event
	calls  int
}

// Deliver implements Sink.
func (m *MemorySink) Deliver(_ context.Context, batch []Event) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.calls++
	if m.Fail != nil {
		if err := m.Fail(batch); err != nil {
			return err
		}
	}
	m.events = append(m.events, batch...)
	return nil
}

// Events returns a copy of everything taken so far, in delivery order.
func (m *MemorySink) Events() []Event {
	m.mu.Lock()
	defer m.mu.Unlock()
	return append([]Event(nil), m.events...)
}

// Calls counts Deliver calls, refused ones included.
func (m *MemorySink) Calls() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.calls
}
