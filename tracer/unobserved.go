// SPDX-License-Identifier: Apache-2.0

package tracer

import (
	"context"
	"time"

	"github.com/oomtrace/oomtrace/internal/completeness"
)

// unobservedEvery is how often Run says that the kernel killed a task no
// hook saw.
const unobservedEvery = 10 * time.Second

// startAccounting counts the kills no hook saw since the hooks started
// counting (pinned: since oomtrace first started on this boot), and says
// what it found; nothing (logged) where the kernel does not count kills.
func (t *Tracer) startAccounting(procfs string) {
	acc := t.Accounting()
	if !acc.KernelCounts {
		t.log.Warn("kills the hooks miss are not counted: the kernel does not count OOM kills (oom_kill in vmstat, since 4.13)")
		return
	}
	a := completeness.NewAccountant(func() (uint64, error) { return completeness.ReadKernelKills(procfs) }, acc.KernelKillsAtCreate)
	missed, _, err := a.Unobserved(t.hooked)
	if err != nil {
		t.log.Warn("kills the hooks miss are not counted", "err", err)
		return
	}
	t.accountant = a
	if t.adopted {
		t.log.Info("took over the hooks an earlier oomtrace pinned: they recorded while no oomtrace ran, and the kills it did not write out are read now",
			"generation", t.gen, "hooks_since", acc.Created.Format(time.RFC3339), "kills_hooked", acc.Kills(), "unobserved", missed)
	}
	t.log.Info("the kernel's count of OOM kills before the hooks first attached; oomtrace counts every kill no hook sees from then on (oomtrace_oom_kills_unobserved_total)",
		"before_hooks", a.Start(), "unobserved", missed)
	if missed > 0 {
		t.log.Warn("the kernel killed tasks that no hook saw", "unobserved", missed)
	}
}

func (t *Tracer) hooked() (uint64, error) { return t.Accounting().KernelCounted(), nil }

// Unobserved returns how many kills the kernel made that no hook saw since
// the hooks started counting, and how many of them are new since the last
// call; zeros where the kernel does not count kills.
func (t *Tracer) Unobserved() (total, grew uint64, err error) {
	if t.accountant == nil {
		return 0, 0, nil
	}
	return t.accountant.Unobserved(t.hooked)
}

// watchUnobserved says, every unobservedEvery until ctx is done, when the
// kernel killed a task that no hook saw.
func (t *Tracer) watchUnobserved(ctx context.Context) {
	if t.accountant == nil {
		return
	}
	tick := time.NewTicker(unobservedEvery)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
			if total, grew, err := t.Unobserved(); err == nil && grew > 0 {
				t.log.Warn("the kernel killed tasks that no hook saw", "new", grew, "unobserved", total)
			}
		}
	}
}
