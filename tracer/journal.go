// SPDX-License-Identifier: Apache-2.0

package tracer

import (
	"errors"
	"fmt"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
	"unsafe"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/ringbuf"
	"golang.org/x/sys/unix"
)

// journal reads a BPF ring buffer like ringbuf.Reader, but leaves each
// record in it until it is committed: the kernel's consumer position moves
// only past records that were written out. The ring buffer outlives the
// process when it is pinned, so what a process read but had not written
// when it died is read again by the next one.
//
// The kernel wakes a reader only when the consumer position has caught up
// with a new record; it lags here while a record is held, so the programs
// submit with BPF_RB_FORCE_WAKEUP.
type journal struct {
	consPage []byte // the consumer position: ours to write
	dataMap  []byte // the producer position's page, then the data
	consPos  *uint64
	prodPos  *uint64
	// ring is the data, mapped once: a record that wraps is copied in
	// two parts. (The kernel offers it twice in a row, for readers that
	// want no wrap; that doubles the process's RSS for nothing here.)
	ring []byte
	mask uint64

	// epfd watches the ring buffer and wakeFd; Go's netpoller watches
	// epfd (epoll nests), so a reader waits parked like a socket read,
	// not in a blocking syscall that holds a thread: a kill then wakes
	// the netpoller's thread, which runs the reader itself, instead of a
	// thread of its own that must win a P back and wake sysmon (measured
	// at a third of a kill's CPU with GOMAXPROCS=2).
	epfd   int
	poll   *os.File        // epfd, registered with the netpoller; nil after release
	pollRC syscall.RawConn // poll's, for its Read
	wakeFd int             // an eventfd: Flush and Close wake the reader through it

	mu      sync.Mutex // guards everything below, and the consumer position
	next    uint64     // where the next record to read starts
	held    []heldRecord
	flushed bool // after the records there now, end with ringbuf.ErrFlushed
	closed  bool

	readMu sync.Mutex // one reader at a time; Close waits for it
}

// heldRecord is a record read and not yet committed, in ring order.
type heldRecord struct {
	end  uint64 // the position after it
	done bool
}

const (
	ringbufBusyBit    = 1 << 31
	ringbufDiscardBit = 1 << 30
	ringbufHeaderSize = 8
)

func newJournal(m *ebpf.Map) (*journal, error) {
	if m.Type() != ebpf.RingBuf {
		return nil, fmt.Errorf("journal of a %s map: want a ring buffer", m.Type())
	}
	size := int(m.MaxEntries())
	page := os.Getpagesize()
	j := &journal{epfd: -1, wakeFd: -1, mask: uint64(size - 1)}
	ok := false
	defer func() {
		if !ok {
			_ = j.release() // the error that stopped the open is the one to report
		}
	}()
	var err error
	if j.consPage, err = unix.Mmap(m.FD(), 0, page, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED); err != nil {
		return nil, fmt.Errorf("mmap consumer page: %w", err)
	}
	if j.dataMap, err = unix.Mmap(m.FD(), int64(page), page+size, unix.PROT_READ, unix.MAP_SHARED); err != nil {
		return nil, fmt.Errorf("mmap data pages: %w", err)
	}
	j.consPos = (*uint64)(unsafe.Pointer(&j.consPage[0]))
	j.prodPos = (*uint64)(unsafe.Pointer(&j.dataMap[0]))
	j.ring = j.dataMap[page:]
	j.next = atomic.LoadUint64(j.consPos)

	if j.epfd, err = unix.EpollCreate1(unix.EPOLL_CLOEXEC); err != nil {
		return nil, fmt.Errorf("epoll: %w", err)
	}
	if j.wakeFd, err = unix.Eventfd(0, unix.EFD_CLOEXEC|unix.EFD_NONBLOCK); err != nil {
		return nil, fmt.Errorf("eventfd: %w", err)
	}
	// Edge-triggered: the ring buffer polls readable as long as records
	// are held (past the consumer position); a reader waits for new ones.
	for _, fd := range []int{m.FD(), j.wakeFd} {
		ev := unix.EpollEvent{Events: unix.EPOLLIN | unix.EPOLLET, Fd: int32(fd)}
		if err := unix.EpollCtl(j.epfd, unix.EPOLL_CTL_ADD, fd, &ev); err != nil {
			return nil, fmt.Errorf("epoll add: %w", err)
		}
	}
	// Non-blocking, so that os.NewFile hands it to the netpoller.
	if err := unix.SetNonblock(j.epfd, true); err != nil {
		return nil, fmt.Errorf("epoll nonblocking: %w", err)
	}
	j.poll = os.NewFile(uintptr(j.epfd), "ringbuf-epoll")
	if j.pollRC, err = j.poll.SyscallConn(); err != nil {
		return nil, fmt.Errorf("epoll raw conn: %w", err)
	}
	ok = true
	return j, nil
}

// Read waits for the next record and copies it into buf (grown as
// needed). It returns the record and the position after it, for Commit.
// After Flush it returns the records already written, then
// ringbuf.ErrFlushed; after Close, ringbuf.ErrClosed.
func (j *journal) Read(buf []byte) ([]byte, uint64, error) {
	j.readMu.Lock()
	defer j.readMu.Unlock()
	for {
		j.mu.Lock()
		if j.closed {
			j.mu.Unlock()
			return nil, 0, ringbuf.ErrClosed
		}
		rec, end, found, err := j.readLocked(buf)
		flushed := j.flushed
		j.mu.Unlock()
		if err != nil || found {
			return rec, end, err
		}
		if flushed {
			return nil, 0, ringbuf.ErrFlushed
		}
		if err := j.wait(); err != nil {
			return nil, 0, err
		}
	}
}

// readLocked takes the record at j.next, skipping discarded ones; found
// is false when there is none (yet).
func (j *journal) readLocked(buf []byte) ([]byte, uint64, bool, error) {
	for {
		prod := atomic.LoadUint64(j.prodPos)
		if prod == j.next {
			return nil, 0, false, nil
		}
		if prod-j.next < ringbufHeaderSize {
			return nil, 0, false, fmt.Errorf("ring buffer: header cut short at %d", j.next)
		}
		// An atomic load: it orders the data after the kernel's commit.
		hdr := atomic.LoadUint32((*uint32)(unsafe.Pointer(&j.ring[j.next&j.mask])))
		if hdr&ringbufBusyBit != 0 {
			// Reserved, not yet submitted: it will be soon (the program
			// runs to its end without sleeping), and it wakes us then.
			return nil, 0, false, nil
		}
		n := uint64(hdr &^ (ringbufBusyBit | ringbufDiscardBit))
		start := j.next + ringbufHeaderSize
		end := start + (n+7)&^7
		if end-j.next > prod-j.next {
			return nil, 0, false, fmt.Errorf("ring buffer: record of %d bytes cut short at %d", n, j.next)
		}
		j.next = end
		j.held = append(j.held, heldRecord{end: end})
		if hdr&ringbufDiscardBit != 0 {
			j.commitLocked(end)
			continue
		}
		if uint64(cap(buf)) < n {
			buf = make([]byte, n)
		}
		buf = buf[:n]
		first := copy(buf, j.ring[start&j.mask:])
		copy(buf[first:], j.ring) // the wrapped rest, if any
		return buf, end, true, nil
	}
}

// wait blocks until the kernel or Flush or Close wakes the reader, or the
// deadline passes (os.ErrDeadlineExceeded). It takes the ready events off
// epfd without blocking and otherwise parks in the netpoller.
func (j *journal) wait() error {
	var events [2]unix.EpollEvent
	var waitErr error
	err := j.pollRC.Read(func(fd uintptr) bool {
		for {
			n, err := unix.EpollWait(int(fd), events[:], 0)
			if errors.Is(err, unix.EINTR) {
				continue
			}
			if err != nil {
				waitErr = fmt.Errorf("epoll wait: %w", err)
			}
			return err != nil || n > 0 // false: nothing yet, park
		}
	})
	if err != nil {
		return err // os.ErrDeadlineExceeded, or os.ErrClosed
	}
	return waitErr
}

// SetDeadline makes a Read that finds nothing return os.ErrDeadlineExceeded
// at t; zero: wait for ever.
func (j *journal) SetDeadline(t time.Time) {
	j.mu.Lock()
	defer j.mu.Unlock()
	if j.poll != nil {
		_ = j.poll.SetReadDeadline(t)
	}
}

// Commit says the record ending at end was written out (or needs no
// writing): the consumer position moves past it and past every record
// after it committed already. It reports whether the record left the
// ring buffer now (false: an earlier record is still held).
func (j *journal) Commit(end uint64) bool {
	j.mu.Lock()
	defer j.mu.Unlock()
	if j.closed {
		return false
	}
	return j.commitLocked(end)
}

func (j *journal) commitLocked(end uint64) bool {
	for i := range j.held {
		if j.held[i].end == end {
			j.held[i].done = true
			break
		}
	}
	moved := false
	n := 0
	for n < len(j.held) && j.held[n].done {
		moved = moved || j.held[n].end == end
		n++
	}
	if n > 0 {
		atomic.StoreUint64(j.consPos, j.held[n-1].end)
		j.held = append(j.held[:0], j.held[n:]...)
	}
	return moved
}

// Position is the kernel's consumer position: every record before it was
// written out.
func (j *journal) Position() uint64 {
	j.mu.Lock()
	defer j.mu.Unlock()
	if j.closed {
		return 0
	}
	return atomic.LoadUint64(j.consPos)
}

// RecordBefore copies the record of n bytes that ends at end, read and
// not yet committed (so still whole in the ring buffer); nil after Close.
func (j *journal) RecordBefore(end uint64, n int) []byte {
	j.mu.Lock()
	defer j.mu.Unlock()
	if j.closed {
		return nil
	}
	start := end - (uint64(n)+7)&^7
	buf := make([]byte, n)
	first := copy(buf, j.ring[start&j.mask:])
	copy(buf[first:], j.ring) // the wrapped rest, if any
	return buf
}

// Backlog is how many bytes of records are in the ring buffer past the
// consumer position.
func (j *journal) Backlog() uint64 {
	j.mu.Lock()
	defer j.mu.Unlock()
	if j.closed {
		return 0
	}
	return atomic.LoadUint64(j.prodPos) - atomic.LoadUint64(j.consPos)
}

// Flush makes Read return the records there now, then ringbuf.ErrFlushed.
func (j *journal) Flush() {
	j.mu.Lock()
	defer j.mu.Unlock()
	j.flushed = true
	j.wakeLocked()
}

// wakeLocked wakes a waiting Read; j.mu held, so that Close cannot have
// closed the eventfd meanwhile.
func (j *journal) wakeLocked() {
	if j.wakeFd < 0 {
		return
	}
	var one [8]byte
	*(*uint64)(unsafe.Pointer(&one[0])) = 1
	_, _ = unix.Write(j.wakeFd, one[:])
}

// Close ends Read with ringbuf.ErrClosed and unmaps the ring buffer;
// records not committed stay in it.
func (j *journal) Close() error {
	j.mu.Lock()
	if j.closed {
		j.mu.Unlock()
		return nil
	}
	j.closed = true
	j.wakeLocked()
	j.mu.Unlock()
	j.readMu.Lock() // Read has returned
	defer j.readMu.Unlock()
	j.mu.Lock()
	defer j.mu.Unlock()
	return j.release()
}

func (j *journal) release() error {
	var errs []error
	if j.dataMap != nil {
		errs = append(errs, unix.Munmap(j.dataMap))
		j.dataMap = nil
	}
	if j.consPage != nil {
		errs = append(errs, unix.Munmap(j.consPage))
		j.consPage = nil
	}
	if j.poll != nil {
		errs = append(errs, j.poll.Close()) // closes epfd
		j.poll, j.epfd = nil, -1
	}
	for _, fd := range []*int{&j.epfd, &j.wakeFd} {
		if *fd >= 0 {
			errs = append(errs, unix.Close(*fd))
			*fd = -1
		}
	}
	return errors.Join(errs...)
}
