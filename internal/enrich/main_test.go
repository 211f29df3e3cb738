package enrich

import (
	"os"
	"testing"

	"github.com/oomtrace/oomtrace/internal/memcgtest"
)

func TestMain(m *testing.M) {
	memcgtest.Announce("internal/enrich")
	os.Exit(m.Run())
}
