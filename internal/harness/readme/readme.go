// SPDX-License-Identifier: Apache-2.0

// Package readme reads the commands a README gives its users, so that a
// test runs exactly what a user copies.
package readme

import (
	"bufio"
	"fmt"
	"os"
	"strings"
)

// Command is the first one-line command in the Markdown file at path
// that starts with prefix, split into words as a shell splits them.
func Command(path, prefix string) ([]string, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	s := bufio.NewScanner(f)
	for s.Scan() {
		line := s.Text()
		if !strings.HasPrefix(line, prefix) || strings.HasSuffix(strings.TrimSpace(line), `\`) {
			continue
		}
		return shellWords(line)
	}
	if err := s.Err(); err != nil {
		return nil, err
	}
	return nil, fmt.Errorf("%s has no one-line command %q", path, prefix+"...")
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
