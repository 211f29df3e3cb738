// SPDX-License-Identifier: Apache-2.0

package kernfile

import (
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"

	"golang.org/x/sys/unix"
)

// OpenFiles keeps the last files it read open, so that reading one again
// is one pread from offset 0, which makes a seq_file (every cgroupfs and
// most procfs files) print itself afresh. On cgroupfs the open (a walk of
// the whole path, the kernfs open) and the close cost twice the read: a
// kill in a cgroup seen before reads its files for a third of the cost.
//
// A file whose cgroup was removed fails its read (ENODEV: its kernfs node
// is deactivated, even when a new cgroup took the same path), and is then
// opened afresh by its path: nothing stale is ever returned. An open file
// pins its kernfs node, not the cgroup's memory, and at most max are kept
// (the least recently read closed first).
//
// Only for files whose path names one object for as long as it exists
// (cgroup files; not /proc/<pid>, whose pids are reused), and that print
// one record (memory.stat, a number): a file paged through an iterator of
// its own, such as cgroup.procs, is not restarted by a read from offset 0
// and reads one step behind (seen on 6.18). The zero value and nil read
// every file afresh; safe for concurrent use.
type OpenFiles struct {
	mu    sync.Mutex
	max   int
	files map[string]*openFile
	clock uint64 // counts reads, for the least recently read
}

type openFile struct {
	fd   int
	used uint64
}

// NewOpenFiles keeps up to max files open.
func NewOpenFiles(max int) *OpenFiles {
	return &OpenFiles{max: max, files: map[string]*openFile{}}
}

// ReadFile reads the file at path whole, as the package's ReadFile.
func (o *OpenFiles) ReadFile(path string) ([]byte, error) {
	if o == nil || o.max <= 0 {
		return ReadFile(path)
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	o.clock++
	if f, ok := o.files[path]; ok {
		data, err := preadAll(f.fd, path)
		if err == nil {
			f.used = o.clock
			return data, nil
		}
		// Gone (ENODEV), or failing: the path may name something new.
		unix.Close(f.fd)
		delete(o.files, path)
	}
	fd, err := ignoringEINTR(func() (int, error) { return unix.Open(path, unix.O_RDONLY|unix.O_CLOEXEC, 0) })
	if err != nil {
		return nil, &os.PathError{Op: "open", Path: path, Err: err}
	}
	data, err := preadAll(fd, path)
	if err != nil {
		unix.Close(fd)
		return nil, err
	}
	if len(o.files) >= o.max {
		o.evictLocked()
	}
	o.files[path] = &openFile{fd: fd, used: o.clock}
	return data, nil
}

// ReadUint reads a file holding one unsigned number, as the package's
// ReadUint.
func (o *OpenFiles) ReadUint(path string) (uint64, error) {
	data, err := o.ReadFile(path)
	if err != nil {
		return 0, err
	}
	v, err := strconv.ParseUint(strings.TrimSpace(string(data)), 10, 64)
	if err != nil {
		return 0, fmt.Errorf("%s: %w", path, err)
	}
	return v, nil
}

// Len is how many files are open.
func (o *OpenFiles) Len() int {
	if o == nil {
		return 0
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	return len(o.files)
}

// Close closes every file kept open; later reads open them again.
func (o *OpenFiles) Close() {
	if o == nil {
		return
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	for path, f := range o.files {
		unix.Close(f.fd)
		delete(o.files, path)
	}
}

// evictLocked closes the least recently read file.
func (o *OpenFiles) evictLocked() {
	var oldest string
	var used uint64
	for path, f := range o.files {
		if oldest == "" || f.used < used {
			oldest, used = path, f.used
		}
	}
	if f, ok := o.files[oldest]; ok {
		unix.Close(f.fd)
		delete(o.files, oldest)
	}
}

// preadAll reads fd from offset 0 to its end. A read that returns less
// than it asked for is the end: a seq_file fills the whole buffer it is
// given while it has more to print (the files OpenFiles keeps), and a
// regular file's short read is its end. That saves the second syscall
// that would only say so: half the cost of a cgroup's usage file.
func preadAll(fd int, path string) ([]byte, error) {
	buf := make([]byte, 0, 4096)
	for {
		if len(buf) == cap(buf) {
			buf = slices.Grow(buf, cap(buf))
		}
		want := cap(buf) - len(buf)
		n, err := ignoringEINTR(func() (int, error) { return unix.Pread(fd, buf[len(buf):cap(buf)], int64(len(buf))) })
		if err != nil {
			return nil, &os.PathError{Op: "read", Path: path, Err: err}
		}
		buf = buf[:len(buf)+n]
		if n < want {
			return buf, nil
		}
	}
}
