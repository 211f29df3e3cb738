// SPDX-License-Identifier: Apache-2.0

package completeness_test

import (
	"testing"

	"github.com/oomtrace/oomtrace/internal/completeness"
	"github.com/oomtrace/oomtrace/internal/harness/memcgtest"
	"github.com/oomtrace/oomtrace/internal/harness/testenv"
)

// TestKillWithoutHooks: a real kill while nothing watches is unobserved.
// (Other processes of the machine may be killed meanwhile: at least one.)
func TestKillWithoutHooks(t *testing.T) {
	testenv.RequirePrivileged(t)
	read := func() (uint64, error) { return completeness.ReadKernelKills("/proc") }
	start, err := read()
	if err != nil {
		t.Fatal(err)
	}
	a := completeness.NewAccountant(read, start)
	cg := memcgtest.New(t, nil, 32<<20)
	hog := cg.Start(t, memcgtest.HogOptions{Bytes: 128 << 20})
	hog.WaitKilled(t)
	total, grew, err := a.Unobserved(func() (uint64, error) { return 0, nil })
	if err != nil || total < 1 || grew != total {
		t.Errorf("unobserved %d (+%d) %v, want at least the hog's kill", total, grew, err)
	}
}
