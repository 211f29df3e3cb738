// SPDX-License-Identifier: Apache-2.0

package memwatch

import (
	"os"
	"testing"

	"github.com/oomtrace/oomtrace/internal/harness/memcgtest"
	"github.com/oomtrace/oomtrace/internal/harness/testenv"
)

func TestMain(m *testing.M) {
	memcgtest.MaybeRunHog()
	testenv.Announce("memwatch")
	os.Exit(m.Run())
}
