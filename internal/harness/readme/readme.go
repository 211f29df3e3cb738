// SPDX-License-Identifier: Apache-2.0

// Package readme reads the commands the README and the docs give their
// users, so that a test runs exactly what a user copies, and checks that
// the docs hang together (every page linked, every link leading
// somewhere).
package readme

import (
	"bufio"
	"fmt"
	"os"
	"strings"
)

// Command is the first one-line command that starts with prefix in the
// Markdown files at paths, the first file first, split into words as a
// shell splits them.
func Command(prefix string, paths ...string) ([]string, error) {
	for _, path := range paths {
		words, found, err := command(path, prefix)
		if err != nil || found {
			return words, err
		}
	}
	return nil, fmt.Errorf("%s have no one-line command %q", strings.Join(paths, ", "), prefix+"...")
}

// command is Command in one file; found is false when it has none.
func command(path, prefix string) (words []string, found bool, err error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, false, err
	}
	defer f.Close()
	s := bufio.NewScanner(f)
	for s.Scan() {
		line := s.Text()
		if !strings.HasPrefix(line, prefix) || strings.HasSuffix(strings.TrimSpace(line), `\`) {
			continue
		}
		words, err := shellWords(line)
		return words, true, err
	}
	return nil, false, s.Err()
}

// shellWords splits a command line as a POSIX shell does without
// expansions: blanks separate words, quotes group them, a backslash
// outside single quotes escapes the next character, and an unquoted #
// at a word's start begins a comment.
func shellWords(line string) ([]string, error) {
	var words []string
	var w strings.Builder
	inWord := false
	var quote rune
	escaped := false
	for _, r := range line {
		switch {
		case escaped:
			w.WriteRune(r)
			escaped = false
		case quote == '\'':
			if r == '\'' {
				quote = 0
			} else {
				w.WriteRune(r)
			}
		case quote == '"':
			switch r {
			case '"':
				quote = 0
			case '\\':
				escaped = true
			default:
				w.WriteRune(r)
			}
		case r == '\'' || r == '"':
			quote, inWord = r, true
		case r == '\\':
			escaped, inWord = true, true
		case r == ' ' || r == '\t':
			if inWord {
				words = append(words, w.String())
				w.Reset()
				inWord = false
			}
		case r == '#' && !inWord:
			return words, nil
		default:
			w.WriteRune(r)
			inWord = true
		}
	}
	if quote != 0 || escaped {
		return nil, fmt.Errorf("unterminated quote in %q", line)
	}
	if inWord {
		words = append(words, w.String())
	}
	return words, nil
}
