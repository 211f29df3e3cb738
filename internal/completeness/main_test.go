package completeness_test

import (
	"os"
	"testing"

	"github.com/oomtrace/oomtrace/internal/harness/testenv"

	"github.com/oomtrace/oomtrace/internal/harness/memcgtest"
)

func TestMain(m *testing.M) {
	memcgtest.MaybeRunHog()
	testenv.Announce("internal/completeness")
	os.Exit(m.Run())
}
