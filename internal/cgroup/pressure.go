// SPDX-License-Identifier: Apache-2.0

package cgroup

import (
	"bytes"
	"fmt"
	"path/filepath"
	"strconv"

	"github.com/oomtrace/oomtrace/event"
	"github.com/oomtrace/oomtrace/internal/kernfile"
)

// ParsePressure parses a PSI file (memory.pressure, /proc/pressure/memory):
//
//	some avg10=0.12 avg60=0.05 avg300=0.01 total=123456
//	full avg10=0.00 avg60=0.00 avg300=0.00 total=7890
//
// Fields it does not know are skipped (the format may grow); a "some"
// line is required.
func ParsePressure(data []byte) (event.Pressure, error) {
	var p event.Pressure
	seen := false
	for line := range bytes.Lines(data) {
		words := bytes.Fields(line)
		if len(words) == 0 {
			continue
		}
		var avg10, avg60 *float64
		var total *uint64
		switch string(words[0]) {
		case "some":
			avg10, avg60, total, seen = &p.SomeAvg10, &p.SomeAvg60, &p.SomeTotalUS, true
		case "full":
			avg10, avg60, total = &p.FullAvg10, &p.FullAvg60, &p.FullTotalUS
		default:
			continue
		}
		for _, w := range words[1:] {
			k, v, ok := bytes.Cut(w, []byte("="))
			if !ok {
				return event.Pressure{}, fmt.Errorf("pressure: %q is not key=value", w)
			}
			var err error
			switch string(k) {
			case "avg10":
				*avg10, err = parsePercent(v)
			case "avg60":
				*avg60, err = parsePercent(v)
			case "total":
				*total, err = strconv.ParseUint(string(v), 10, 64)
			}
			if err != nil {
				return event.Pressure{}, fmt.Errorf("pressure: %s: %w", k, err)
			}
		}
	}
	if !seen {
		return event.Pressure{}, fmt.Errorf("pressure: no \"some\" line")
	}
	return p, nil
}

func parsePercent(v []byte) (float64, error) {
	f, err := strconv.ParseFloat(string(v), 64)
	if err != nil {
		return 0, err
	}
	if !(f >= 0 && f <= 100) { // NaN too: JSON has no NaN
		return 0, fmt.Errorf("%v is not a percentage", f)
	}
	return f, nil
}

// Snapshot reads the cgroup's usage, limit, swap and memory pressure
// (the last two on cgroup v2 only, where the kernel has them). It fails
// only when the usage cannot be read (the cgroup is gone).
func (m Memory) Snapshot(path string) (event.CgroupMemory, error) {
	usage, err := m.Usage(path)
	if err != nil {
		return event.CgroupMemory{}, err
	}
	s := event.CgroupMemory{UsageBytes: usage}
	if limit, ok := m.Limit(path); ok {
		s.LimitBytes = &limit
	}
	if m.V1 {
		return s, nil
	}
	if swap, err := kernfile.ReadUint(filepath.Join(m.Dir(path), "memory.swap.current")); err == nil {
		s.SwapBytes = &swap
	}
	if data, err := kernfile.ReadFile(filepath.Join(m.Dir(path), "memory.pressure")); err == nil {
		if p, err := ParsePressure(data); err == nil {
			s.Pressure = &p
		}
	}
	return s, nil
}
