// Command cgtest checks package cgroupv2 for real, as an unprivileged user
// with a systemd user instance (tests/vm/run.sh runs it inside a VM),
// without the container runtime.
//
// It mimics unroot run's process model: the parent (A) starts a "monitor"
// (B) in a fresh user namespace, blocked on a pipe; calls cgroupv2.Setup
// with B's pid; releases B. B runs a payload (a re-exec of this binary that
// allocates, forks, spins, writes...), reports the payload's exit status,
// and stays alive until A has read the cgroup's counters.
//
// Output is go-test-like: "--- PASS: name" / "--- FAIL: name", and
// "N passed, N failed" at the end; exit 1 on failure.
//
//	cgtest [-v] [-expect auto|delegated|undelegated] [-run REGEXP]
//
// -expect auto reads UNROOT_VM_DELEGATED (1: all of cpu cpuset io memory
// pids are delegated; 0: systemd's default delegation, and limits on the
// controllers it does not delegate must fail with the clear error).
package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/unroot/unroot/cgroupv2"
	"golang.org/x/sys/unix"
)

var (
	verbose = flag.Bool("v", false, "verbose")
	expect  = flag.String("expect", "auto", "auto, delegated or undelegated")
	runRE   = flag.String("run", "", "run only the checks matching this regexp")
	manager = flag.String("manager", "", "force the cgroup manager (systemd or cgroupfs)")
)

func main() {
	if len(os.Args) > 1 {
		switch os.Args[1] {
		case "monitor":
			monitor(os.Args[2:])
			return
		case "payload":
			payload(os.Args[2:])
			return
		}
	}
	flag.Parse()
	os.Exit(runChecks())
}

// ---- monitor and payload (run inside the container-like process tree) ----

func monitor(args []string) {
	sync := os.NewFile(3, "sync")
	b := make([]byte, 1)
	if _, err := sync.Read(b); err != nil {
		fmt.Println("monitor: not released:", err)
		os.Exit(100)
	}
	cmd := exec.Command("/proc/self/exe", append([]string{"payload"}, args...)...)
	cmd.Stdout, cmd.Stderr = os.Stdout, os.Stdout
	err := cmd.Run()
	code := 0
	if err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
				code = 128 + int(ws.Signal())
			} else {
				code = ee.ExitCode()
			}
		} else {
			fmt.Println("monitor: payload:", err)
			code = 127
		}
	}
	fmt.Printf("payload-exit %d\n", code)
	io.Copy(io.Discard, sync) // until the parent has read the counters
	os.Exit(0)
}

func payload(args []string) {
	switch args[0] {
	case "true":
	case "cgroup":
		data, _ := os.ReadFile("/proc/self/cgroup")
		fmt.Print(string(data))
	case "alloc": // MiB, touching every page
		n, _ := strconv.Atoi(args[1])
		var keep [][]byte
		for i := 0; i < n; i++ {
			b := make([]byte, 1<<20)
			for j := 0; j < len(b); j += 4096 {
				b[j] = 1
			}
			keep = append(keep, b)
		}
		fmt.Printf("allocated %d MiB\n", len(keep))
	case "fork": // start N sleeps, report how many started
		n, _ := strconv.Atoi(args[1])
		var pids []int
		var ferr error
		for i := 0; i < n; i++ {
			pid, err := syscall.ForkExec("/bin/sleep", []string{"sleep", "60"}, &syscall.ProcAttr{})
			if err != nil {
				ferr = err
				break
			}
			pids = append(pids, pid)
		}
		fmt.Printf("forked %d err=%v\n", len(pids), ferr)
		for _, p := range pids {
			syscall.Kill(p, syscall.SIGKILL)
			var ws syscall.WaitStatus
			syscall.Wait4(p, &ws, 0, nil)
		}
	case "spin": // busy loop for N seconds of wall time
		d, _ := time.ParseDuration(args[1])
		end := time.Now().Add(d)
		x := 0
		for time.Now().Before(end) {
			for i := 0; i < 100000; i++ {
				x += i
			}
		}
		fmt.Println("spun", x != 0)
	case "cpus":
		data, _ := os.ReadFile("/proc/self/status")
		for _, l := range strings.Split(string(data), "\n") {
			if strings.HasPrefix(l, "Cpus_allowed_list:") {
				fmt.Println(strings.Join(strings.Fields(l), " "))
			}
		}
	case "ddwrite": // FILE MiB, O_DIRECT
		n, _ := strconv.Atoi(args[2])
		f, err := os.OpenFile(args[1], os.O_CREATE|os.O_WRONLY|os.O_TRUNC|unix.O_DIRECT, 0o600)
		if err != nil {
			fmt.Println("open:", err)
			os.Exit(1)
		}
		buf, _ := unix.Mmap(-1, 0, 1<<20, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_ANON|unix.MAP_PRIVATE)
		for i := range buf {
			buf[i] = byte(i)
		}
		t0 := time.Now()
		for i := 0; i < n; i++ {
			if _, err := f.Write(buf); err != nil {
				fmt.Println("write:", err)
				os.Exit(1)
			}
		}
		f.Close()
		os.Remove(args[1])
		fmt.Printf("wrote %d MiB in %.2fs\n", n, time.Since(t0).Seconds())
	default:
		fmt.Println("unknown payload", args)
		os.Exit(2)
	}
}

// ---- the container-like run: A side ----

type run struct {
	cg       *cgroupv2.Cgroup
	cmd      *exec.Cmd
	sync     *os.File
	out      *bufio.Reader
	lines    []string
	exit     int
	elapsed  time.Duration
	stats    cgroupv2.Stats
	procCg   string
	setupErr error
}

var seq int

// start launches the monitor in a new user namespace, calls Setup with its
// pid, releases it, and waits for the payload's exit status.
func start(l cgroupv2.Limits, payloadArgs ...string) *run {
	seq++
	id := fmt.Sprintf("cgtest-%d-%d", os.Getpid(), seq)
	r := &run{exit: -1}
	pr, pw, err := os.Pipe()
	if err != nil {
		r.setupErr = err
		return r
	}
	cmd := exec.Command("/proc/self/exe", append([]string{"monitor"}, payloadArgs...)...)
	cmd.ExtraFiles = []*os.File{pr}
	stdout, _ := cmd.StdoutPipe()
	cmd.Stderr = cmd.Stdout
	cmd.SysProcAttr = &syscall.SysProcAttr{
		Cloneflags:  syscall.CLONE_NEWUSER,
		UidMappings: []syscall.SysProcIDMap{{ContainerID: 0, HostID: os.Getuid(), Size: 1}},
		GidMappings: []syscall.SysProcIDMap{{ContainerID: 0, HostID: os.Getgid(), Size: 1}},
		Pdeathsig:   syscall.SIGKILL,
	}
	if err := cmd.Start(); err != nil {
		r.setupErr = err
		return r
	}
	pr.Close()
	r.cmd, r.sync, r.out = cmd, pw, bufio.NewReader(stdout)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	t0 := time.Now()
	r.cg, r.setupErr = cgroupv2.Setup(ctx, cgroupv2.Options{ID: id, Limits: l, Manager: *manager}, cmd.Process.Pid)
	logf("Setup(%s) took %v", id, time.Since(t0).Round(time.Millisecond))
	if r.setupErr != nil {
		r.finish()
		return r
	}
	r.procCg = readProcCgroup(cmd.Process.Pid)
	t0 = time.Now()
	pw.Write([]byte{1})
	for {
		line, err := r.out.ReadString('\n')
		if line != "" {
			line = strings.TrimRight(line, "\n")
			logf("  | %s", line)
			if v, ok := strings.CutPrefix(line, "payload-exit "); ok {
				r.exit, _ = strconv.Atoi(v)
				break
			}
			r.lines = append(r.lines, line)
		}
		if err != nil {
			break
		}
	}
	r.elapsed = time.Since(t0)
	r.stats, _ = r.cg.Stats()
	return r
}

// finish lets the monitor exit and removes the cgroup.
func (r *run) finish() {
	if r.sync != nil {
		r.sync.Close()
		r.sync = nil
	}
	if r.cmd != nil {
		io.Copy(io.Discard, r.out)
		r.cmd.Wait()
		r.cmd = nil
	}
	if r.cg != nil {
		if err := r.cg.Remove(); err != nil {
			logf("Remove: %v", err)
		}
		r.cg.Close()
		r.cg = nil
	}
}

func (r *run) output() string { return strings.Join(r.lines, "\n") }

func readProcCgroup(pid int) string {
	data, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cgroup", pid))
	return strings.TrimPrefix(strings.TrimSpace(string(data)), "0::")
}

// ---- checks ----

type T struct {
	name   string
	failed bool
	msgs   []string
}

func (t *T) Errorf(format string, a ...any) {
	t.failed = true
	t.msgs = append(t.msgs, fmt.Sprintf(format, a...))
}
func (t *T) Logf(format string, a ...any) { t.msgs = append(t.msgs, fmt.Sprintf(format, a...)) }

func logf(format string, a ...any) {
	if *verbose {
		fmt.Printf("    "+format+"\n", a...)
	}
}

func fileIs(t *T, cg *cgroupv2.Cgroup, file, want string) {
	got, err := cg.ReadFile(file)
	if err != nil || got != want {
		t.Errorf("%s = %q (%v), want %q", file, got, err, want)
	} else {
		t.Logf("%s = %s", file, got)
	}
}

const mib = 1 << 20

func rootDisk() (string, string) {
	var st unix.Stat_t
	if err := unix.Stat("/", &st); err != nil {
		return "", ""
	}
	majmin := fmt.Sprintf("%d:%d", unix.Major(st.Dev), unix.Minor(st.Dev))
	dev, err := filepath.EvalSymlinks("/dev/block/" + majmin)
	if err != nil {
		return "", ""
	}
	return dev, majmin
}

func delegatedChecks() []check {
	disk, majmin := rootDisk()
	all := cgroupv2.Limits{Memory: 200 * mib, MemorySwap: 300 * mib, NanoCPUs: 5e8, CPUShares: 512, CpusetCpus: "0",
		PidsLimit: 64, DeviceWriteBps: []cgroupv2.ThrottleDevice{{Path: disk, Rate: mib}}}
	return []check{
		{"check_all_limits", func(t *T) {
			if err := cgroupv2.Check(all); err != nil {
				t.Errorf("Check: %v", err)
			}
		}},
		{"memory_limits_and_scope", func(t *T) {
			r := start(cgroupv2.Limits{Memory: 200 * mib, MemorySwap: 300 * mib, MemoryReservation: 50 * mib}, "cgroup")
			defer r.finish()
			if r.setupErr != nil {
				t.Errorf("Setup: %v", r.setupErr)
				return
			}
			fileIs(t, r.cg, "memory.max", "209715200")
			fileIs(t, r.cg, "memory.swap.max", "104857600")
			fileIs(t, r.cg, "memory.low", "52428800")
			if !strings.Contains(r.cg.RelPath(), "/unroot.slice/unroot-cgtest-") || !strings.HasSuffix(r.cg.RelPath(), ".scope") {
				t.Errorf("cgroup %q is not an unroot-*.scope in unroot.slice", r.cg.RelPath())
			}
			if r.procCg != r.cg.RelPath() {
				t.Errorf("monitor is in %q, want %q", r.procCg, r.cg.RelPath())
			}
			if r.output() != "0::"+r.cg.RelPath() {
				t.Errorf("payload's /proc/self/cgroup = %q, want 0::%s", r.output(), r.cg.RelPath())
			}
			if r.exit != 0 {
				t.Errorf("payload exit %d", r.exit)
			}
			t.Logf("manager %s, unit %s, cgroup %s", r.cg.Manager(), r.cg.Unit(), r.cg.RelPath())
			path := r.cg.Path()
			r.finish()
			if _, err := os.Stat(path); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("after Remove, %s still exists (%v)", path, err)
			}
		}},
		{"oom_kill_exit_137", func(t *T) {
			r := start(cgroupv2.Limits{Memory: 32 * mib, MemorySwap: 32 * mib}, "alloc", "256")
			defer r.finish()
			if r.setupErr != nil {
				t.Errorf("Setup: %v", r.setupErr)
				return
			}
			fileIs(t, r.cg, "memory.swap.max", "0")
			if r.exit != 137 {
				t.Errorf("payload exit %d, want 137 (output %q)", r.exit, r.output())
			}
			if r.stats.OOMKills < 1 || !r.cg.OOMKilled() {
				t.Errorf("memory.events oom_kill = %d, OOMKilled() = %v", r.stats.OOMKills, r.cg.OOMKilled())
			}
			f, err := os.Open(filepath.Join(r.cg.Path(), "memory.events"))
			if err == nil {
				n, err := cgroupv2.OOMKillCount(f)
				f.Close()
				if err != nil || n < 1 {
					t.Errorf("OOMKillCount = %d, %v", n, err)
				}
			}
			t.Logf("manager %s, exit %d, oom_kill %d, memory.peak %d", r.cg.Manager(), r.exit, r.stats.OOMKills, r.stats.MemoryPeak)
		}},
		{"pids_limit", func(t *T) {
			r := start(cgroupv2.Limits{PidsLimit: 32}, "fork", "100")
			defer r.finish()
			if r.setupErr != nil {
				t.Errorf("Setup: %v", r.setupErr)
				return
			}
			fileIs(t, r.cg, "pids.max", "32")
			out := r.output()
			var n int
			fmt.Sscanf(out, "forked %d", &n)
			if n >= 100 || n == 0 || !strings.Contains(out, "resource temporarily unavailable") {
				t.Errorf("payload: %q, want fewer than 100 forks then EAGAIN", out)
			}
			t.Logf("%s", out)
		}},
		{"cpu_max_throttles_and_cpu_weight", func(t *T) {
			r := start(cgroupv2.Limits{NanoCPUs: 5e8, CPUShares: 512}, "spin", "3s")
			defer r.finish()
			if r.setupErr != nil {
				t.Errorf("Setup: %v", r.setupErr)
				return
			}
			fileIs(t, r.cg, "cpu.max", "50000 100000")
			fileIs(t, r.cg, "cpu.weight", "20")
			ratio := float64(r.stats.CPUUsageUsec) / float64(r.elapsed.Microseconds())
			t.Logf("usage %dus over %v (%.2f CPU), nr_throttled %d, throttled %dus", r.stats.CPUUsageUsec,
				r.elapsed.Round(time.Millisecond), ratio, r.stats.NrThrottled, r.stats.ThrottledUsec)
			if r.stats.NrThrottled == 0 || r.stats.ThrottledUsec == 0 {
				t.Errorf("not throttled: nr_throttled %d", r.stats.NrThrottled)
			}
			if ratio > 0.65 {
				t.Errorf("used %.2f CPUs, limit 0.5", ratio)
			}
		}},
		{"cpuset", func(t *T) {
			r := start(cgroupv2.Limits{CpusetCpus: "1"}, "cpus")
			defer r.finish()
			if r.setupErr != nil {
				t.Errorf("Setup: %v", r.setupErr)
				return
			}
			fileIs(t, r.cg, "cpuset.cpus", "1")
			if r.output() != "Cpus_allowed_list: 1" {
				t.Errorf("payload: %q, want Cpus_allowed_list: 1", r.output())
			}
		}},
		{"io_max_throttles_writes", func(t *T) {
			if disk == "" {
				t.Errorf("cannot find the root disk")
				return
			}
			home, _ := os.UserHomeDir()
			r := start(cgroupv2.Limits{
				DeviceWriteBps: []cgroupv2.ThrottleDevice{{Path: disk, Rate: mib}},
				DeviceReadIOps: []cgroupv2.ThrottleDevice{{Path: disk, Rate: 1000}},
			}, "ddwrite", filepath.Join(home, "io.test"), "3")
			defer r.finish()
			if r.setupErr != nil {
				t.Errorf("Setup: %v", r.setupErr)
				return
			}
			fileIs(t, r.cg, "io.max", majmin+" rbps=max wbps=1048576 riops=1000 wiops=max")
			t.Logf("%s (device %s %s); io.stat %v", r.output(), disk, majmin, r.stats.IO[majmin])
			if !strings.HasPrefix(r.output(), "wrote 3 MiB") {
				t.Errorf("payload: %q", r.output())
			} else if r.elapsed < 1500*time.Millisecond {
				t.Errorf("3 MiB at 1 MiB/s took only %v", r.elapsed)
			}
			if r.stats.IO[majmin]["wbytes"] < 3*mib {
				t.Errorf("io.stat wbytes %d < 3 MiB", r.stats.IO[majmin]["wbytes"])
			}
		}},
		{"cgroupfs_fallback_in_delegated_scope", func(t *T) {
			// No systemd involvement: inside `systemd-run --user --scope -p
			// Delegate=yes` (like a CI container's cgroup) the process must
			// move itself to a leaf, enable controllers and create a child.
			self, _ := os.Executable()
			args := []string{"--user", "--scope", "--quiet", "-p", "Delegate=yes", "--", self, "-manager", "cgroupfs", "-run", "^(oom_kill_exit_137|pids_limit)$", "-v"}
			out, err := exec.Command("systemd-run", args...).CombinedOutput()
			for _, l := range strings.Split(strings.TrimSpace(string(out)), "\n") {
				if *verbose || err != nil || !strings.HasPrefix(l, "    ") {
					t.Logf("| %s", l)
				}
			}
			if err != nil || !strings.Contains(string(out), "2 passed, 0 failed") || !strings.Contains(string(out), "manager cgroupfs") {
				t.Errorf("nested cgtest -manager cgroupfs: %v", err)
			}
		}},
	}
}

func undelegatedChecks() []check {
	uid := os.Getuid()
	ctrlFile := fmt.Sprintf("/sys/fs/cgroup/user.slice/user-%d.slice/user@%d.service/cgroup.controllers", uid, uid)
	data, _ := os.ReadFile(ctrlFile)
	have := map[string]bool{}
	for _, c := range strings.Fields(string(data)) {
		have[c] = true
	}
	disk, _ := rootDisk()
	per := map[string]cgroupv2.Limits{
		"memory": {Memory: 64 * mib},
		"cpu":    {NanoCPUs: 5e8},
		"pids":   {PidsLimit: 32},
		"io":     {DeviceWriteBps: []cgroupv2.ThrottleDevice{{Path: disk, Rate: 30 * mib}}},
		"cpuset": {CpusetCpus: "0"},
	}
	checks := []check{
		{"some_controller_not_delegated", func(t *T) {
			t.Logf("user@%d.service controllers: %s", uid, strings.TrimSpace(string(data)))
			for c := range per {
				if !have[c] {
					return
				}
			}
			t.Errorf("every controller is delegated; this boot tests nothing")
		}},
		{"no_limits_no_error", func(t *T) {
			if err := cgroupv2.Check(cgroupv2.Limits{}); err != nil {
				t.Errorf("Check(no limits) = %v", err)
			}
			if cg, err := cgroupv2.Setup(context.Background(), cgroupv2.Options{ID: "x"}, os.Getpid()); cg != nil || err != nil {
				t.Errorf("Setup(no limits) = %v, %v", cg, err)
			}
		}},
	}
	for _, c := range []string{"cpu", "cpuset", "io", "memory", "pids"} {
		c, l := c, per[c]
		if have[c] {
			checks = append(checks, check{c + "_delegated_works", func(t *T) {
				if err := cgroupv2.Check(l); err != nil {
					t.Errorf("Check: %v", err)
					return
				}
				r := start(l, "true")
				defer r.finish()
				if r.setupErr != nil || r.exit != 0 {
					t.Errorf("Setup: %v, exit %d", r.setupErr, r.exit)
				}
			}})
			continue
		}
		checks = append(checks, check{c + "_not_delegated_clear_error", func(t *T) {
			err := cgroupv2.Check(l)
			var ce *cgroupv2.Error
			if !errors.As(err, &ce) || ce.Kind != cgroupv2.KindNotDelegated {
				t.Errorf("Check = %v, want a KindNotDelegated error", err)
				return
			}
			for _, s := range []string{c + " cgroup controller", "/etc/systemd/system/user@.service.d/delegate.conf",
				"Delegate=cpu cpuset io memory pids", "systemctl daemon-reload", "systemctl restart user@"} {
				if !strings.Contains(err.Error(), s) {
					t.Errorf("error lacks %q", s)
				}
			}
			t.Logf("Check error:\n%s", err)
			// Setup must refuse the same way, before creating anything.
			_, err = cgroupv2.Setup(context.Background(), cgroupv2.Options{ID: "refused", Limits: l}, os.Getpid())
			if !errors.As(err, &ce) || ce.Kind != cgroupv2.KindNotDelegated {
				t.Errorf("Setup = %v, want the same error", err)
			}
		}})
	}
	return checks
}

type check struct {
	name string
	fn   func(*T)
}

func runChecks() int {
	mode := *expect
	if mode == "auto" {
		mode = "delegated"
		if os.Getenv("UNROOT_VM_DELEGATED") == "0" {
			mode = "undelegated"
		}
	}
	var checks []check
	switch mode {
	case "delegated":
		checks = delegatedChecks()
	case "undelegated":
		checks = undelegatedChecks()
	default:
		fmt.Fprintln(os.Stderr, "cgtest: bad -expect", mode)
		return 2
	}
	var re *regexp.Regexp
	if *runRE != "" {
		re = regexp.MustCompile(*runRE)
	}
	fmt.Printf("cgtest: %s checks as uid %d (cgroup %s)\n", mode, os.Getuid(), readProcCgroup(os.Getpid()))
	passed, failed := 0, 0
	for _, c := range checks {
		if re != nil && !re.MatchString(c.name) {
			continue
		}
		t := &T{name: c.name}
		if *verbose {
			fmt.Printf("=== RUN   %s\n", c.name)
		}
		t0 := time.Now()
		c.fn(t)
		d := time.Since(t0).Seconds()
		status := "PASS"
		if t.failed {
			status = "FAIL"
			failed++
		} else {
			passed++
		}
		fmt.Printf("--- %s: %s (%.2fs)\n", status, c.name, d)
		if t.failed || *verbose {
			for _, m := range t.msgs {
				fmt.Printf("        %s\n", strings.ReplaceAll(m, "\n", "\n        "))
			}
		}
	}
	fmt.Printf("%d passed, %d failed\n", passed, failed)
	if failed > 0 {
		return 1
	}
	return 0
}
