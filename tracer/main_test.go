// SPDX-License-Identifier: Apache-2.0

package tracer

import (
	"os"
	"testing"

	"github.com/oomtrace/oomtrace/internal/harness/memcgtest"
	"github.com/oomtrace/oomtrace/internal/harness/testenv"
)

func TestMain(m *testing.M) {
	memcgtest.MaybeRunHog()
	maybeRunRefuser()
	testenv.Announce("tracer")
	os.Exit(m.Run())
}
