// Package kernfile parses the kernel's small text files: /proc/meminfo,
// files holding one number, and "key value" files such as memory.stat.
package kernfile

import (
	"bufio"
	"bytes"
	"fmt"
	"iter"
	"math"
	"os"
	"strconv"
	"strings"
)

// ParseMeminfo parses /proc/meminfo into bytes by field name ("kB" values
// are scaled, unit-less ones kept). Lines it does not understand are
// skipped; an input with no field at all is an error.
func ParseMeminfo(data []byte) (map[string]uint64, error) {
	out := map[string]uint64{}
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		name, rest, ok := strings.Cut(sc.Text(), ":")
		if !ok {
			continue
		}
		fields := strings.Fields(rest)
		if len(fields) == 0 {
			continue
		}
		v, err := strconv.ParseUint(fields[0], 10, 64)
		if err != nil {
			continue
		}
		if len(fields) > 1 {
			if fields[1] != "kB" || v > (^uint64(0))/1024 {
				continue
			}
			v *= 1024
		}
		out[name] = v
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("meminfo: no fields")
	}
	return out, nil
}

// ParseKeyValues parses "key value" lines (memory.stat); lines that are
// not are skipped.
func ParseKeyValues(data []byte) map[string]uint64 {
	m := map[string]uint64{}
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), " ")
		if !ok {
			continue
		}
		if n, err := strconv.ParseUint(strings.TrimSpace(v), 10, 64); err == nil {
			m[k] = n
		}
	}
	return m
}

// ReadUint reads a file holding one unsigned number.
func ReadUint(path string) (uint64, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return 0, err
	}
	v, err := strconv.ParseUint(strings.TrimSpace(string(data)), 10, 64)
	if err != nil {
		return 0, fmt.Errorf("%s: %w", path, err)
	}
	return v, nil
}

// StatusFields yields the fields of a /proc/<pid>/status file in order:
// each line's name (before the first ':') and value (after it, trimmed of
// white space). Lines without ':' are skipped. Nothing is copied: the
// slices point into data.
func StatusFields(data []byte) iter.Seq2[[]byte, []byte] {
	return func(yield func([]byte, []byte) bool) {
		for line := range bytes.SplitSeq(data, []byte("\n")) {
			name, value, ok := bytes.Cut(line, []byte(":"))
			if ok && !yield(name, bytes.TrimSpace(value)) {
				return
			}
		}
	}
}

// StatusBytes reads a status value in kB ("1234 kB") as bytes.
func StatusBytes(value []byte) (uint64, bool) {
	kb, unit, _ := bytes.Cut(value, []byte(" "))
	n, err := strconv.ParseUint(string(kb), 10, 64)
	if err != nil || string(unit) != "kB" || n > math.MaxUint64>>10 {
		return 0, false
	}
	return n << 10, true
}
