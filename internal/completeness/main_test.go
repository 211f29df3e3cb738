// SPDX-License-Identifier: Apache-2.0

package completeness_test

import (
	"os"
	"testing"

	"github.com/oomtrace/oomtrace/internal/harness/memcgtest"
	"github.com/oomtrace/oomtrace/internal/harness/testenv"
)

func TestMain(m *testing.M) {
	memcgtest.MaybeRunHog()
	testenv.Announce("internal/completeness")
	os.Exit(m.Run())
}
