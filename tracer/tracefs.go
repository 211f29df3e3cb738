// SPDX-License-Identifier: Apache-2.0

package tracer

import (
	"errors"
	"fmt"
	"os"

	"golang.org/x/sys/unix"
)

// DefaultTracefs is where the kernel documents tracefs to be mounted.
const DefaultTracefs = "/sys/kernel/tracing"

// ensureTracefs mounts tracefs at path unless something is mounted there
// already: classic tracepoints are looked up by id in tracefs, and minimal
// hosts (and containers) often do not mount it.
func ensureTracefs(path string) error {
	if path == "" {
		path = DefaultTracefs
	}
	var st unix.Statfs_t
	if err := unix.Statfs(path, &st); err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("tracefs: %s does not exist", path)
		}
		return fmt.Errorf("tracefs: statfs %s: %w", path, err)
	}
	if st.Type == unix.TRACEFS_MAGIC || st.Type == unix.DEBUGFS_MAGIC {
		return nil
	}
	if err := unix.Mount("nodev", path, "tracefs", 0, ""); err != nil {
		return fmt.Errorf("tracefs: mount at %s: %w", path, err)
	}
	return nil
}
