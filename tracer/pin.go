// SPDX-License-Identifier: Apache-2.0

package tracer

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"reflect"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"golang.org/x/sys/unix"
)

// DefaultPinPath is where oomtrace pins its programs' links and maps.
const DefaultPinPath = "/sys/fs/bpf/oomtrace"

// Under the pin path:
//
//	control          the control map (bpf/control.h), shared by every
//	                 generation and every ABI
//	maps-<abi>/      the maps of one ABI (record layouts and map sizes):
//	                 a new process of the same ABI adopts them, backlog
//	                 and counters included
//	links-<gen>/     the hooks of one generation, one pin per hook
const (
	controlPin     = "control"
	mapsDirPrefix  = "maps-"
	linksDirPrefix = "links-"
	bpffsMagic     = 0xcafe4a11
	// waitLockMax: an oomtrace that holds the pin path longer is not an
	// old pod stopping (its grace period is 10 s) but another agent.
	waitLockMax = 2 * time.Minute
)

// pinning is a process's hold on the pin path: a lock that keeps a second
// oomtrace from reading the same ring buffers, for as long as it runs.
type pinning struct {
	path string
	dir  *os.File // flock()ed
	log  *slog.Logger
}

// openPinning makes path on a bpffs and takes its lock, waiting for an
// oomtrace that holds it (an old pod still stopping) to exit: its hooks
// record meanwhile, and it leaves what it did not write in the ring buffer.
func openPinning(path string, log *slog.Logger) (*pinning, error) {
	if err := checkPinFS(path); err != nil {
		return nil, err
	}
	if err := os.Mkdir(path, 0o700); err != nil && !errors.Is(err, os.ErrExist) {
		return nil, fmt.Errorf("pin path: %w", err)
	}
	dir, err := openTrustedDir(path)
	if err != nil {
		return nil, err
	}
	start := time.Now()
	logged := false
	for {
		err := unix.Flock(int(dir.Fd()), unix.LOCK_EX|unix.LOCK_NB)
		if err == nil {
			break
		}
		if !errors.Is(err, unix.EWOULDBLOCK) {
			dir.Close()
			return nil, fmt.Errorf("lock pin path %s: %w", path, err)
		}
		if !logged {
			log.Info("waiting for the oomtrace that holds the pin path to stop; the pinned hooks record meanwhile", "pin_path", path)
			logged = true
		}
		if time.Since(start) > waitLockMax {
			dir.Close()
			return nil, fmt.Errorf("pin path %s: held by another oomtrace for %v (run one per node, or give each its own --pin.path)", path, waitLockMax)
		}
		time.Sleep(50 * time.Millisecond)
	}
	return &pinning{path: path, dir: dir, log: log}, nil
}

// openTrustedDir opens the pin directory, which must be a directory (not
// a link to one) that only its owner, root or this process's user, can
// write to: whoever can write there can hand this process maps and
// programs to adopt.
func openTrustedDir(path string) (*os.File, error) {
	fd, err := unix.Open(path, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("pin path %s: %w", path, err)
	}
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("pin path %s: %w", path, err)
	}
	if uid := uint32(os.Geteuid()); st.Uid != 0 && st.Uid != uid {
		unix.Close(fd)
		return nil, fmt.Errorf("pin path %s: owned by uid %d, not root or this process's user: not trusted", path, st.Uid)
	}
	if st.Mode&0o022 != 0 {
		unix.Close(fd)
		return nil, fmt.Errorf("pin path %s: mode %04o, writable by others: not trusted (chmod go-w, or oomtrace unpin)", path, st.Mode&0o7777)
	}
	return os.NewFile(uintptr(fd), path), nil
}

// PreparePinPath checks that path's directory is a BPF filesystem. The
// usual one, /sys/fs/bpf, is mounted if it is not yet (as systemd does at
// boot), but only in the host's mount namespace: one mounted in a
// container's would end with the container, pins and all. Anything else
// is the user's to mount. The error is a *NotBPFFSError when there is none.
func PreparePinPath(path string) error {
	dir := filepath.Dir(path)
	err := checkPinFS(path)
	var nb *NotBPFFSError
	if !errors.As(err, &nb) || dir != "/sys/fs/bpf" || !inInitialMountNamespace() {
		return err
	}
	if merr := unix.Mount("bpf", dir, "bpf", 0, "mode=0700"); merr != nil {
		return fmt.Errorf("%w (mount: %v)", err, merr)
	}
	return checkBPFFS(dir)
}

// inInitialMountNamespace says whether this process shares its mount
// namespace with PID 1 (the host's, where /proc shows the host's PIDs);
// false when it cannot tell.
func inInitialMountNamespace() bool {
	self, err1 := os.Readlink("/proc/self/ns/mnt")
	init, err2 := os.Readlink("/proc/1/ns/mnt")
	return err1 == nil && err2 == nil && self == init
}

// checkPinFS says whether the pin path is on a bpffs: the path itself
// when it exists (a container may have the host's pin directory alone
// mounted, not the whole of the host's bpffs), else its directory.
func checkPinFS(path string) error {
	if _, err := os.Lstat(path); err == nil {
		return checkBPFFS(path)
	}
	return checkBPFFS(filepath.Dir(path))
}

// checkBPFFS says whether dir is a bpffs mount, and how to make it one.
func checkBPFFS(dir string) error {
	var st unix.Statfs_t
	if err := unix.Statfs(dir, &st); err != nil {
		return fmt.Errorf("pin path: %s: %w", dir, err)
	}
	if uint32(st.Type) != bpffsMagic {
		return &NotBPFFSError{Dir: dir}
	}
	return nil
}

// NotBPFFSError means the pin path is not on a BPF filesystem.
type NotBPFFSError struct{ Dir string }

func (e *NotBPFFSError) Error() string {
	return fmt.Sprintf("pin path: %s is not a BPF filesystem (mount -t bpf bpf %s; in a container, mount the host's)", e.Dir, e.Dir)
}

func (p *pinning) controlPath() string { return filepath.Join(p.path, controlPin) }

func (p *pinning) mapsDir(abi string) (string, error) {
	dir := filepath.Join(p.path, mapsDirPrefix+abi)
	if err := os.Mkdir(dir, 0o700); err != nil && !errors.Is(err, os.ErrExist) {
		return "", fmt.Errorf("pin maps: %w", err)
	}
	return dir, nil
}

// pinMaps has every map of spec but the control map loaded from, or
// pinned into, dir.
func pinMaps(spec *ebpf.CollectionSpec, opts *ebpf.CollectionOptions, dir string) {
	for name, ms := range spec.Maps {
		if name == controlPin || strings.HasPrefix(name, ".") {
			continue // .rodata and friends: each load's own
		}
		ms.Pinning = ebpf.PinByName
	}
	opts.Maps.PinPath = dir
}

// pinLinks pins the links of generation gen. A link the kernel cannot pin
// (a perf event attachment on kernels before 5.15) lasts as long as this
// process: logged, not fatal.
func (p *pinning) pinLinks(gen uint64, links []namedLink) error {
	dir := filepath.Join(p.path, linksDirPrefix+strconv.FormatUint(gen, 10))
	if err := os.Mkdir(dir, 0o700); err != nil && !errors.Is(err, os.ErrExist) {
		return fmt.Errorf("pin links: %w", err)
	}
	for _, l := range links {
		name := pinName(l.name)
		if err := l.link.Pin(filepath.Join(dir, name)); err != nil {
			if errors.Is(err, ebpf.ErrNotSupported) {
				p.log.Warn("hook cannot be pinned: it stops with this process", "hook", l.name, "err", err)
				continue
			}
			return fmt.Errorf("pin %s: %w", l.name, err)
		}
	}
	return nil
}

// pinName is a hook's name as a pin: bpffs refuses dots in names, and
// slashes would be directories.
func pinName(hook string) string { return strings.NewReplacer("/", "-", ".", "-").Replace(hook) }

// retire detaches the hooks of every generation but keep, and removes the
// maps of every ABI but abi, saying how much of their ring buffers no
// process will read (records of another layout: this build cannot decode
// them).
func (p *pinning) retire(keep uint64, abi string) error {
	entries, err := os.ReadDir(p.path)
	if err != nil {
		return fmt.Errorf("pin path: %w", err)
	}
	var errs []error
	for _, e := range entries {
		name := e.Name()
		switch {
		case strings.HasPrefix(name, linksDirPrefix):
			gen, err := strconv.ParseUint(strings.TrimPrefix(name, linksDirPrefix), 10, 64)
			if err == nil && gen == keep {
				continue
			}
			n, err := unpinLinks(filepath.Join(p.path, name))
			errs = append(errs, err)
			p.log.Info("detached the hooks of an earlier oomtrace", "generation", name, "hooks", n)
		case strings.HasPrefix(name, mapsDirPrefix) && name != mapsDirPrefix+abi:
			dir := filepath.Join(p.path, name)
			if unread := ringBacklog(filepath.Join(dir, oomtraceMapOomEvents)); unread > 0 {
				p.log.Warn("an oomtrace of another record layout left kills unread: this build cannot decode them (oomtrace_oom_kills_unobserved_total does not count them: they were hooked)",
					"maps", name, "unread_bytes", unread, "about_records", unread/uint64(OOMEventSize))
			}
			errs = append(errs, removePins(dir))
		}
	}
	return errors.Join(errs...)
}

// ringBacklog is how many bytes of records the ring buffer pinned at path
// holds past its consumer position; 0 if it cannot be read.
func ringBacklog(path string) uint64 {
	m, err := ebpf.LoadPinnedMap(path, nil)
	if err != nil {
		return 0
	}
	defer m.Close()
	j, err := newJournal(m)
	if err != nil {
		return 0
	}
	defer j.Close()
	return j.Backlog()
}

// unpinLinks detaches every link pinned in dir and removes dir.
func unpinLinks(dir string) (int, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return 0, err
	}
	var errs []error
	n := 0
	for _, e := range entries {
		path := filepath.Join(dir, e.Name())
		l, err := link.LoadPinnedLink(path, nil)
		if err != nil {
			// Not a link (or gone): remove the pin all the same.
			errs = append(errs, os.Remove(path))
			continue
		}
		errs = append(errs, l.Unpin(), l.Close())
		n++
	}
	errs = append(errs, os.Remove(dir))
	return n, errors.Join(errs...)
}

// removePins removes every pin in dir, then dir.
func removePins(dir string) error {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return err
	}
	var errs []error
	for _, e := range entries {
		errs = append(errs, os.Remove(filepath.Join(dir, e.Name())))
	}
	errs = append(errs, os.Remove(dir))
	return errors.Join(errs...)
}

func (p *pinning) close() error {
	if p == nil {
		return nil
	}
	return p.dir.Close() // and the lock with it
}

// Unpin removes what oomtrace pinned at path: it switches every
// generation's programs off, detaches their hooks and removes their maps
// (the kernel frees them with the last reference). For an uninstall; it
// refuses while an oomtrace runs with path. removed is false when there
// was nothing at path.
func Unpin(path string) (removed bool, err error) {
	if _, err := os.Stat(path); errors.Is(err, os.ErrNotExist) {
		return false, nil
	}
	dir, err := os.Open(path)
	if err != nil {
		return false, fmt.Errorf("pin path: %w", err)
	}
	defer dir.Close()
	if err := unix.Flock(int(dir.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		if errors.Is(err, unix.EWOULDBLOCK) {
			return false, fmt.Errorf("an oomtrace is running with pin path %s: stop it first", path)
		}
		return false, fmt.Errorf("lock pin path %s: %w", path, err)
	}
	spec, err := loadOomtrace()
	if err != nil {
		return false, err
	}
	if m, err := ebpf.LoadPinnedMap(filepath.Join(path, controlPin), nil); err == nil {
		if checkControl(m, spec.Maps[oomtraceMapControl]) != nil {
			m.Close()
		} else if c, err := mapControl(m); err == nil {
			c.activate(0) // no generation records from here on
			c.close()
		}
	}
	entries, err := os.ReadDir(path)
	if err != nil {
		return false, fmt.Errorf("pin path: %w", err)
	}
	var errs []error
	for _, e := range entries {
		sub := filepath.Join(path, e.Name())
		switch {
		case strings.HasPrefix(e.Name(), linksDirPrefix):
			_, err := unpinLinks(sub)
			errs = append(errs, err)
		case e.IsDir():
			errs = append(errs, removePins(sub))
		default:
			errs = append(errs, os.Remove(sub))
		}
	}
	// In a container the pin directory may be the mount of the host's:
	// emptied, it stays.
	if err := os.Remove(path); err != nil && !errors.Is(err, unix.EBUSY) {
		errs = append(errs, err)
	}
	if err := errors.Join(errs...); err != nil {
		return false, fmt.Errorf("unpin %s: %w", path, err)
	}
	return true, nil
}

// abiOf names what a process must share with the one that pinned a maps
// directory to adopt it: the record layouts it decodes and every map's
// shape (ring buffer sizes included).
func abiOf(specs ...*ebpf.CollectionSpec) string {
	h := sha256.New()
	for _, rec := range []any{oomtraceOomEvent{}, oomtraceSignalEvent{}, refusalRefusalEvent{}, refusalRefusalKey{}, refusalRefusalCount{}} {
		writeLayout(h, reflect.TypeOf(rec))
	}
	for _, spec := range specs {
		names := make([]string, 0, len(spec.Maps))
		for name := range spec.Maps {
			if name != controlPin && !strings.HasPrefix(name, ".") {
				names = append(names, name)
			}
		}
		sort.Strings(names)
		for _, name := range names {
			ms := spec.Maps[name]
			fmt.Fprintf(h, "map %s %s %d %d %d %d\n", name, ms.Type, ms.KeySize, ms.ValueSize, ms.MaxEntries, ms.Flags)
		}
	}
	return hex.EncodeToString(h.Sum(nil))[:16]
}

// writeLayout writes the name, offset and type of every field of t, nested.
func writeLayout(w interface{ Write([]byte) (int, error) }, t reflect.Type) {
	fmt.Fprintf(w, "%s %d {", t.Name(), t.Size())
	switch t.Kind() {
	case reflect.Struct:
		for i := 0; i < t.NumField(); i++ {
			f := t.Field(i)
			fmt.Fprintf(w, "%s@%d:", f.Name, f.Offset)
			writeLayout(w, f.Type)
		}
	case reflect.Array:
		fmt.Fprintf(w, "[%d]", t.Len())
		writeLayout(w, t.Elem())
	default:
		fmt.Fprint(w, t.Kind())
	}
	fmt.Fprint(w, "}")
}
