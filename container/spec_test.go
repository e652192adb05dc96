package container

import (
	"maps"
	"strings"
	"testing"
)

func TestParseRestart(t *testing.T) {
	for _, c := range []struct {
		in   string
		want RestartPolicy
		err  string
	}{
		{"", RestartPolicy{Name: "no"}, ""},
		{"no", RestartPolicy{Name: "no"}, ""},
		{"always", RestartPolicy{Name: "always"}, ""},
		{"unless-stopped", RestartPolicy{Name: "unless-stopped"}, ""},
		{"on-failure", RestartPolicy{Name: "on-failure"}, ""},
		{"on-failure:3", RestartPolicy{Name: "on-failure", MaxRetries: 3}, ""},
		{"on-failure:0", RestartPolicy{Name: "on-failure"}, ""},
		{"on-failure:-1", RestartPolicy{}, ">= 0"},
		{"on-failure:x", RestartPolicy{}, ">= 0"},
		{"always:2", RestartPolicy{}, "only with on-failure"},
		{"no:1", RestartPolicy{}, "only with on-failure"},
		{"sometimes", RestartPolicy{}, "use no, on-failure"},
	} {
		got, err := ParseRestart(c.in)
		if c.err != "" {
			if err == nil || !strings.Contains(err.Error(), c.err) {
				t.Errorf("ParseRestart(%q): want an error with %q, got %v", c.in, c.err, err)
			}
			continue
		}
		if err != nil || got != c.want {
			t.Errorf("ParseRestart(%q) = %+v, %v; want %+v", c.in, got, err, c.want)
		}
	}
}

func TestShouldRestart(t *testing.T) {
	for _, c := range []struct {
		p              RestartPolicy
		code, restarts int
		want           bool
	}{
		{RestartPolicy{Name: "no"}, 1, 0, false},
		{RestartPolicy{}, 1, 0, false},
		{RestartPolicy{Name: "always"}, 0, 100, true},
		{RestartPolicy{Name: "unless-stopped"}, 137, 5, true},
		{RestartPolicy{Name: "on-failure"}, 0, 0, false},
		{RestartPolicy{Name: "on-failure"}, 3, 1000, true},
		{RestartPolicy{Name: "on-failure", MaxRetries: 2}, 3, 1, true},
		{RestartPolicy{Name: "on-failure", MaxRetries: 2}, 3, 2, false},
	} {
		if got := c.p.ShouldRestart(c.code, c.restarts); got != c.want {
			t.Errorf("%+v.ShouldRestart(%d, %d) = %v, want %v", c.p, c.code, c.restarts, got, c.want)
		}
	}
}

func TestMergeLabels(t *testing.T) {
	if got := MergeLabels(nil, nil); got != nil {
		t.Errorf("no labels: %v", got)
	}
	img := map[string]string{"a": "image", "b": "image"}
	got := MergeLabels(img, map[string]string{"b": "user", "c": ""})
	if want := map[string]string{"a": "image", "b": "user", "c": ""}; !maps.Equal(got, want) {
		t.Errorf("MergeLabels = %v, want %v", got, want)
	}
	if img["b"] != "image" {
		t.Errorf("MergeLabels changed the image's labels: %v", img)
	}
}
