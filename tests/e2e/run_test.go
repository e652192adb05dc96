package e2e

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestVersion(t *testing.T) {
	t.Parallel()
	r := runAs(t, nil, "--version").ok(t)
	if !strings.Contains(strings.ToLower(r.stdout), "unroot") {
		t.Errorf("--version does not name the program:\n%s", r)
	}
}

func TestHelpPerVerb(t *testing.T) {
	t.Parallel()
	for verb, flags := range map[string][]string{
		"run":    {"--rm", "--interactive", "--tty", "--env", "--workdir", "--entrypoint", "--user", "--hostname", "--net"},
		"pull":   {"--tls-verify", "--creds", "--cert-dir"},
		"images": nil,
		"rmi":    nil,
		"info":   nil,
		"login":  {"--username", "--password"},
	} {
		r := runAs(t, nil, verb, "--help")
		if r.code != 0 {
			t.Errorf("unroot %s --help: want exit 0:\n%s", verb, r)
			continue
		}
		help := r.stdout + r.stderr
		for _, f := range flags {
			if !strings.Contains(help, f) {
				t.Errorf("unroot %s --help does not mention %s:\n%s", verb, f, r)
			}
		}
	}
}

// Root inside, the caller's uid outside; the rest of the ids come from the
// user's /etc/subuid range.
func TestRunUIDZeroAndIDMaps(t *testing.T) {
	t.Parallel()
	u := suite.user
	if u.subuid.Count == 0 || u.subgid.Count == 0 {
		t.Skipf("%s has no subuid/subgid range (run hack/setup-host.sh as root)", u.name)
	}
	s := sandboxFor(t, nil)
	r := s.runSh(busybox(), "id -u; id -g; echo ---; cat /proc/self/uid_map; echo ---; cat /proc/self/gid_map").ok(t)
	parts := strings.Split(r.stdout, "---\n")
	if len(parts) != 3 {
		t.Fatalf("unexpected output:\n%s", r)
	}
	if ids := strings.Fields(parts[0]); len(ids) != 2 || ids[0] != "0" || ids[1] != "0" {
		t.Errorf("want uid 0 gid 0 inside, got %q", parts[0])
	}
	check := func(what string, got [][3]int64, id uint32, sub idRange) {
		want := [][3]int64{{0, int64(id), 1}, {1, sub.Start, 65536}}
		if fmt.Sprint(got) != fmt.Sprint(want) {
			t.Errorf("%s: want %v, got %v", what, want, got)
		}
	}
	check("uid_map", parseIDMap(t, parts[1]), u.uid, u.subuid)
	check("gid_map", parseIDMap(t, parts[2]), u.gid, u.subgid)
}

func TestRunExitCodePropagates(t *testing.T) {
	t.Parallel()
	s := sandboxFor(t, nil)
	s.runSh(busybox(), "exit 7").wantCode(t, 7)
	s.runSh(busybox(), "exit 0").wantCode(t, 0)
	s.run("run", "--rm", "--tls-verify=false", busybox(), "false").wantCode(t, 1)
}

// The shell kills itself. (This needs the user's process not to be PID 1 of
// the container's PID namespace, which ignores signals it has no handler for:
// in unroot the monitor is PID 1 and the process PID 2.)
func TestRunKilledBySignalGives128PlusN(t *testing.T) {
	t.Parallel()
	s := sandboxFor(t, nil)
	s.pull(busybox())
	for _, tc := range []struct {
		sig  string
		want int
	}{{"KILL", 137}, {"TERM", 143}, {"INT", 130}, {"HUP", 129}} {
		t.Run(tc.sig, func(t *testing.T) {
			s.runSh(busybox(), "kill -"+tc.sig+" $$; sleep 5").wantCode(t, tc.want)
		})
	}
}

func TestRunCommandNotFoundGives127(t *testing.T) {
	t.Parallel()
	s := sandboxFor(t, nil)
	s.run("run", "--rm", "--tls-verify=false", busybox(), "/no/such/command").wantCode(t, 127)
	s.run("run", "--rm", "--tls-verify=false", busybox(), "no-such-command").wantCode(t, 127)
}

func TestRunNotExecutableGives126(t *testing.T) {
	t.Parallel()
	s := sandboxFor(t, nil)
	s.run("run", "--rm", "--tls-verify=false", busybox(), "/etc/passwd").wantCode(t, 126)
}

// Layer 2 of `layered` adds /data/owned101 (101:101) and /data/gone; layer 3
// deletes /data/gone with a whiteout.
func TestRunLayeredImageOwnershipAndWhiteout(t *testing.T) {
	t.Parallel()
	s := sandboxFor(t, nil)
	s.runSh(layered(), "stat -c %u:%g /data/owned101").wantOut(t, "101:101")
	s.runSh(layered(), "cat /data/owned101").wantOut(t, "owned")
	s.runSh(layered(), "ls -A /data").wantOut(t, "owned101")
	s.runSh(layered(), "test -e /data/gone").wantCode(t, 1)
	// Busybox's own files are root's.
	s.runSh(layered(), "stat -c %u:%g /bin/busybox /etc/passwd").wantOut(t, "0:0\n0:0")
	s.runSh(layered(), "stat -c %u /home/app").wantOut(t, "1000")
}

func TestRunWritesAreNotSeenByTheNextContainer(t *testing.T) {
	t.Parallel()
	s := sandboxFor(t, nil)
	// The first one is kept (no --rm): its writes must still not leak.
	s.run("run", "--tls-verify=false", busybox(), "sh", "-c",
		"echo x >/etc/marker && rm /bin/ls && echo y >/tmp/marker && cat /etc/marker").wantOut(t, "x")
	s.runSh(busybox(), "test -e /etc/marker").wantCode(t, 1)
	s.runSh(busybox(), "test -e /tmp/marker").wantCode(t, 1)
	s.runSh(busybox(), "test -e /bin/ls").wantCode(t, 0)
	s.runSh(busybox(), "echo z >/etc/marker2").ok(t)
	s.runSh(busybox(), "test -e /etc/marker2").wantCode(t, 1)
}

func TestRunRmLeavesNoContainer(t *testing.T) {
	t.Parallel()
	s := sandboxFor(t, nil)
	s.runSh(busybox(), "echo hello >/hello").ok(t)
	if n := s.containerCount(t); n != 0 {
		t.Errorf("after run --rm the store has %d containers, want 0", n)
	}
	// Control: without --rm the container stays (so the count above looks
	// at the right file).
	s.run("run", "--tls-verify=false", busybox(), "true").ok(t)
	if n := s.containerCount(t); n != 1 {
		t.Errorf("after run without --rm the store has %d containers, want 1", n)
	}
}

func TestRunEnv(t *testing.T) {
	t.Parallel()
	s := sandboxFor(t, nil)
	s.runSh(busybox(), `echo "$FOO|$EMPTY|${EMPTY+set}|$WITH_EQ|$PATH"`,
		"-e", "FOO=bar", "-e", "EMPTY=", "--env", "WITH_EQ=a=b").
		wantOut(t, "bar||set|a=b|/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin")
	// The host's environment does not leak in.
	s.runSh(busybox(), `echo "${LOGNAME-unset}"`).wantOut(t, "unset")
	// -e overrides the image's Env.
	s.runSh(busybox(), `echo "$PATH"`, "-e", "PATH=/bin").wantOut(t, "/bin")
}

func TestRunWorkdir(t *testing.T) {
	t.Parallel()
	s := sandboxFor(t, nil)
	s.run("run", "--rm", "--tls-verify=false", "-w", "/etc", busybox(), "pwd").wantOut(t, "/etc")
	s.run("run", "--rm", "--tls-verify=false", "--workdir=/etc", busybox(), "pwd").wantOut(t, "/etc")
	// Like Docker, a missing working directory is created.
	s.run("run", "--rm", "--tls-verify=false", "-w", "/does/not/exist", busybox(), "pwd").wantOut(t, "/does/not/exist")
	// The image's default is /.
	s.run("run", "--rm", "--tls-verify=false", busybox(), "pwd").wantOut(t, "/")
}

func TestRunEntrypoint(t *testing.T) {
	t.Parallel()
	s := sandboxFor(t, nil)
	s.run("run", "--rm", "--tls-verify=false", "--entrypoint", "echo", busybox(), "hello", "world").wantOut(t, "hello world")
	s.run("run", "--rm", "--tls-verify=false", "--entrypoint", "/bin/cat", busybox(), "/etc/group").
		wantOut(t, "root:x:0:\napp:x:1000:\nnogroup:x:65534:")
	// An empty --entrypoint resets it: CMD runs alone.
	s.run("run", "--rm", "--tls-verify=false", "--entrypoint", "", busybox(), "echo", "no-entrypoint").wantOut(t, "no-entrypoint")
}

func TestRunUser(t *testing.T) {
	t.Parallel()
	s := sandboxFor(t, nil)
	// Numeric uid in /etc/passwd: its primary group from there.
	s.runSh(busybox(), "id -u; id -g", "-u", "1000").wantOut(t, "1000\n1000")
	// By name, and uid:gid.
	s.runSh(busybox(), "id -u; id -g", "--user", "app").wantOut(t, "1000\n1000")
	s.runSh(busybox(), "id -u; id -g", "-u", "1000:65534").wantOut(t, "1000\n65534")
	// A uid not in /etc/passwd gets gid 0, as with Docker.
	s.runSh(busybox(), "id -u; id -g", "-u", "4242").wantOut(t, "4242\n0")
	// Files it creates are its own; it cannot write root's.
	s.runSh(busybox(), "touch /tmp/f && stat -c %u:%g /tmp/f", "-u", "1000").wantOut(t, "1000:1000")
	s.runSh(busybox(), "echo x >/etc/passwd", "-u", "1000").wantCode(t, 1)
	// HOME comes from /etc/passwd.
	s.runSh(busybox(), `echo "$HOME"`, "-u", "app").wantOut(t, "/home/app")
}

func TestRunHostname(t *testing.T) {
	t.Parallel()
	s := sandboxFor(t, nil)
	s.run("run", "--rm", "--tls-verify=false", "--hostname", "box1", busybox(), "hostname").wantOut(t, "box1")
	s.run("run", "--rm", "--tls-verify=false", "--hostname=box2", busybox(), "cat", "/proc/sys/kernel/hostname").wantOut(t, "box2")
	// The host's name is not changed.
	host, _ := os.Hostname()
	if host == "box1" || host == "box2" {
		t.Errorf("the host's name changed to %q", host)
	}
}

func TestRunNetNoneHasOnlyLoopback(t *testing.T) {
	t.Parallel()
	s := sandboxFor(t, nil)
	for _, flags := range [][]string{{"--net", "none"}, {"--net=none"}, {"--network=none"}} {
		r := s.runSh(busybox(), "cat /proc/net/dev", flags...).ok(t)
		var ifaces []string
		for _, line := range strings.Split(r.stdout, "\n") {
			if name, _, ok := strings.Cut(line, ":"); ok && !strings.Contains(name, "|") {
				ifaces = append(ifaces, strings.TrimSpace(name))
			}
		}
		if strings.Join(ifaces, ",") != "lo" {
			t.Errorf("%v: want only lo, got %v:\n%s", flags, ifaces, r)
		}
	}
}

func TestRunInteractiveTTYShell(t *testing.T) {
	t.Parallel()
	s := sandboxFor(t, nil)
	s.pull(busybox())
	p := s.startPTY("run", "--rm", "-it", busybox(), "sh")
	p.expect("# ", 30*time.Second)
	p.send("echo hi-$((1+1))\r")
	p.expect("hi-2", 15*time.Second)
	p.send("tty; stty size\r")
	p.expect("/dev/", 10*time.Second)
	p.expect("24 80", 10*time.Second)
	// Type Ctrl-D only at the next prompt: the shell's line editor flushes
	// what was typed before it switched the terminal's mode.
	p.expect("# ", 10*time.Second)
	p.send("\x04") // Ctrl-D: EOF for the shell
	p.wait(30*time.Second).wantCode(t, 0)
}

func TestRunTTYCtrlCInterruptsForegroundCommand(t *testing.T) {
	t.Parallel()
	s := sandboxFor(t, nil)
	s.pull(busybox())
	p := s.startPTY("run", "--rm", "-it", busybox(), "sh")
	p.expect("# ", 30*time.Second)
	p.send("sleep 100\r")
	p.expect("sleep 100", 10*time.Second)
	time.Sleep(500 * time.Millisecond) // let sleep start
	p.send("\x03")
	// If Ctrl-C did not reach sleep, this sits behind it for 100 s.
	p.send("echo after-$((2+3))\r")
	p.expect("after-5", 15*time.Second)
	p.send("exit 3\r")
	p.wait(30*time.Second).wantCode(t, 3)
}

func TestRunInteractivePipedStdin(t *testing.T) {
	t.Parallel()
	s := sandboxFor(t, nil)
	s.runWith(runOpts{stdin: strings.NewReader("abc\n")},
		"run", "--rm", "-i", "--tls-verify=false", busybox(), "cat").wantOut(t, "abc")
	// Larger than a pipe buffer, and the EOF must still arrive.
	big := strings.Repeat("0123456789abcdef", 64*1024) // 1 MiB
	s.runWith(runOpts{stdin: strings.NewReader(big)},
		"run", "--rm", "-i", "--tls-verify=false", busybox(), "wc", "-c").wantOut(t, fmt.Sprint(len(big)))
	// Without -i the container's stdin is not the caller's.
	s.runWith(runOpts{stdin: strings.NewReader("abc\n")},
		"run", "--rm", "--tls-verify=false", busybox(), "cat").wantOut(t, "")
}

func TestRunStdoutAndStderrAreSeparate(t *testing.T) {
	t.Parallel()
	s := sandboxFor(t, nil)
	r := s.runSh(busybox(), "echo to-out; echo to-err >&2").ok(t)
	if r.out() != "to-out" || !strings.Contains(r.stderr, "to-err") || strings.Contains(r.stdout, "to-err") {
		t.Errorf("stdout/stderr mixed up:\n%s", r)
	}
}

// Without XDG_RUNTIME_DIR (su, ssh without logind, cron) run state falls
// back to /tmp/unroot-$UID, mode 0700.
func TestRunWithoutXDGRuntimeDir(t *testing.T) {
	t.Parallel()
	s := newSandbox(t, nil, withoutXDGRuntimeDir())
	s.runSh(busybox(), "echo ok").wantOut(t, "ok")
	dir := fmt.Sprintf("/tmp/unroot-%d", s.user.uid)
	fi, err := os.Stat(dir)
	if err != nil {
		t.Fatalf("run state fallback: %v", err)
	}
	if fi.Mode().Perm() != 0o700 {
		t.Errorf("%s has mode %v, want 0700", dir, fi.Mode().Perm())
	}
}

func TestStoreLocation(t *testing.T) {
	t.Parallel()
	t.Run("default", func(t *testing.T) {
		s := newSandbox(t, nil)
		s.pull(busybox())
		if _, err := os.Stat(s.storeDir()); err != nil {
			t.Errorf("default store: %v", err)
		}
	})
	t.Run("XDG_DATA_HOME", func(t *testing.T) {
		s := newSandbox(t, nil)
		data := filepath.Join(s.home, "xdg-data")
		s.env = append(s.env, "XDG_DATA_HOME="+data)
		s.pull(busybox())
		if _, err := os.Stat(filepath.Join(data, "unroot", "storage")); err != nil {
			t.Errorf("store under XDG_DATA_HOME: %v", err)
		}
		if _, err := os.Stat(s.storeDir()); err == nil {
			t.Errorf("%s exists although XDG_DATA_HOME is set", s.storeDir())
		}
	})
}

// The debian image: bash, apt's users, a real distribution's file ownership.
// One sandbox (one pull of ~50 MB) for all of them.
func TestDebianImage(t *testing.T) {
	t.Parallel()
	s := newSandbox(t, nil)
	s.pull(debian())
	t.Run("IDUZero", func(t *testing.T) {
		s.run("run", "--rm", debian(), "id", "-u").wantOut(t, "0")
	})
	t.Run("DefaultCmdIsBash", func(t *testing.T) {
		s.runWith(runOpts{stdin: strings.NewReader("echo from-bash-$BASH_VERSINFO\n")},
			"run", "--rm", "-i", debian()).wantOut(t, "from-bash-5")
	})
	t.Run("BashVersion", func(t *testing.T) {
		r := s.run("run", "--rm", debian(), "bash", "-c", "echo $BASH_VERSION").ok(t)
		if !strings.HasPrefix(r.out(), "5.") {
			t.Errorf("want bash 5.x, got:\n%s", r)
		}
	})
	t.Run("NonRootOwnedFileKeepsUID", func(t *testing.T) {
		// apt's download directory belongs to _apt (uid 42).
		s.run("run", "--rm", debian(), "stat", "-c", "%u %U %a", "/var/cache/apt/archives/partial").
			wantOut(t, "42 _apt 700")
		// setgid shadow-group files.
		s.run("run", "--rm", debian(), "stat", "-c", "%g %G", "/etc/shadow").wantOut(t, "42 shadow")
		s.run("run", "--rm", debian(), "stat", "-c", "%g %G", "/var/mail").wantOut(t, "8 mail")
	})
	t.Run("SetgidBitKept", func(t *testing.T) {
		s.run("run", "--rm", debian(), "stat", "-c", "%A", "/usr/bin/chage").wantOut(t, "-rwxr-sr-x")
	})
	t.Run("RunAsNobody", func(t *testing.T) {
		s.run("run", "--rm", "-u", "nobody", debian(), "id", "-u").wantOut(t, "65534")
	})
}
