package e2e

import (
	"encoding/json"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

// userFile writes content to rel under the sandbox's home, the file and
// the directories it makes owned by the sandbox's user, and returns its path.
func userFile(t *testing.T, s *sandbox, rel, content string) string {
	t.Helper()
	p := filepath.Join(s.home, rel)
	for d := filepath.Dir(p); d != s.home; d = filepath.Dir(d) {
		defer s.chown(t, d)
	}
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	s.chown(t, p)
	return p
}

func (s *sandbox) chown(t *testing.T, p string) {
	if s.user.switchTo {
		if err := os.Chown(p, int(s.user.uid), int(s.user.gid)); err != nil {
			t.Fatal(err)
		}
	}
}

// --restart: on-failure:N gives up after N restarts, always brings the
// container back, and a stop or kill by the user is final.
func TestLifecycleRestartPolicy(t *testing.T) {
	t.Parallel()
	s := lifecycleSandbox(t)
	s.run("run", "-d", "--tls-verify=false", "--restart=on-failure:2", "--name", "fail", busybox(), "sh", "-c", "echo try; exit 3").ok(t)
	eventually(t, "fail to give up", 60*time.Second, func() bool {
		in := inspect(t, s, "fail")
		return in.State.Status == "exited" && in.RestartCount == 2
	})
	time.Sleep(time.Second)
	in := inspect(t, s, "fail")
	if in.State.Status != "exited" || in.State.ExitCode != 3 || in.RestartCount != 2 {
		t.Errorf("on-failure:2 after giving up: %+v", in)
	}
	if p := in.HostConfig.RestartPolicy; p.Name != "on-failure" || p.MaximumRetryCount != 2 {
		t.Errorf("inspect HostConfig.RestartPolicy: %+v", p)
	}
	if n := strings.Count(s.run("logs", "fail").ok(t).stdout, "try"); n != 3 {
		t.Errorf("on-failure:2 ran the process %d times, want 3", n)
	}
	if got := psLine(t, s, "fail"); !strings.HasPrefix(got, "fail Exited (3)") {
		t.Errorf("ps -a: %q", got)
	}

	// always: the process ends by itself (code 0), the container comes back.
	s.run("run", "-d", "--tls-verify=false", "--restart=always", "--name", "al", busybox(), "sh", "-c", "echo up; sleep 1").ok(t)
	sawRestarting := false
	eventually(t, "al to be restarted", 60*time.Second, func() bool {
		in := inspect(t, s, "al")
		sawRestarting = sawRestarting || in.State.Restarting
		return in.RestartCount >= 1 && in.State.Status == "running"
	})
	t.Logf("status restarting seen between runs: %v", sawRestarting)
	if got := psLine(t, s, "al"); !strings.HasPrefix(got, "al Up") && !strings.HasPrefix(got, "al Restarting") {
		t.Errorf("ps -a of a restarted container: %q", got)
	}
	// ps without -a lists it: it is not stopped.
	if got := s.run("ps", "--format", "{{.Names}}").ok(t).out(); got != "al" {
		t.Errorf("ps: want al, got %q", got)
	}
	s.run("stop", "-t", "2", "al").ok(t)
	in = inspect(t, s, "al")
	if in.State.Status != "exited" {
		t.Fatalf("after stop: %+v", in.State)
	}
	count := in.RestartCount
	time.Sleep(2500 * time.Millisecond)
	if in := inspect(t, s, "al"); in.State.Status != "exited" || in.RestartCount != count {
		t.Errorf("stop must be final: %+v, RestartCount %d (was %d)", in.State, in.RestartCount, count)
	}
	if got := s.run("wait", "al").ok(t).out(); got == "" {
		t.Errorf("wait after stop printed nothing")
	}

	// kill is a stop by the user too.
	s.run("run", "-d", "--tls-verify=false", "--restart=unless-stopped", "--name", "k", busybox(), "sleep", "1000").ok(t)
	s.run("kill", "k").ok(t)
	s.run("wait", "k").wantOut(t, "137")
	time.Sleep(1500 * time.Millisecond)
	if got := psLine(t, s, "k"); !strings.HasPrefix(got, "k Exited (137)") {
		t.Errorf("after kill: %q", got)
	}
	// start by the user runs it again, under the same policy.
	s.run("start", "k").ok(t)
	if got := psLine(t, s, "k"); !strings.HasPrefix(got, "k Up") {
		t.Errorf("start after kill: %q", got)
	}
	s.run("rm", "-f", "k").ok(t)

	s.run("run", "--restart=always", busybox(), "true").wantCode(t, 125).wantStderr(t, "-d")
	s.run("run", "-d", "--rm", "--restart=always", busybox(), "true").wantCode(t, 125).wantStderr(t, "--rm")
	s.run("run", "-d", "--restart=sometimes", busybox(), "true").wantCode(t, 125).wantStderr(t, "on-failure")
	s.run("run", "-d", "--restart=always:3", busybox(), "true").wantCode(t, 125).wantStderr(t, "on-failure")
}

// --label and --label-file: inspect shows them, ps filters on them.
func TestLifecycleLabels(t *testing.T) {
	t.Parallel()
	s := lifecycleSandbox(t)
	f := userFile(t, s, "labels", "# comment\nfrom.file=yes\nover=file\n\n")
	id := s.run("run", "-d", "--tls-verify=false", "--name", "lab", "--label", "a=1", "-l", "over=flag", "--label-file", f, "--label", "empty",
		busybox(), "sleep", "1000").ok(t).out()
	s.run("run", "-d", "--tls-verify=false", "--name", "plain", busybox(), "sleep", "1000").ok(t)
	want := map[string]string{"a": "1", "from.file": "yes", "over": "flag", "empty": ""}
	got := inspect(t, s, "lab").Config.Labels
	if len(got) != len(want) {
		t.Errorf("inspect Config.Labels: want %v, got %v", want, got)
	}
	for k, v := range want {
		if g, ok := got[k]; !ok || g != v {
			t.Errorf("inspect Config.Labels[%s]: want %q, got %q (%v)", k, v, g, got)
		}
	}
	for filter, out := range map[string]string{"label=a": id[:12], "label=a=1": id[:12], "label=a=2": "", "label=nope": "", "label=empty=": id[:12]} {
		if r := s.run("ps", "-aq", "--filter", filter).ok(t).out(); r != out {
			t.Errorf("ps --filter %s: want %q, got %q", filter, out, r)
		}
	}
	if r := s.run("ps", "--filter", "label=a", "--filter", "label=over=flag", "--format", "{{.Names}} {{.Labels}}").ok(t).out(); r != "lab a=1,empty=,from.file=yes,over=flag" {
		t.Errorf("ps --format {{.Labels}}: %q", r)
	}
	// The image's labels are there too, under the user's.
	layout := filepath.Join(t.TempDir(), "oci")
	for _, c := range [][]string{
		{"skopeo", "--insecure-policy", "copy", "--quiet", "oci:" + suite.layout + ":busybox:latest", "oci:" + layout + ":busybox"},
		{"umoci", "config", "--image", layout + ":busybox", "--tag", "labeled", "--config.label", "org.example.from=image", "--config.label", "over=image"},
	} {
		if out, err := exec.Command(c[0], c[1:]...).CombinedOutput(); err != nil {
			t.Fatalf("%s: %v\n%s", strings.Join(c, " "), err, out)
		}
	}
	if _, err := fixture("push.sh", layout, "labeled", img("labeled:latest")); err != nil {
		t.Fatal(err)
	}
	s.run("run", "-d", "--tls-verify=false", "--name", "imglab", "--label", "over=flag", img("labeled:latest"), "sleep", "1000").ok(t)
	got = inspect(t, s, "imglab").Config.Labels
	if want := map[string]string{"org.example.from": "image", "over": "flag"}; !maps.Equal(got, want) {
		t.Errorf("inspect Config.Labels with the image's: want %v, got %v", want, got)
	}
	if r := s.run("ps", "--filter", "label=org.example.from=image", "--format", "{{.Names}}").ok(t).out(); r != "imglab" {
		t.Errorf("ps --filter on an image's label: %q", r)
	}
	s.run("run", "--label", "=x", busybox(), "true").wantCode(t, 125).wantStderr(t, "KEY=VALUE")
	s.run("run", "--label-file", "/nonexistent", busybox(), "true").wantCode(t, 125).wantStderr(t, "--label-file")
}

// --mount for bind, tmpfs and volume; errors name the fix.
func TestLifecycleMountFlag(t *testing.T) {
	t.Parallel()
	s := lifecycleSandbox(t)
	host := filepath.Dir(userFile(t, s, "hostdir/f", "from host\n"))
	s.runSh(busybox(), "cat /m/f; echo x > /m/g 2>/dev/null && echo WRITABLE; grep ' /m ' /proc/mounts | cut -d' ' -f4 | cut -d, -f1",
		"--mount", "type=bind,source="+host+",target=/m,readonly").wantOut(t, "from host\nro")
	s.runSh(busybox(), "echo rw > /m/g && cat /m/g", "--mount", "type=bind,src="+host+",dst=/m").wantOut(t, "rw")
	r := s.runSh(busybox(), "grep ' /t ' /proc/mounts", "--mount", "type=tmpfs,target=/t,tmpfs-size=1m,tmpfs-mode=1770").ok(t)
	if !strings.Contains(r.stdout, "tmpfs") || !strings.Contains(r.stdout, "size=1024k") || !strings.Contains(r.stdout, "mode=1770") {
		t.Errorf("--mount type=tmpfs:\n%s", r)
	}
	s.runSh(busybox(), "echo kept > /v/file", "--mount", "type=volume,source=mv,target=/v").ok(t)
	s.runSh(busybox(), "cat /v/file", "--mount", "source=mv,target=/v,ro").wantOut(t, "kept")
	if got := s.run("volume", "ls", "-q").ok(t).out(); got != "mv" {
		t.Errorf("volume ls -q after --mount type=volume: %q", got)
	}
	s.run("run", "-d", "--tls-verify=false", "--name", "mnt", "--mount", "type=volume,src=mv,target=/v", busybox(), "sleep", "1000").ok(t)
	if m := inspect(t, s, "mnt").Mounts; len(m) != 1 || m[0].Type != "volume" || m[0].Name != "mv" || m[0].Destination != "/v" || !m[0].RW {
		t.Errorf("inspect Mounts of a --mount volume: %+v", m)
	}
	for _, c := range []struct{ mount, says string }{
		{"type=bind,target=/x", "source=HOST-PATH"},
		{"type=nfs,target=/x", "type=bind"},
		{"source=" + host + ",target=/x", "type=bind"},
		{"type=tmpfs,source=x,target=/t", "drop source"},
		{"type=volume,source=v", "target="},
		{"type=bind,source=" + host + ",target=rel", "absolute"},
		{"type=bind,source=" + host + ",target=/x,tmpfs-size=1m", "type=tmpfs"},
		{"type=tmpfs,target=/x,tmpfs-size=lots", "64m"},
		{"type=bind,source=" + host + ",target=/x,colour=red", "unknown key"},
		{"type=bind,source=" + host + "/missing,target=/x", "create it first"},
	} {
		s.run("run", "--rm", "--mount", c.mount, busybox(), "true").wantCode(t, 125).wantStderr(t, c.says)
	}
}

// volume create|ls|inspect|rm|prune, anonymous volumes and rm -v.
func TestLifecycleVolumeCommands(t *testing.T) {
	t.Parallel()
	s := lifecycleSandbox(t)
	s.run("volume", "create", "v1").wantOut(t, "v1")
	anon := s.run("volume", "create").ok(t).out()
	if !regexp.MustCompile(`^[0-9a-f]{64}$`).MatchString(anon) {
		t.Errorf("volume create without a name: %q", anon)
	}
	if got := s.run("volume", "ls", "-q").ok(t).out(); got != strings.Join(sortedStrings(anon, "v1"), "\n") {
		t.Errorf("volume ls -q: %q", got)
	}
	if got := s.run("volume", "ls").ok(t).out(); !strings.HasPrefix(got, "DRIVER") || !regexp.MustCompile(`(?m)^local +v1$`).MatchString(got) {
		t.Errorf("volume ls: %q", got)
	}
	r := s.run("volume", "inspect", "v1").ok(t)
	var vols []struct{ Name, Mountpoint, CreatedAt, Driver string }
	if err := json.Unmarshal([]byte(r.stdout), &vols); err != nil || len(vols) != 1 {
		t.Fatalf("volume inspect: %v\n%s", err, r)
	}
	v := vols[0]
	if v.Name != "v1" || v.Mountpoint != filepath.Join(s.home, ".local/share/unroot/volumes/v1/_data") || v.Driver != "local" {
		t.Errorf("volume inspect: %+v", v)
	}
	if ct, err := time.Parse(time.RFC3339, v.CreatedAt); err != nil || time.Since(ct) > time.Hour {
		t.Errorf("volume inspect CreatedAt %q: %v", v.CreatedAt, err)
	}
	s.run("volume", "inspect", "nosuch").wantCode(t, 1).wantStderr(t, "no such volume")

	// In use: refused without -f. Files of other ids in it are removed.
	s.run("run", "-d", "--tls-verify=false", "--name", "user", "-v", "v1:/data", busybox(), "sh", "-c", "mkdir /data/d; touch /data/d/f; chown -R 1234:1234 /data/d; exec sleep 1000").ok(t)
	eventually(t, "the volume's files", 10*time.Second, func() bool {
		return s.run("exec", "user", "test", "-e", "/data/d/f").code == 0
	})
	s.run("volume", "rm", "v1").wantCode(t, 1).wantStderr(t, "in use", "user", "rm -f")
	s.run("rm", "-f", "user").ok(t)
	s.run("volume", "rm", "v1").wantOut(t, "v1")
	if _, err := os.Stat(v.Mountpoint); !os.IsNotExist(err) {
		t.Errorf("volume rm left %s: %v", v.Mountpoint, err)
	}

	// -v /path makes an anonymous volume; rm -v removes it, rm alone not.
	s.run("run", "--tls-verify=false", "--name", "a1", "-v", "/anon", busybox(), "sh", "-c", "echo x > /anon/f").ok(t)
	s.run("run", "--tls-verify=false", "--name", "a2", "-v", "/anon", busybox(), "true").ok(t)
	m1, m2 := inspect(t, s, "a1").Mounts, inspect(t, s, "a2").Mounts
	if len(m1) != 1 || m1[0].Type != "volume" || len(m1[0].Name) != 64 || len(m2) != 1 || m2[0].Name == m1[0].Name {
		t.Fatalf("anonymous volumes in inspect: %+v %+v", m1, m2)
	}
	if b, err := os.ReadFile(filepath.Join(m1[0].Source, "f")); err != nil || string(b) != "x\n" {
		t.Errorf("anonymous volume content: %q %v", b, err)
	}
	// Used volumes are not pruned.
	s.run("volume", "prune", "-f").ok(t)
	s.run("volume", "inspect", m1[0].Name).ok(t)
	s.run("rm", "-v", "a1").ok(t)
	s.run("volume", "inspect", m1[0].Name).wantCode(t, 1)
	s.run("rm", "a2").ok(t)
	s.run("volume", "inspect", m2[0].Name).ok(t)
	// prune: unused anonymous volumes only; -a the named ones too.
	s.run("volume", "create", "named").ok(t)
	// (anon was made by volume create: it has a name of sorts, and Docker
	// does not count it as anonymous either.)
	if r := s.run("volume", "prune", "-f").ok(t); !strings.Contains(r.stdout, m2[0].Name) || strings.Contains(r.stdout, anon) {
		t.Errorf("volume prune must remove the unused anonymous volume only:\n%s", r)
	}
	if got := s.run("volume", "ls", "-q").ok(t).out(); got != strings.Join(sortedStrings(anon, "named"), "\n") {
		t.Errorf("volume ls -q after prune: %q", got)
	}
	s.run("volume", "prune", "-f", "-a").ok(t)
	if got := s.run("volume", "ls", "-q").ok(t).out(); got != "" {
		t.Errorf("volume ls -q after prune -a: %q", got)
	}
	// run --rm removes its anonymous volumes itself.
	s.runSh(busybox(), "touch /anon/f; chown 1234 /anon/f", "-v", "/anon").ok(t)
	if got := s.run("volume", "ls", "-q").ok(t).out(); got != "" {
		t.Errorf("run --rm left its anonymous volume: %q", got)
	}
	s.run("volume", "frobnicate").wantCode(t, 125).wantStderr(t, "create, ls")
}

func sortedStrings(a ...string) []string {
	out := append([]string{}, a...)
	for i := range out {
		for j := i + 1; j < len(out); j++ {
			if out[j] < out[i] {
				out[i], out[j] = out[j], out[i]
			}
		}
	}
	return out
}

// run -d -i keeps stdin open for attach; attach follows the output and
// forwards Ctrl-C; --init is accepted.
func TestLifecycleAttach(t *testing.T) {
	t.Parallel()
	s := lifecycleSandbox(t)
	s.run("run", "-d", "-i", "--init", "--tls-verify=false", "--name", "cat", busybox(), "sh", "-c", `while read l; do echo "got $l"; done; echo stdin-closed`).ok(t)
	done := make(chan result, 1)
	go func() { done <- s.runWith(runOpts{stdin: strings.NewReader("hello\n")}, "attach", "cat") }()
	eventually(t, "the line written through attach", 30*time.Second, func() bool {
		return strings.Contains(s.run("logs", "cat").stdout, "got hello")
	})
	// The first attach's stdin ended; the container's did not, and a
	// second attach writes to it too.
	done2 := make(chan result, 1)
	go func() {
		done2 <- s.runWith(runOpts{stdin: strings.NewReader("again\n")}, "attach", "--sig-proxy=false", "cat")
	}()
	eventually(t, "the second attach's line", 30*time.Second, func() bool {
		return strings.Contains(s.run("logs", "cat").stdout, "got again")
	})
	s.run("stop", "-t", "1", "cat").ok(t)
	var r result
	select {
	case r = <-done:
	case <-time.After(30 * time.Second):
		t.Fatal("attach did not end with the container")
	}
	if !strings.Contains(r.stdout, "got hello") || strings.Contains(r.stdout, "stdin-closed") {
		t.Errorf("attach output:\n%s", r)
	}
	if r.code != 143 {
		t.Errorf("attach exits with the container's code, want 143:\n%s", r)
	}
	if r := <-done2; !strings.Contains(r.stdout, "got again") || strings.Contains(r.stdout, "got hello") {
		t.Errorf("the second attach shows the output from its start on:\n%s", r)
	}

	// Ctrl-C on attach's terminal reaches the container (--sig-proxy).
	s.run("run", "-d", "--tls-verify=false", "--name", "sig", busybox(), "sh", "-c",
		`trap "echo got INT; exit 5" INT; while true; do echo tick; sleep 0.3; done`).ok(t)
	p := s.startPTY("attach", "sig")
	p.expect("tick", 30*time.Second)
	p.send("\x03")
	p.expect("got INT", 20*time.Second)
	p.wait(30*time.Second).wantCode(t, 5)
	s.run("attach", "sig").wantCode(t, 125).wantStderr(t, "not running")
	// --init is no-op: unroot's init is PID 1 anyway.
	s.runSh(busybox(), "cut -c1-11 /proc/1/comm", "--init").wantOut(t, "unroot-init")
}

// A foreground run that is not --rm keeps its logs, prints as before.
func TestLifecycleForegroundLogs(t *testing.T) {
	t.Parallel()
	s := lifecycleSandbox(t)
	r := s.run("run", "--tls-verify=false", "--name", "fg", busybox(), "sh", "-c", "echo hi; echo err >&2; exit 2").wantCode(t, 2)
	if r.out() != "hi" || !strings.Contains(r.stderr, "err") {
		t.Errorf("foreground run output:\n%s", r)
	}
	l := s.run("logs", "fg").ok(t)
	if l.out() != "hi" || strings.TrimSpace(l.stderr) != "err" {
		t.Errorf("logs of a foreground run:\n%s", l)
	}
	s.run("start", "-a", "fg").wantCode(t, 2)
	if got := s.run("logs", "fg").ok(t).out(); got != "hi\nhi" {
		t.Errorf("logs after start -a: %q", got)
	}
	// With a terminal: the prompt shows before its newline, as before.
	p := s.startPTY("run", "-it", "--tls-verify=false", "--name", "tty", busybox(), "sh")
	p.expect("# ", 30*time.Second)
	p.send("echo in-$((6*7))\r")
	p.expect("in-42", 10*time.Second)
	p.send("exit\r")
	p.wait(30 * time.Second).ok(t)
	if got := s.run("logs", "tty").ok(t).stdout; !strings.Contains(got, "in-42") {
		t.Errorf("logs of a run -it:\n%s", got)
	}
	// run --rm records nothing.
	s.run("run", "--rm", "--tls-verify=false", "--name", "gone", busybox(), "echo", "x").wantOut(t, "x")
	s.run("logs", "gone").wantCode(t, 125)
}
