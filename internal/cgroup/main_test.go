// SPDX-License-Identifier: Apache-2.0

package cgroup_test

import (
	"os"
	"testing"

	"github.com/oomtrace/oomtrace/internal/harness/memcgtest"
	"github.com/oomtrace/oomtrace/internal/harness/testenv"
)

func TestMain(m *testing.M) {
	memcgtest.MaybeRunHog()
	maybeProbeNamespace()
	testenv.Announce("internal/cgroup")
	os.Exit(m.Run())
}
