package main

import (
	"strings"
	"testing"
)

func TestParseMount(t *testing.T) {
	for _, c := range []struct {
		in   string
		want mountOpt
		err  string
	}{
		{"type=bind,source=/h,target=/c", mountOpt{Type: "bind", Source: "/h", Target: "/c"}, ""},
		{"type=bind,src=/h,dst=/c,readonly", mountOpt{Type: "bind", Source: "/h", Target: "/c", ReadOnly: true}, ""},
		{"type=bind,src=/h,destination=/c,ro=false", mountOpt{Type: "bind", Source: "/h", Target: "/c"}, ""},
		{`type=bind,"source=/a,b",target=/c`, mountOpt{Type: "bind", Source: "/a,b", Target: "/c"}, ""},
		{"type=bind,source=/h,target=/c,bind-propagation=rprivate", mountOpt{Type: "bind", Source: "/h", Target: "/c"}, ""},
		{"target=/c", mountOpt{Type: "volume", Target: "/c"}, ""},
		{"type=volume,source=data,target=/c,volume-nocopy", mountOpt{Type: "volume", Source: "data", Target: "/c"}, ""},
		{"type=tmpfs,target=/t,tmpfs-size=64m,tmpfs-mode=1777", mountOpt{Type: "tmpfs", Target: "/t", TmpfsSize: 64 << 20, TmpfsMode: 0o1777}, ""},
		{"type=bind,target=/c", mountOpt{}, "needs source="},
		{"type=nfs,target=/c", mountOpt{}, "use type=bind"},
		{"type=bind,source=/h", mountOpt{}, "add target="},
		{"type=bind,source=/h,target=c", mountOpt{}, "absolute"},
		{"type=tmpfs,source=x,target=/t", mountOpt{}, "drop source=x"},
		{"source=/h,target=/c", mountOpt{}, "use type=bind"},
		{"type=volume,source=../x,target=/c", mountOpt{}, "use type=bind"},
		{"type=bind,source=/h,target=/c,tmpfs-size=1m", mountOpt{}, "only with type=tmpfs"},
		{"type=tmpfs,target=/t,tmpfs-size=big", mountOpt{}, "64m"},
		{"type=tmpfs,target=/t,tmpfs-mode=999", mountOpt{}, "octal"},
		{"type=bind,source=/h,target=/c,readonly=maybe", mountOpt{}, "readonly=true"},
		{"type=bind,source=/h,target=/c,bind-propagation=shared", mountOpt{}, "private"},
		{"type=bind,source=/h,target=/c,color=red", mountOpt{}, "unknown key"},
		{"type=bind,,target=/c", mountOpt{}, "empty field"},
	} {
		got, err := parseMount(c.in)
		if c.err != "" {
			if err == nil || !strings.Contains(err.Error(), c.err) {
				t.Errorf("parseMount(%q): want an error with %q, got %v", c.in, c.err, err)
			}
			continue
		}
		if err != nil || got != c.want {
			t.Errorf("parseMount(%q) = %+v, %v; want %+v", c.in, got, err, c.want)
		}
	}
}
