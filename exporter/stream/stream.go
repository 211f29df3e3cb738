// SPDX-License-Identifier: Apache-2.0

// Package stream writes events as lines on a stream: one JSON object per
// line, or one readable line of text; and says sizes the way every output
// does (Bytes).
package stream

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"strconv"
	"strings"

	"github.com/oomtrace/oomtrace/event"
)

// JSON writes one JSON object per line. encoding/json keeps every line valid
// JSON whatever bytes the kernel handed over: control characters are
// escaped and invalid UTF-8 becomes U+FFFD. A line is at most
// MaxLineBytes: what tenants make long is cut to fit (fit.go).
type JSON struct {
	w   io.Writer
	buf bytes.Buffer
	enc *json.Encoder
}

// NewJSON returns a JSON lines writer on w. Each event is written with one
// write as soon as it is encoded, so a reader sees it at once, whole.
func NewJSON(w io.Writer) *JSON {
	j := &JSON{w: w}
	j.enc = json.NewEncoder(&j.buf)
	j.enc.SetEscapeHTML(false)
	return j
}

// Write writes ev as one line.
func (j *JSON) Write(ev event.Event) error {
	ev = inVictimCgroup(ev)
	for i := 0; ; i++ {
		j.buf.Reset()
		if err := j.enc.Encode(ev); err != nil {
			return fmt.Errorf("encode %T: %w", ev, err)
		}
		if j.buf.Len() <= MaxLineBytes || i == len(cuts) {
			break
		}
		ev = cut(ev, i)
	}
	_, err := j.w.Write(j.buf.Bytes())
	return err
}

// Text writes one human-readable line per event, for people at a terminal.
// Kernel strings are quoted, so hostile bytes cannot forge a line.
type Text struct {
	w *bufio.Writer
}

// NewText returns a text writer on w.
func NewText(w io.Writer) *Text { return &Text{w: bufio.NewWriter(w)} }

// Write writes ev as one line.
func (t *Text) Write(ev event.Event) error {
	switch ev := ev.(type) {
	case event.OOMKill:
		return t.oomKill(ev)
	case event.CommitRefusal:
		return t.commitRefusal(ev)
	case event.MemoryPressure:
		return t.memoryPressure(ev)
	case event.Eviction:
		return t.eviction(ev)
	case event.NodeCondition:
		return t.nodeCondition(ev)
	case event.UserspaceKill:
		return t.userspaceKill(ev)
	case event.CgroupPressure:
		return t.cgroupPressure(ev)
	}
	return fmt.Errorf("text: no line for %T", ev)
}

// WriteOOMKill writes ev as one line.
func (t *Text) oomKill(ev event.OOMKill) error {
	var b strings.Builder
	b.WriteString(ev.Time.UTC().Format(event.Layout))
	b.WriteString(" oom_kill victim=")
	writeProcess(&b, ev.Victim.Process)
	if ev.Victim.RSS != nil {
		fmt.Fprintf(&b, " rss=%s(anon %s file %s shmem %s)",
			bytesIEC(ev.Victim.RSS.Anon+ev.Victim.RSS.File+ev.Victim.RSS.Shmem),
			bytesIEC(ev.Victim.RSS.Anon), bytesIEC(ev.Victim.RSS.File), bytesIEC(ev.Victim.RSS.Shmem))
	}
	if ev.Victim.OOMScoreAdj != nil {
		fmt.Fprintf(&b, " oom_score_adj=%d", *ev.Victim.OOMScoreAdj)
	}
	if ev.Victim.Init != nil && *ev.Victim.Init {
		b.WriteString(" init")
	}
	if ev.ContainerSurvived != nil {
		fmt.Fprintf(&b, " container_survived=%t", *ev.ContainerSurvived)
	}
	b.WriteString(" trigger=")
	writeProcess(&b, ev.Trigger)
	fmt.Fprintf(&b, " scope=%s", ev.OOM.Scope)
	if d := ev.OOM.Domain; d != nil {
		if d.Kind != "" {
			fmt.Fprintf(&b, " domain=%s", d.Kind)
		}
		if d.Cgroup != nil {
			fmt.Fprintf(&b, " domain_cgroup=%s limit=%s", strconv.Quote(d.Path), bytesIEC(d.LimitBytes))
		}
		if d.LimitSource != "" {
			fmt.Fprintf(&b, " limit_source=%s", d.LimitSource)
		}
		if d.SwapUsageBytes != nil && *d.SwapUsageBytes > 0 {
			fmt.Fprintf(&b, " swap=%s", bytesIEC(*d.SwapUsageBytes))
		}
	}
	if ev.OOM.ForcedBy != "" {
		fmt.Fprintf(&b, " forced_by=%s", ev.OOM.ForcedBy)
	}
	if g := ev.OOM.Group; g != nil {
		fmt.Fprintf(&b, " group=%s group_decision=%d", strconv.Quote(g.Cgroup.Path), g.DecisionSeq)
		if g.Chosen {
			b.WriteString(" chosen")
		}
	}
	fmt.Fprintf(&b, " hook=%s\n", ev.Hook)
	if _, err := t.w.WriteString(b.String()); err != nil {
		return fmt.Errorf("write oom_kill: %w", err)
	}
	return t.w.Flush()
}

// WriteCommitRefusal writes ev as one line.
func (t *Text) commitRefusal(ev event.CommitRefusal) error {
	var b strings.Builder
	b.WriteString(ev.Time.UTC().Format(event.Layout))
	b.WriteString(" commit_refusal process=")
	writeProcess(&b, ev.Process)
	fmt.Fprintf(&b, " syscall=%s request=%s reason=%s(%s) count=%d", ev.Syscall, bytesIEC(ev.RequestBytes), ev.Reason, ev.ClassifiedBy, ev.Count)
	if ev.Repeated {
		b.WriteString(" repeated")
	}
	fmt.Fprintf(&b, " overcommit=mode%d committed=%s/%s hook=%s\n", ev.Overcommit.Mode,
		bytesIEC(ev.Overcommit.CommittedBytes), bytesIEC(ev.Overcommit.CommitLimitBytes), ev.Hook)
	if _, err := t.w.WriteString(b.String()); err != nil {
		return fmt.Errorf("write commit_refusal: %w", err)
	}
	return t.w.Flush()
}

func writeProcess(b *strings.Builder, p event.Process) {
	fmt.Fprintf(b, "%d/%s", p.TGID, strconv.Quote(p.Comm))
	if p.PID != p.TGID {
		fmt.Fprintf(b, "(tid %d)", p.PID)
	}
	switch {
	case p.Pod != nil && p.Container != nil:
		fmt.Fprintf(b, " pod=%s container=%s", word(p.Pod.Namespace+"/"+p.Pod.Name), word(p.Container.Name))
	case p.Pod != nil:
		fmt.Fprintf(b, " pod=%s", word(p.Pod.Namespace+"/"+p.Pod.Name))
	case p.Container != nil:
		fmt.Fprintf(b, " container=%s", word(shortID(p.Container.ID)))
	case p.Memcg != nil:
		fmt.Fprintf(b, " cgroup=%s", strconv.Quote(p.Memcg.Path))
	}
	if p.Pod != nil && p.Pod.Owner != nil {
		fmt.Fprintf(b, " owner=%s", word(p.Pod.Owner.String()))
	}
}

func (t *Text) line(kind, s string) error {
	if _, err := t.w.WriteString(s); err != nil {
		return fmt.Errorf("write %s: %w", kind, err)
	}
	return t.w.Flush()
}

// cgroupPressure writes ev as one line.
func (t *Text) cgroupPressure(ev event.CgroupPressure) error {
	var b strings.Builder
	fmt.Fprintf(&b, "%s cgroup_memory_pressure %s", ev.Time.UTC().Format(event.Layout), ev.State)
	switch {
	case ev.Pod != nil && ev.Container != nil:
		fmt.Fprintf(&b, " pod=%s container=%s", word(ev.Pod.Namespace+"/"+ev.Pod.Name), word(ev.Container.Name))
	case ev.Pod != nil:
		fmt.Fprintf(&b, " pod=%s", word(ev.Pod.Namespace+"/"+ev.Pod.Name))
	}
	fmt.Fprintf(&b, " cgroup=%s usage=%s", strconv.Quote(ev.Memcg.Path), bytesIEC(ev.Memory.UsageBytes))
	if ev.Memory.LimitBytes != nil {
		fmt.Fprintf(&b, " limit=%s", bytesIEC(*ev.Memory.LimitBytes))
	}
	if ev.Memory.HighBytes != nil {
		fmt.Fprintf(&b, " high=%s", bytesIEC(*ev.Memory.HighBytes))
	}
	fmt.Fprintf(&b, " file=%s", bytesIEC(ev.Memory.FileBytes))
	if s := ev.Memory.SecondsToLimit; s != nil {
		fmt.Fprintf(&b, " seconds_to_limit=%.0f", *s)
	}
	fmt.Fprintf(&b, " reasons=%s for=%.0fs max_events=%d high_events=%d stall=%.1fs\n", word(strings.Join(ev.Episode.Reasons, ",")),
		ev.Episode.DurationSeconds, ev.Episode.MaxEvents, ev.Episode.HighEvents, ev.Episode.StallSeconds)
	return t.line(ev.Type, b.String())
}

// WriteMemoryPressure writes ev as one line.
func (t *Text) memoryPressure(ev event.MemoryPressure) error {
	state := "above"
	if ev.BelowThreshold {
		state = "below"
	}
	threshold := "none"
	if ev.ThresholdBytes != nil {
		threshold = bytesIEC(*ev.ThresholdBytes)
	}
	return t.line(ev.Type, fmt.Sprintf("%s memory_pressure %s %s threshold=%s available=%s capacity=%s\n",
		ev.Time.UTC().Format(event.Layout), ev.SignalName, state, threshold, signedIEC(ev.AvailableBytes), bytesIEC(ev.CapacityBytes)))
}

// WriteEviction writes ev as one line.
func (t *Text) eviction(ev event.Eviction) error {
	var b strings.Builder
	fmt.Fprintf(&b, "%s eviction pod=%s qos=%s resource=%s", ev.Time.UTC().Format(event.Layout),
		word(ev.Pod.Namespace+"/"+ev.Pod.Name), word(ev.Pod.QoS), word(ev.StarvedResource))
	if ev.AvailableBytes != nil && ev.ThresholdBytes != nil {
		fmt.Fprintf(&b, " available=%s threshold=%s", signedIEC(*ev.AvailableBytes), signedIEC(*ev.ThresholdBytes))
	}
	if ev.OffendingPod != nil {
		b.WriteString(" offending_pod")
	}
	for _, c := range ev.OffendingContainers {
		fmt.Fprintf(&b, " offending=%s", word(c.Name))
	}
	fmt.Fprintf(&b, " kernel_oom_kills_before=%d source=%s\n", len(ev.KernelOOMKills), ev.Source)
	return t.line(ev.Type, b.String())
}

// userspaceKill writes ev as one line: the first victim, how many, the
// killer.
func (t *Text) userspaceKill(ev event.UserspaceKill) error {
	var b strings.Builder
	b.WriteString(ev.Time.UTC().Format(event.Layout))
	b.WriteString(" userspace_kill victim=")
	if len(ev.Victims) > 0 {
		writeProcess(&b, ev.Victims[0])
	}
	fmt.Fprintf(&b, " victims=%d method=%s signal=%s killer=", ev.VictimCount, word(ev.Method), word(ev.Signal))
	writeProcess(&b, ev.Killer)
	if ev.KnownKiller != "" {
		fmt.Fprintf(&b, " known_killer=%s", word(ev.KnownKiller))
	}
	if m := ev.Memory; m != nil {
		fmt.Fprintf(&b, " usage=%s", bytesIEC(m.UsageBytes))
		if m.LimitBytes != nil {
			fmt.Fprintf(&b, " limit=%s", bytesIEC(*m.LimitBytes))
		}
		if m.Pressure != nil {
			fmt.Fprintf(&b, " psi_full_avg10=%.2f", m.Pressure.FullAvg10)
		}
	}
	b.WriteString("\n")
	return t.line(ev.Type, b.String())
}

// WriteNodeCondition writes ev as one line.
func (t *Text) nodeCondition(ev event.NodeCondition) error {
	since := ""
	if ev.SincePreviousSeconds != nil {
		since = fmt.Sprintf(" after=%.0fs", *ev.SincePreviousSeconds)
	}
	return t.line(ev.Type, fmt.Sprintf("%s node_condition %s=%s (was %s)%s reason=%s\n",
		ev.Time.UTC().Format(event.Layout), word(ev.Condition), word(ev.Status), word(ev.PreviousStatus), since, word(ev.Reason)))
}

// word writes s as is when it is one plain word, quoted otherwise: names
// from the API or the runtime cannot forge a field or a line.
func word(s string) string {
	if s == "" {
		return `""`
	}
	for _, r := range s {
		if r <= ' ' || r == '"' || r == '\\' || r >= 0x7f {
			return strconv.Quote(s)
		}
	}
	return s
}

// signedIEC is bytesIEC for values that may be negative.
func signedIEC(n int64) string {
	if n < 0 {
		return "-" + bytesIEC(uint64(-n))
	}
	return bytesIEC(uint64(n))
}

// shortID is a container id as runtimes' command lines print it.
func shortID(id string) string {
	if len(id) > 12 {
		return id[:12]
	}
	return id
}

// Bytes formats n in the largest binary unit that keeps it at least 1,
// with one decimal: "64.0 MiB", "3.0 GiB", "512 B". Every output says
// sizes this way (the text lines without the space).
func Bytes(n uint64) string {
	const unit = 1024
	if n < unit {
		return strconv.FormatUint(n, 10) + " B"
	}
	div, exp := uint64(unit), 0
	for m := n / unit; m >= unit && exp < 5; m /= unit {
		div *= unit
		exp++
	}
	return strconv.FormatFloat(float64(n)/float64(div), 'f', 1, 64) + " " + string("KMGTPE"[exp]) + "iB"
}

// bytesIEC is Bytes as one token of a key=value line: "64.0MiB".
func bytesIEC(n uint64) string { return strings.Replace(Bytes(n), " ", "", 1) }
