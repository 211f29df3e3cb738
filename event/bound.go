// SPDX-License-Identifier: Apache-2.0

package event

import (
	"slices"
	"strings"
	"unicode"
	"unicode/utf8"
)

// Bounds of what tenants write and oomtrace keeps: a pod's labels, an API
// object's message. The API server accepts objects of up to about 1.5 MiB;
// a node agent keeps every pod of its node and queues events by the
// thousand, so it keeps a bounded prefix.
const (
	MaxLabels       = 64
	MaxLabelBytes   = 8 << 10
	MaxMessageBytes = 8 << 10
)

// BoundLabels returns labels with at most MaxLabels entries and
// MaxLabelBytes of keys and values, the first by key (so the same labels
// always give the same result; a label too large for what is left is
// dropped, not cut), and whether anything was left out. It returns labels
// itself when they are within bounds.
func BoundLabels(labels map[string]string) (map[string]string, bool) {
	return BoundLabelsTo(labels, MaxLabels, MaxLabelBytes)
}

// BoundLabelsTo is BoundLabels with other bounds: at most maxLabels
// entries and maxBytes of keys and values.
func BoundLabelsTo(labels map[string]string, maxLabels, maxBytes int) (map[string]string, bool) {
	size := 0
	for k, v := range labels {
		size += len(k) + len(v)
	}
	if len(labels) <= maxLabels && size <= maxBytes {
		return labels, false
	}
	keys := make([]string, 0, len(labels))
	for k := range labels {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	out := make(map[string]string, min(len(keys), maxLabels))
	size = 0
	for _, k := range keys {
		v := labels[k]
		if len(out) == maxLabels {
			break
		}
		if size+len(k)+len(v) > maxBytes {
			continue
		}
		out[k] = v
		size += len(k) + len(v)
	}
	return out, true
}

// BoundText is s cut to at most max bytes at a character boundary, with
// invalid UTF-8 and control characters (a newline, an escape sequence's
// ESC) replaced by U+FFFD: text a tenant wrote, for a log line, an Event's
// note or a JSON field read by people.
func BoundText(s string, max int) string {
	clean := true
	for i, r := range s {
		if r == utf8.RuneError || isControl(r) || i >= max {
			clean = false
			break
		}
	}
	if clean && len(s) <= max {
		return s
	}
	var b strings.Builder
	b.Grow(min(len(s), max))
	for _, r := range s {
		if r == utf8.RuneError || isControl(r) {
			r = utf8.RuneError
		}
		if b.Len()+utf8.RuneLen(r) > max {
			break
		}
		b.WriteRune(r)
	}
	return b.String()
}

// isControl: C0 and C1 control characters and DEL, and the invisible
// format characters (Unicode's Cf: bidirectional overrides and isolates,
// zero-width spaces and joiners, the byte order mark), which make a
// terminal show text in another order than it is (kubectl describe an
// Event whose note quotes a tenant's process name). A tab is kept.
func isControl(r rune) bool {
	return r != '\t' && (r < 0x20 || r == 0x7f || (r >= 0x80 && r < 0xa0) || unicode.Is(unicode.Cf, r))
}
