package main

import (
	"fmt"
	"os"
	"strings"
)

// parseLabels parses --label values (KEY=VALUE, or KEY for an empty
// value, as Docker does) over the --label-file lines.
func parseLabels(files, labels []string) (map[string]string, error) {
	var all []string
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			return nil, fmt.Errorf("--label-file: %w", err)
		}
		for _, line := range strings.Split(string(b), "\n") {
			line = strings.TrimSpace(line)
			if line != "" && !strings.HasPrefix(line, "#") {
				all = append(all, line)
			}
		}
	}
	all = append(all, labels...)
	if len(all) == 0 {
		return nil, nil
	}
	out := map[string]string{}
	for _, l := range all {
		k, v, _ := strings.Cut(l, "=")
		if strings.TrimSpace(k) == "" {
			return nil, fmt.Errorf("label %q has no key: use KEY=VALUE", l)
		}
		out[k] = v
	}
	return out, nil
}
