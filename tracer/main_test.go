package tracer

import (
	"os"
	"testing"

	"github.com/oomtrace/oomtrace/internal/memcgtest"
)

func TestMain(m *testing.M) {
	memcgtest.MaybeRunHog()
	maybeRunRefuser()
	memcgtest.Announce("tracer")
	os.Exit(m.Run())
}
