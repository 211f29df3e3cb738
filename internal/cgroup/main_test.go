package cgroup_test

import (
	"os"
	"testing"

	"github.com/oomtrace/oomtrace/internal/harness/testenv"

	"github.com/oomtrace/oomtrace/internal/harness/memcgtest"
)

func TestMain(m *testing.M) {
	memcgtest.MaybeRunHog()
	maybeProbeNamespace()
	testenv.Announce("internal/cgroup")
	os.Exit(m.Run())
}
