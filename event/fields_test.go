// SPDX-License-Identifier: Apache-2.0

package event

import (
	"bufio"
	"os"
	"reflect"
	"slices"
	"strings"
	"testing"
)

// fieldsFile lists every field of every line type, with its JSON type:
// the fields the lines have ever had. A field is only ever added (the
// changelog's promise): removing or retyping one is a change to this
// file by hand, said under Removed or Changed in CHANGELOG.md.
const fieldsFile = "testdata/fields.txt"

// TestFieldsOnlyAdded: every field in testdata/fields.txt is still
// written, with the same JSON type. New fields are added to the file by
// go test ./event -update; a field gone or retyped fails, -update or not.
func TestFieldsOnlyAdded(t *testing.T) {
	var now []string
	for _, lt := range lineTypes {
		now = append(now, fieldLines(lt.name, "", reflect.TypeOf(lt.v), map[reflect.Type]bool{})...)
	}
	f, err := os.Open(fieldsFile)
	if err != nil && !*update {
		t.Fatal(err)
	}
	var before []string
	if f != nil {
		s := bufio.NewScanner(f)
		for s.Scan() {
			if l := s.Text(); l != "" && !strings.HasPrefix(l, "#") {
				before = append(before, l)
			}
		}
		f.Close()
		if err := s.Err(); err != nil {
			t.Fatal(err)
		}
	}
	for _, l := range before {
		if !slices.Contains(now, l) {
			t.Errorf("%s is no longer written as it was: a field is only ever added (fix the code, or say the break in CHANGELOG.md and edit %s by hand)", l, fieldsFile)
		}
	}
	var added []string
	for _, l := range now {
		if !slices.Contains(before, l) {
			added = append(added, l)
		}
	}
	if len(added) == 0 {
		return
	}
	if !*update {
		t.Errorf("new fields not in %s (go test ./event -update adds them): %s", fieldsFile, strings.Join(added, "; "))
		return
	}
	all := append(before, added...)
	slices.Sort(all)
	head := "# Every field of every line type and its JSON type (TestFieldsOnlyAdded).\n"
	if err := os.WriteFile(fieldsFile, []byte(head+strings.Join(all, "\n")+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
}

// fieldLines are "type path json-type" for t's fields below prefix, as
// encoding/json writes them (an embedded struct's fields are its
// parent's).
func fieldLines(lineType, prefix string, t reflect.Type, seen map[reflect.Type]bool) []string {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if t.Kind() != reflect.Struct || t == reflect.TypeFor[Time]() || seen[t] {
		return nil
	}
	seen[t] = true
	defer delete(seen, t)
	var out []string
	for i := range t.NumField() {
		f := t.Field(i)
		if !f.IsExported() {
			continue
		}
		name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
		if name == "-" {
			continue
		}
		if f.Anonymous && name == "" {
			out = append(out, fieldLines(lineType, prefix, f.Type, seen)...)
			continue
		}
		if name == "" {
			name = f.Name
		}
		path := prefix + name
		ft := f.Type
		for ft.Kind() == reflect.Pointer {
			ft = ft.Elem()
		}
		out = append(out, lineType+" "+path+" "+jsonKind(ft))
		switch ft.Kind() {
		case reflect.Slice:
			out = append(out, fieldLines(lineType, path+"[].", ft.Elem(), seen)...)
		case reflect.Map:
			out = append(out, fieldLines(lineType, path+"{}.", ft.Elem(), seen)...)
		default:
			out = append(out, fieldLines(lineType, path+".", ft, seen)...)
		}
	}
	return out
}

// jsonKind is the JSON type encoding/json writes for t.
func jsonKind(t reflect.Type) string {
	if t == reflect.TypeFor[Time]() {
		return "string"
	}
	switch t.Kind() {
	case reflect.String:
		return "string"
	case reflect.Bool:
		return "boolean"
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return "integer"
	case reflect.Float32, reflect.Float64:
		return "number"
	case reflect.Slice:
		return "array"
	case reflect.Map, reflect.Struct:
		return "object"
	}
	return t.Kind().String()
}
