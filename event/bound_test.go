// SPDX-License-Identifier: Apache-2.0

package event

import (
	"fmt"
	"strings"
	"testing"
	"unicode/utf8"
)

func TestBoundLabels(t *testing.T) {
	small := map[string]string{"app": "cart"}
	if got, cut := BoundLabels(small); cut || len(got) != 1 || got["app"] != "cart" {
		t.Errorf("small labels: %v %v", got, cut)
	}
	many := map[string]string{}
	for i := range 100 {
		many[fmt.Sprintf("l%03d", i)] = "v"
	}
	got, cut := BoundLabels(many)
	if !cut || len(got) != MaxLabels || got["l000"] != "v" || got["l063"] != "v" || got["l064"] != "" {
		t.Errorf("100 labels: %d kept, cut %v, want the first %d by key", len(got), cut, MaxLabels)
	}
	// One label larger than the whole budget is dropped, not cut; the
	// others are kept.
	big := map[string]string{"a": "1", "b": strings.Repeat("x", MaxLabelBytes), "c": "3"}
	got, cut = BoundLabels(big)
	if !cut || len(got) != 2 || got["a"] != "1" || got["c"] != "3" {
		t.Errorf("a huge label: %v %v", got, cut)
	}
}

func TestBoundText(t *testing.T) {
	for _, tt := range []struct{ in, want string }{
		{"plain", "plain"},
		{"tab\tkept", "tab\tkept"},
		{"new\nline\x1b[2J", "new\uFFFDline\uFFFD[2J"},
		{"bad \xff byte", "bad \uFFFD byte"},
		{"c1 \u0085", "c1 \uFFFD"},
		// Bidi overrides and isolates, zero-width characters, a BOM: a
		// name that reads "java" and is "avaj", or hides a character.
		{"\u202Eavaj\u202C", "\uFFFDavaj\uFFFD"},
		{"ja\u2066va\u2069", "ja\uFFFDva\uFFFD"},
		{"ja\u200Bva\u200D\u2060\uFEFF", "ja\uFFFDva\uFFFD\uFFFD\uFFFD"},
		{"\u200Fltr\u200E", "\uFFFDltr\uFFFD"},
		{"naïve café 日本", "naïve café 日本"},
	} {
		if got := BoundText(tt.in, 100); got != tt.want {
			t.Errorf("BoundText(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
	// Cut at a character, never inside one.
	got := BoundText(strings.Repeat("é", 10), 5)
	if got != "éé" || !utf8.ValidString(got) {
		t.Errorf("cut: %q", got)
	}
}
