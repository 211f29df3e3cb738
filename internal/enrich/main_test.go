// SPDX-License-Identifier: Apache-2.0

package enrich

import (
	"os"
	"testing"

	"github.com/oomtrace/oomtrace/internal/harness/testenv"
)

func TestMain(m *testing.M) {
	testenv.Announce("internal/enrich")
	os.Exit(m.Run())
}
