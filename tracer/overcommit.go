package tracer

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// hostMemory is what the kernel's commit accounting decides by, read from
// procfs (Documentation/mm/overcommit-accounting.rst).
type hostMemory struct {
	Mode         int    // vm.overcommit_memory
	Ratio        int    // vm.overcommit_ratio
	CommitLimit  uint64 // bytes
	Committed    uint64 // Committed_AS, bytes
	MemTotal     uint64 // bytes
	SwapTotal    uint64 // bytes
	AdminReserve uint64 // vm.admin_reserve_kbytes, in bytes
	UserReserve  uint64 // vm.user_reserve_kbytes, in bytes
	MaxMapCount  uint64 // vm.max_map_count
}

// readHostMemory samples procfs under root (normally /proc).
func readHostMemory(root string) (hostMemory, error) {
	var h hostMemory
	data, err := os.ReadFile(filepath.Join(root, "meminfo"))
	if err != nil {
		return h, err
	}
	mi, err := parseMeminfo(data)
	if err != nil {
		return h, err
	}
	h.CommitLimit, h.Committed = mi["CommitLimit"], mi["Committed_AS"]
	h.MemTotal, h.SwapTotal = mi["MemTotal"], mi["SwapTotal"]

	ints := []struct {
		name string
		dst  *uint64
		unit uint64
	}{
		{"overcommit_memory", nil, 1},
		{"overcommit_ratio", nil, 1},
		{"admin_reserve_kbytes", &h.AdminReserve, 1024},
		{"user_reserve_kbytes", &h.UserReserve, 1024},
		{"max_map_count", &h.MaxMapCount, 1},
	}
	for _, f := range ints {
		v, err := readUintFile(filepath.Join(root, "sys/vm", f.name))
		if err != nil {
			return h, err
		}
		switch f.name {
		case "overcommit_memory":
			h.Mode = int(v)
		case "overcommit_ratio":
			h.Ratio = int(v)
		default:
			*f.dst = v * f.unit
		}
	}
	return h, nil
}

func readUintFile(path string) (uint64, error) {
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

// parseMeminfo parses /proc/meminfo into bytes by field name. Lines it does
// not understand are skipped; an input with no field at all is an error.
func parseMeminfo(data []byte) (map[string]uint64, error) {
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
			if fields[1] != "kB" {
				continue
			}
			if v > (^uint64(0))/1024 {
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
