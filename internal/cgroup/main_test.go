package cgroup_test

import (
	"os"
	"testing"

	"github.com/oomtrace/oomtrace/internal/memcgtest"
)

func TestMain(m *testing.M) {
	memcgtest.MaybeRunHog()
	maybeProbeNamespace()
	memcgtest.Announce("internal/cgroup")
	os.Exit(m.Run())
}
