// SPDX-License-Identifier: Apache-2.0

package event

import (
	"bufio"
	"bytes"
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"reflect"
	"sort"
	"strings"
	"testing"

	"github.com/santhosh-tekuri/jsonschema/v6"
)

var update = flag.Bool("update", false, "write docs/events.schema.json from the event types")

const schemaFile = "../docs/events.schema.json"

// lineTypes are the events written as JSON lines, by their type field.
var lineTypes = []struct {
	name string
	v    any
}{
	{TypeOOMKill, OOMKill{}},
	{TypeCommitRefusal, CommitRefusal{}},
	{TypeMemoryPressure, MemoryPressure{}},
	{TypeEviction, Eviction{}},
	{TypeNodeCondition, NodeCondition{}},
	{TypeUserspaceKill, UserspaceKill{}},
	{TypeCgroupPressure, CgroupPressure{}},
}

// schemaOf is the JSON Schema of how encoding/json writes values of t: a
// field with omitempty may be absent, a pointer, slice or map without it
// may be null; no field but those of the type.
func schemaOf(t reflect.Type, defs map[string]any) map[string]any {
	if t == reflect.TypeFor[Time]() {
		return map[string]any{"type": "string", "format": "date-time"}
	}
	switch t.Kind() {
	case reflect.Pointer:
		return schemaOf(t.Elem(), defs)
	case reflect.String:
		return map[string]any{"type": "string"}
	case reflect.Bool:
		return map[string]any{"type": "boolean"}
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		return map[string]any{"type": "integer"}
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return map[string]any{"type": "integer", "minimum": 0}
	case reflect.Float32, reflect.Float64:
		return map[string]any{"type": "number"}
	case reflect.Slice:
		return map[string]any{"type": "array", "items": schemaOf(t.Elem(), defs)}
	case reflect.Map:
		return map[string]any{"type": "object", "additionalProperties": schemaOf(t.Elem(), defs)}
	case reflect.Struct:
		name := t.Name()
		if _, ok := defs[name]; !ok {
			defs[name] = nil // a placeholder against recursion
			props, required := map[string]any{}, []string{}
			structFields(t, props, &required, defs)
			sort.Strings(required)
			defs[name] = map[string]any{"type": "object", "properties": props, "required": required, "additionalProperties": false}
		}
		return map[string]any{"$ref": "#/$defs/" + name}
	}
	panic("no schema for " + t.String())
}

func structFields(t reflect.Type, props map[string]any, required *[]string, defs map[string]any) {
	for i := range t.NumField() {
		f := t.Field(i)
		if !f.IsExported() {
			continue
		}
		tag := f.Tag.Get("json")
		name, opts, _ := strings.Cut(tag, ",")
		if name == "-" {
			continue
		}
		if f.Anonymous && name == "" {
			// Embedded: its fields are the parent's (a nil pointer writes
			// none, so they are all optional then).
			sub := map[string]any{}
			var subReq []string
			et := f.Type
			if et.Kind() == reflect.Pointer {
				et = et.Elem()
			}
			structFields(et, sub, &subReq, defs)
			for k, v := range sub {
				props[k] = v
			}
			if f.Type.Kind() != reflect.Pointer {
				*required = append(*required, subReq...)
			}
			continue
		}
		if name == "" {
			name = f.Name
		}
		s := schemaOf(f.Type, defs)
		omitempty := strings.Contains(opts, "omitempty")
		if k := f.Type.Kind(); !omitempty && (k == reflect.Pointer || k == reflect.Slice || k == reflect.Map) {
			s = map[string]any{"anyOf": []any{s, map[string]any{"type": "null"}}}
		}
		props[name] = s
		if !omitempty {
			*required = append(*required, name)
		}
	}
}

func buildSchema() map[string]any {
	// One branch per type: a line of that type must match its schema, and
	// a line of no known type matches none.
	defs := map[string]any{}
	var anyOf []any
	for _, lt := range lineTypes {
		anyOf = append(anyOf, map[string]any{
			"if":   map[string]any{"properties": map[string]any{"type": map[string]any{"const": lt.name}}, "required": []string{"type"}},
			"then": schemaOf(reflect.TypeOf(lt.v), defs),
			"else": false,
		})
	}
	return map[string]any{
		"$schema":     "https://json-schema.org/draft/2020-12/schema",
		"$id":         "https://github.com/oomtrace/oomtrace/blob/main/docs/events.schema.json",
		"title":       "oomtrace's JSON lines",
		"description": "One event per line, by its type; every field is described in docs/events.md. Generated from the event package's types (go test ./event -update).",
		"anyOf":       anyOf,
		"$defs":       defs,
	}
}

// TestSchemaIsCurrent: docs/events.schema.json is what the event types
// write (go test ./event -update writes it again).
func TestSchemaIsCurrent(t *testing.T) {
	want, err := json.MarshalIndent(buildSchema(), "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	want = append(want, '\n')
	if *update {
		if err := os.WriteFile(schemaFile, want, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	got, err := os.ReadFile(schemaFile)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("%s is not what the event types write: go test ./event -update", schemaFile)
	}
}

func compileSchema(t *testing.T) *jsonschema.Schema {
	t.Helper()
	c := jsonschema.NewCompiler()
	abs, err := filepath.Abs(schemaFile)
	if err != nil {
		t.Fatal(err)
	}
	s, err := c.Compile(abs)
	if err != nil {
		t.Fatalf("compile %s: %v", schemaFile, err)
	}
	return s
}

// goldenLines are the events of the documentation, taken from real runs:
// each json code block of docs/events.md that is one object (the first
// example is one event across lines), and each line of the others that is
// one event (fragments and lines shortened with … are not).
func goldenLines(t *testing.T) []string {
	t.Helper()
	data, err := os.ReadFile("../docs/events.md")
	if err != nil {
		t.Fatal(err)
	}
	var lines []string
	var block strings.Builder
	in := false
	s := bufio.NewScanner(bytes.NewReader(data))
	s.Buffer(nil, 1<<20)
	for s.Scan() {
		l := s.Text()
		switch {
		case l == "```json":
			in = true
			block.Reset()
		case in && l == "```":
			in = false
			text := block.String()
			if json.Valid([]byte(text)) {
				lines = append(lines, text)
				continue
			}
			// A block of lines; lines shortened with … are no events.
			for _, one := range strings.Split(strings.TrimSpace(text), "\n") {
				if strings.HasPrefix(one, `{"type":`) && json.Valid([]byte(one)) {
					lines = append(lines, one)
				}
			}
		case in:
			block.WriteString(l + "\n")
		}
	}
	return lines
}

// TestGoldenLinesMatchTheSchema: every example event of docs/events.md
// (lines of real runs) is valid under the schema, and so is each kind of
// event as the types write it; a field the schema does not know, a
// missing one, or a wrong type is not.
func TestGoldenLinesMatchTheSchema(t *testing.T) {
	schema := compileSchema(t)
	lines := goldenLines(t)
	if len(lines) < 5 {
		t.Fatalf("%d example lines in docs/events.md", len(lines))
	}
	t.Logf("%d example events in docs/events.md", len(lines))
	seen := map[string]bool{}
	for i, l := range lines {
		v, err := jsonschema.UnmarshalJSON(strings.NewReader(l))
		if err != nil {
			t.Errorf("example %d is not JSON: %v\n%.200s", i, err, l)
			continue
		}
		if err := schema.Validate(v); err != nil {
			t.Errorf("example %d: %v\n%.300s", i, err, l)
		}
		if m, ok := v.(map[string]any); ok {
			seen[m["type"].(string)] = true
		}
	}
	for _, lt := range []string{TypeOOMKill, TypeCommitRefusal, TypeEviction} {
		if !seen[lt] {
			t.Errorf("docs/events.md has no %s example", lt)
		}
	}
	for _, bad := range []string{
		`{"type":"oom_kill"}`,
		`{"type":"no_such_event"}`,
		strings.Replace(lines[0], `"type":"oom_kill"`, `"type":"oom_kill","extra":1`, 1),
		strings.Replace(lines[0], `"seq":41`, `"seq":"41"`, 1),
	} {
		v, err := jsonschema.UnmarshalJSON(strings.NewReader(bad))
		if err != nil {
			t.Fatal(err)
		}
		if schema.Validate(v) == nil {
			t.Errorf("the schema takes %.120s", bad)
		}
	}
}
