// SPDX-License-Identifier: Apache-2.0

// Package kernfile parses the kernel's small text files: /proc/meminfo,
// files holding one number, and "key value" files such as memory.stat.
package kernfile

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"fmt"
	"iter"
	"math"
	"os"
	"slices"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
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
	for k, v := range KeyValues(data) {
		m[string(k)] = v
	}
	return m
}

// KeyValues yields the "key value" lines of data (memory.stat, vmstat)
// whose value is a number, in order, without allocating: the key points
// into data.
func KeyValues(data []byte) iter.Seq2[[]byte, uint64] {
	return func(yield func([]byte, uint64) bool) {
		for line := range bytes.SplitSeq(data, []byte("\n")) {
			k, v, ok := bytes.Cut(line, []byte(" "))
			if !ok {
				continue
			}
			n, err := strconv.ParseUint(string(bytes.TrimSpace(v)), 10, 64)
			if err == nil && !yield(k, n) {
				return
			}
		}
	}
}

// ReadFile reads a small kernel file (procfs, cgroupfs) whole, with plain
// syscalls: os.ReadFile also stats it for a size such files do not have,
// and offers it to the runtime's poller, which cannot poll it; two wasted
// syscalls a file, and a kill reads a dozen.
func ReadFile(path string) ([]byte, error) {
	fd, err := ignoringEINTR(func() (int, error) { return unix.Open(path, unix.O_RDONLY|unix.O_CLOEXEC, 0) })
	if err != nil {
		return nil, &os.PathError{Op: "open", Path: path, Err: err}
	}
	defer unix.Close(fd)
	buf := make([]byte, 0, 4096)
	for {
		if len(buf) == cap(buf) {
			buf = slices.Grow(buf, cap(buf))
		}
		n, err := ignoringEINTR(func() (int, error) { return unix.Read(fd, buf[len(buf):cap(buf)]) })
		if err != nil {
			return nil, &os.PathError{Op: "read", Path: path, Err: err}
		}
		if n == 0 {
			return buf, nil
		}
		buf = buf[:len(buf)+n]
	}
}

// Subdirs lists the directories in dir (a cgroup's children), in the
// order the kernel lists them, with plain syscalls (as ReadFile: os.ReadDir
// offers the directory to the runtime's poller too).
func Subdirs(dir string) ([]string, error) {
	fd, err := ignoringEINTR(func() (int, error) {
		return unix.Open(dir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	})
	if err != nil {
		return nil, &os.PathError{Op: "open", Path: dir, Err: err}
	}
	defer unix.Close(fd)
	var names []string
	buf := make([]byte, 8192)
	for {
		n, err := ignoringEINTR(func() (int, error) { return unix.Getdents(fd, buf) })
		if err != nil {
			return nil, &os.PathError{Op: "getdents", Path: dir, Err: err}
		}
		if n == 0 {
			return names, nil
		}
		names = appendDirs(names, buf[:n])
	}
}

// appendDirs appends the names of the directories among the linux_dirent64
// records in buf ("." and ".." left out).
func appendDirs(names []string, buf []byte) []string {
	// struct linux_dirent64 { u64 d_ino; s64 d_off; u16 d_reclen; u8 d_type; char d_name[]; }
	const nameOff = 19
	for len(buf) >= nameOff {
		reclen := int(binary.NativeEndian.Uint16(buf[16:18]))
		if reclen < nameOff || reclen > len(buf) {
			return names
		}
		rec := buf[:reclen]
		buf = buf[reclen:]
		if rec[18] != unix.DT_DIR {
			continue
		}
		name := rec[nameOff:]
		if i := bytes.IndexByte(name, 0); i >= 0 {
			name = name[:i]
		}
		if s := string(name); s != "." && s != ".." {
			names = append(names, s)
		}
	}
	return names
}

func ignoringEINTR(f func() (int, error)) (int, error) {
	for {
		n, err := f()
		if err != unix.EINTR {
			return n, err
		}
	}
}

// ReadUint reads a file holding one unsigned number.
func ReadUint(path string) (uint64, error) {
	data, err := ReadFile(path)
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
