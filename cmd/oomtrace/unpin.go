// SPDX-License-Identifier: Apache-2.0

package main

import (
	"errors"
	"fmt"
	"io"

	flag "github.com/spf13/pflag"

	"github.com/oomtrace/oomtrace/tracer"
)

// unpin is `oomtrace unpin`: for an uninstall, it detaches the hooks an
// oomtrace pinned and removes their maps. Nothing to remove is success.
func unpin(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("oomtrace unpin", flag.ContinueOnError)
	fs.SetOutput(stderr)
	path := fs.String("pin.path", tracer.DefaultPinPath, "the pin path oomtrace ran with")
	fs.Usage = func() {
		fmt.Fprint(stderr, "Usage: oomtrace unpin [--pin.path PATH]\n\nDetaches the hooks oomtrace left pinned (--pin) and removes their maps:\nwhat they recorded and no oomtrace read is lost. Refuses while an\noomtrace runs with that pin path.\n\nFlags:\n")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "oomtrace unpin: unexpected argument %q\n", fs.Arg(0))
		return 2
	}
	if err := absolutePath(*path); err != nil {
		fmt.Fprintf(stderr, "oomtrace unpin: --pin.path %v\n", err)
		return 2
	}
	if err := checkPrivileges(); err != nil {
		fmt.Fprintf(stderr, "oomtrace unpin: %v\n", err)
		return 1
	}
	removed, err := tracer.Unpin(*path)
	if err != nil {
		fmt.Fprintf(stderr, "oomtrace unpin: %v\n", err)
		return 1
	}
	if removed {
		fmt.Fprintf(stdout, "removed %s: no oomtrace hook is attached from it any more\n", *path)
	} else {
		fmt.Fprintf(stdout, "nothing pinned at %s\n", *path)
	}
	return 0
}
