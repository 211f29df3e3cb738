// SPDX-License-Identifier: Apache-2.0

package tracer

import (
	"os"
	"path/filepath"

	"github.com/oomtrace/oomtrace/internal/kernfile"
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
	mi, err := kernfile.ParseMeminfo(data)
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
		v, err := kernfile.ReadUint(filepath.Join(root, "sys/vm", f.name))
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
