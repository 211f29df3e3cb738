// SPDX-License-Identifier: Apache-2.0

//go:build ignore

// dashboard_rules prints the dashboard's queries as a Prometheus rules
// file of recording rules (dashboard:<panel title>:<target>), its
// variables given values, for promtool to parse every query and to test
// what each returns (make test-rules, dashboard.rules.test.yaml):
//
//	go run dashboard_rules.go > /tmp/dashboard.rules.yaml
package main

import (
	"encoding/json"
	"fmt"
	"os"
	"strings"
)

func main() {
	data, err := os.ReadFile("dashboard.json")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	var d struct {
		Panels []struct {
			Title   string `json:"title"`
			Targets []struct {
				Expr string `json:"expr"`
			} `json:"targets"`
		} `json:"panels"`
	}
	if err := json.Unmarshal(data, &d); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	vars := strings.NewReplacer("$__rate_interval", "5m", "$__range", "6h", "$namespace", ".*")
	fmt.Println("groups:\n  - name: dashboard\n    rules:")
	for _, p := range d.Panels {
		for i, t := range p.Targets {
			expr, _ := json.Marshal(vars.Replace(t.Expr)) // a JSON string is a YAML string
			fmt.Printf("      - record: dashboard:%s:%d\n        expr: %s\n", slug(p.Title), i, expr)
		}
	}
}

// slug is a panel's title as a metric name's part: lower case letters and
// digits, other runs as one underscore.
func slug(title string) string {
	var b strings.Builder
	under := false
	for _, r := range strings.ToLower(title) {
		if r >= 'a' && r <= 'z' || r >= '0' && r <= '9' {
			if under && b.Len() > 0 {
				b.WriteByte('_')
			}
			b.WriteRune(r)
			under = false
		} else {
			under = true
		}
	}
	return b.String()
}
