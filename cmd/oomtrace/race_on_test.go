// SPDX-License-Identifier: Apache-2.0

//go:build race

package main

// raceEnabled: built with -race.
const raceEnabled = true
