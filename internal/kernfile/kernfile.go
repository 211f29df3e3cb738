// Package kernfile parses the kernel's small text files: /proc/meminfo,
// files holding one number, and "key value" files such as memory.stat.
package kernfile

import (
	"bufio"
	"bytes"
	"fmt"
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
