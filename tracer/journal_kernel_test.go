// SPDX-License-Identifier: Apache-2.0

package tracer

import (
	"bytes"
	"errors"
	"os"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"github.com/cilium/ebpf/ringbuf"

	"github.com/oomtrace/oomtrace/internal/harness/testenv"
)

// ringWriter writes records into a real ring buffer through a socket
// filter program run with BPF_PROG_TEST_RUN: the kernel's own producer
// side, headers and wrap-around included, without attaching anything.
type ringWriter struct {
	t *testing.T
	m *ebpf.Map
}

func newRing(t *testing.T, size uint32) *ringWriter {
	t.Helper()
	m, err := ebpf.NewMap(&ebpf.MapSpec{Type: ebpf.RingBuf, MaxEntries: size})
	if err != nil {
		t.Fatalf("ring buffer: %v", err)
	}
	t.Cleanup(func() { m.Close() })
	return &ringWriter{t: t, m: m}
}

// run loads insns (ending in exit) and runs them once.
func (w *ringWriter) run(insns asm.Instructions) {
	w.t.Helper()
	prog, err := ebpf.NewProgram(&ebpf.ProgramSpec{Type: ebpf.SocketFilter, License: "GPL", Instructions: insns})
	if err != nil {
		w.t.Fatalf("load writer: %v", err)
	}
	defer prog.Close()
	if _, err := prog.Run(&ebpf.RunOptions{Data: make([]byte, 14)}); err != nil {
		w.t.Fatalf("run writer: %v", err)
	}
}

// write submits one record of size bytes (a multiple of 8, at most 512),
// every byte fill.
func (w *ringWriter) write(size int, fill byte) { w.t.Helper(); w.writeFlags(size, fill, 0) }

// writeFlags is write with bpf_ringbuf_output's flags.
func (w *ringWriter) writeFlags(size int, fill byte, flags int32) {
	w.t.Helper()
	var insns asm.Instructions
	word := int64(0)
	for i := 0; i < 8; i++ {
		word = word<<8 | int64(fill)
	}
	for off := 0; off < size; off += 8 {
		insns = append(insns, asm.LoadImm(asm.R0, word, asm.DWord), asm.StoreMem(asm.RFP, int16(off-size), asm.R0, asm.DWord))
	}
	insns = append(insns,
		asm.LoadMapPtr(asm.R1, w.m.FD()),
		asm.Mov.Reg(asm.R2, asm.RFP),
		asm.Add.Imm(asm.R2, int32(-size)),
		asm.Mov.Imm(asm.R3, int32(size)),
		asm.Mov.Imm(asm.R4, flags),
		asm.FnRingbufOutput.Call(),
		asm.Mov.Imm(asm.R0, 0),
		asm.Return(),
	)
	w.run(insns)
}

// discard reserves a record of size bytes and discards it.
func (w *ringWriter) discard(size int) {
	w.t.Helper()
	w.run(asm.Instructions{
		asm.LoadMapPtr(asm.R1, w.m.FD()),
		asm.Mov.Imm(asm.R2, int32(size)),
		asm.Mov.Imm(asm.R3, 0),
		asm.FnRingbufReserve.Call(),
		asm.JEq.Imm(asm.R0, 0, "out"),
		asm.Mov.Reg(asm.R1, asm.R0),
		asm.Mov.Imm(asm.R2, 0),
		asm.FnRingbufDiscard.Call(),
		asm.Mov.Imm(asm.R0, 0).WithSymbol("out"),
		asm.Return(),
	})
}

// open opens a journal on w's ring buffer, closed at the end of the test.
func (w *ringWriter) open() *journal {
	w.t.Helper()
	j, err := newJournal(w.m)
	if err != nil {
		w.t.Fatal(err)
	}
	w.t.Cleanup(func() { j.Close() })
	return j
}

func readOne(t *testing.T, j *journal) ([]byte, uint64) {
	t.Helper()
	type result struct {
		rec []byte
		end uint64
		err error
	}
	got := make(chan result, 1)
	go func() {
		rec, end, err := j.Read(nil)
		got <- result{append([]byte(nil), rec...), end, err}
	}()
	select {
	case r := <-got:
		if r.err != nil {
			t.Fatalf("Read: %v", r.err)
		}
		return r.rec, r.end
	case <-time.After(5 * time.Second):
		t.Fatal("Read did not return")
	}
	return nil, 0
}

// TestJournalCommitsInOrder: records leave the ring buffer in ring order,
// each once committed; one committed early waits for those before it.
func TestJournalCommitsInOrder(t *testing.T) {
	testenv.RequirePrivileged(t)
	w := newRing(t, uint32(os.Getpagesize()))
	j := w.open()
	w.write(8, 'a')
	w.discard(16) // skipped, and committed with the records around it
	w.write(16, 'b')
	w.write(24, 'c')
	ra, endA := readOne(t, j)
	rb, endB := readOne(t, j)
	rc, endC := readOne(t, j)
	if !bytes.Equal(ra, bytes.Repeat([]byte("a"), 8)) || !bytes.Equal(rb, bytes.Repeat([]byte("b"), 16)) || !bytes.Equal(rc, bytes.Repeat([]byte("c"), 24)) {
		t.Fatalf("records %q %q %q", ra, rb, rc)
	}
	// Header 8 bytes each, data padded to 8.
	if endA != 16 || endB != 16+24+24 || endC != endB+32 {
		t.Errorf("ends %d %d %d, want 16, 64, 96", endA, endB, endC)
	}
	if pos := j.Position(); pos != 0 || j.Held() != 3 || j.Backlog() != 96 {
		t.Errorf("before any commit: position %d, held %d, backlog %d", pos, j.Held(), j.Backlog())
	}
	// While records are held the kernel wakes a reader only when told to,
	// as oomtrace's programs do (BPF_RB_FORCE_WAKEUP); a waiting reader
	// does not spin meanwhile.
	woken := make(chan []byte, 1)
	go func() {
		rec, _, _ := j.Read(nil)
		woken <- append([]byte(nil), rec...)
	}()
	time.Sleep(20 * time.Millisecond)
	w.writeFlags(8, 'd', 2 /* BPF_RB_FORCE_WAKEUP */)
	select {
	case rec := <-woken:
		if !bytes.Equal(rec, bytes.Repeat([]byte("d"), 8)) {
			t.Errorf("woken with %q", rec)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("a forced wakeup did not wake the reader")
	}
	if j.Commit(endB) {
		t.Error("b left the ring buffer before a")
	}
	if pos := j.Position(); pos != 0 {
		t.Errorf("position %d after committing b only", pos)
	}
	if !j.Commit(endA) {
		t.Error("a did not leave the ring buffer")
	}
	// a, the discarded record and b are past now.
	if pos := j.Position(); pos != endB || j.Held() != 2 {
		t.Errorf("position %d, held %d; want %d, 2 (c and d)", pos, j.Held(), endB)
	}
	if !j.Commit(endC) || j.Position() != endC || j.Backlog() != 16 {
		t.Errorf("after c: position %d, backlog %d (d's 16 bytes)", j.Position(), j.Backlog())
	}
	if !j.Commit(endC+16) || j.Backlog() != 0 || j.Held() != 0 {
		t.Errorf("after d: backlog %d, held %d", j.Backlog(), j.Held())
	}
}

// TestJournalReadAgain: what one reader did not commit, the next reader of
// the same ring buffer reads again.
func TestJournalReadAgain(t *testing.T) {
	testenv.RequirePrivileged(t)
	w := newRing(t, uint32(os.Getpagesize()))
	first := w.open()
	w.write(8, 'a')
	w.write(8, 'b')
	_, endA := readOne(t, first)
	readOne(t, first)
	first.Commit(endA)
	first.Close()

	second := w.open()
	if rec, _ := readOne(t, second); !bytes.Equal(rec, bytes.Repeat([]byte("b"), 8)) {
		t.Errorf("read again %q, want b's record", rec)
	}
}

// TestJournalWraps: records of every position of a small ring buffer,
// across many wrap-arounds, come out whole; and a writer wakes a waiting
// reader.
func TestJournalWraps(t *testing.T) {
	testenv.RequirePrivileged(t)
	w := newRing(t, uint32(os.Getpagesize()))
	j := w.open()
	ringSize := uint64(os.Getpagesize())
	wrapped := 0
	for i := 0; i < 100; i++ {
		size := 8 * (1 + i%40) // up to 320 bytes: never a multiple of the ring
		fill := byte('A' + i%26)
		done := make(chan []byte, 1)
		go func() {
			rec, end, err := j.Read(nil)
			if err != nil {
				t.Errorf("Read: %v", err)
				done <- nil
				return
			}
			if start := end - uint64(size); start/ringSize != (end-1)/ringSize {
				wrapped++ // its data crosses the ring's end
			}
			rec = append([]byte(nil), rec...)
			j.Commit(end)
			done <- rec
		}()
		if i%2 == 0 {
			time.Sleep(time.Millisecond) // the reader waits first, half the time
		}
		w.write(size, fill)
		select {
		case rec := <-done:
			if !bytes.Equal(rec, bytes.Repeat([]byte{fill}, size)) {
				t.Fatalf("record %d: %d bytes %q, want %d of %c", i, len(rec), rec, size, fill)
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("record %d: the reader was not woken", i)
		}
	}
	if j.Backlog() != 0 {
		t.Errorf("backlog %d after committing everything", j.Backlog())
	}
	if wrapped == 0 {
		t.Error("no record's data crossed the ring's end: the test proves nothing of wrapping")
	}
	t.Logf("%d of 100 records wrapped", wrapped)
}

// TestJournalFlushAndClose: Flush ends Read after what is there; a deadline
// ends a Read that finds nothing; Close ends a waiting Read.
func TestJournalFlushAndClose(t *testing.T) {
	testenv.RequirePrivileged(t)
	w := newRing(t, uint32(os.Getpagesize()))
	j := w.open()
	w.write(8, 'a')
	j.Flush()
	readOne(t, j)
	if _, _, err := j.Read(nil); !errors.Is(err, ringbuf.ErrFlushed) {
		t.Errorf("after the flushed records: %v, want ErrFlushed", err)
	}

	k := w.open()
	readOne(t, k) // a again: never committed
	k.SetDeadline(time.Now().Add(50 * time.Millisecond))
	if _, _, err := k.Read(nil); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Errorf("nothing to read by the deadline: %v", err)
	}
	k.SetDeadline(time.Time{})
	ended := make(chan error, 1)
	go func() {
		_, _, err := k.Read(nil)
		ended <- err
	}()
	time.Sleep(50 * time.Millisecond)
	if err := k.Close(); err != nil {
		t.Errorf("Close: %v", err)
	}
	select {
	case err := <-ended:
		if !errors.Is(err, ringbuf.ErrClosed) {
			t.Errorf("Read after Close: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Close did not end Read")
	}
	j.Close()
}
