//go:build ignore

// dashboard_rules prints the dashboard's queries as a Prometheus rules
// file of recording rules, its variables given values, for promtool check
// rules to parse every query (make test-rules):
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
	n := 0
	for _, p := range d.Panels {
		for _, t := range p.Targets {
			n++
			expr, _ := json.Marshal(vars.Replace(t.Expr)) // a JSON string is a YAML string
			fmt.Printf("      - record: dashboard:query%d\n        expr: %s\n", n, expr)
		}
	}
}
