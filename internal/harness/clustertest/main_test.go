// SPDX-License-Identifier: Apache-2.0

package clustertest

import (
	"os"
	"testing"
)

func TestMain(m *testing.M) { os.Exit(Main(m)) }
