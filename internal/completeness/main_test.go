package completeness_test

import (
	"os"
	"testing"

	"github.com/oomtrace/oomtrace/internal/memcgtest"
)

func TestMain(m *testing.M) {
	memcgtest.MaybeRunHog()
	memcgtest.Announce("internal/completeness")
	os.Exit(m.Run())
}
