// SPDX-License-Identifier: Apache-2.0

package memwatch

import (
	"bytes"
	"fmt"
	"strconv"

	"github.com/oomtrace/oomtrace/event"
)

// ParsePSI parses a PSI file (memory.pressure, /proc/pressure/memory):
//
//	some avg10=1.23 avg60=0.40 avg300=0.08 total=123456
//	full avg10=0.00 avg60=0.00 avg300=0.00 total=0
//
// Unknown keys and lines are skipped (kernels may add some); a "some"
// line is required.
func ParsePSI(data []byte) (event.Pressure, error) {
	var p event.Pressure
	some := false
	for line := range bytes.SplitSeq(data, []byte{'\n'}) {
		fields := bytes.Fields(line)
		if len(fields) == 0 {
			continue
		}
		var avg10, avg60 *float64
		var total *uint64
		switch string(fields[0]) {
		case "some":
			avg10, avg60, total = &p.SomeAvg10, &p.SomeAvg60, &p.SomeTotalUS
			some = true
		case "full":
			avg10, avg60, total = &p.FullAvg10, &p.FullAvg60, &p.FullTotalUS
		default:
			continue
		}
		for _, f := range fields[1:] {
			k, v, ok := bytes.Cut(f, []byte{'='})
			if !ok {
				return event.Pressure{}, fmt.Errorf("psi: field %q has no value", f)
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
				return event.Pressure{}, fmt.Errorf("psi: %s: %w", k, err)
			}
		}
	}
	if !some {
		return event.Pressure{}, fmt.Errorf("psi: no some line")
	}
	return p, nil
}

// parsePercent parses a PSI average: a percentage from 0 to 100.
func parsePercent(v []byte) (float64, error) {
	f, err := strconv.ParseFloat(string(v), 64)
	if err != nil {
		return 0, err
	}
	if f < 0 || f > 100 {
		return 0, fmt.Errorf("%v out of 0..100", f)
	}
	return f, nil
}
