// SPDX-License-Identifier: Apache-2.0

package tracer

import (
	"strings"
	"testing"
)

// TestUnknownHookRejected: a hook choice that does not exist is refused by
// New before anything is loaded (no privilege needed to be told).
func TestUnknownHookRejected(t *testing.T) {
	_, err := New(Config{VictimHook: "bogus"})
	if err == nil || !strings.Contains(err.Error(), `victim hook "bogus"`) {
		t.Fatalf("New with an unknown victim hook: %v", err)
	}
	if err := (Config{RingBufferBytes: 3000}).Validate(); err == nil {
		t.Error("a ring buffer of 3000 bytes validated")
	}
}
