package container

import (
	"encoding/json"
	"errors"
	"fmt"
	mrand "math/rand/v2"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/unroot/unroot/cgroupv2"
	"github.com/unroot/unroot/container/cinit"
	"github.com/unroot/unroot/slirp"
)

// Container states, as Docker names them.
const (
	StatusCreated = "created"
	StatusRunning = "running"
	StatusExited  = "exited"
	// StatusRestarting: the process exited and the restart policy will
	// start it again once the back-off delay has passed.
	StatusRestarting = "restarting"
)

// Config is what is recorded of a container for its whole life (it
// survives reboots): $XDG_DATA_HOME/unroot/containers/<id>/config.json.
type Config struct {
	ID      string    `json:"id"`
	Name    string    `json:"name"`
	Image   string    `json:"image"`
	Created time.Time `json:"created"`
	Spec    *Spec     `json:"spec"`
	// Process is the main process as first started (image config merged).
	Process *ResolvedProcess `json:"process,omitempty"`
}

// State is the run state of a container, in the run directory (gone after
// a reboot): <RunDir>/containers/<id>/state.json.
type State struct {
	Status string `json:"status"`
	// Pid is the host-side process of the container (the detached
	// per-container unroot, or `unroot run` in the foreground), which
	// writes this file; PidStart is its start time (/proc/PID/stat field
	// 22), to tell a recycled pid.
	Pid        int       `json:"pid,omitempty"`
	PidStart   uint64    `json:"pid_start,omitempty"`
	MonitorPid int       `json:"monitor_pid,omitempty"`
	InitPid    int       `json:"init_pid,omitempty"` // the container's PID 1, as the host sees it
	StopSignal string    `json:"stop_signal,omitempty"`
	StartedAt  time.Time `json:"started_at,omitempty"`
	FinishedAt time.Time `json:"finished_at,omitempty"`
	ExitCode   int       `json:"exit_code"`
	OOMKilled  bool      `json:"oom_killed,omitempty"`
	Error      string    `json:"error,omitempty"`
	// Ports are the published ports, as bound.
	Ports []slirp.PortSpec `json:"ports,omitempty"`
	// Unknown: the host-side process died without recording the end
	// (kill -9, reboot); the exit code is not known.
	Unknown bool `json:"unknown,omitempty"`
	// RestartCount: restarts by the restart policy since the last start by
	// the user (Docker resets it there too).
	RestartCount int `json:"restart_count,omitempty"`
	// ManuallyStopped: stop or kill by the user, which the restart policy
	// must not undo.
	ManuallyStopped bool `json:"manually_stopped,omitempty"`
	// ExitFile: the container's init keeps it alone (OneProcess), and Pid
	// is the init's: its end is in the exit file (Dirs.ExitPath), and
	// whoever sees it ended first removes what it leaves behind
	// (settle), its cgroup included (CgroupUnit, the systemd scope, or
	// CgroupDir, a cgroupfs directory).
	ExitFile   bool   `json:"exit_file,omitempty"`
	CgroupUnit string `json:"cgroup_unit,omitempty"`
	CgroupDir  string `json:"cgroup_dir,omitempty"`
}

// Active says whether the container has a living host-side process: it
// runs, or waits to be restarted.
func (st *State) Active() bool {
	return st.Status == StatusRunning || st.Status == StatusRestarting
}

// MarkStopped records that the user stops the container, before the
// signal is sent, so that its restart policy leaves it stopped.
func (d Dirs) MarkStopped(id string) {
	unlock, err := d.Lock(id)
	if err != nil {
		return
	}
	defer unlock()
	if st := d.LoadState(id); st.Active() {
		st.ManuallyStopped = true
		_ = d.SaveState(id, st)
	}
}

// Dirs are where containers are recorded.
type Dirs struct {
	Data string // $XDG_DATA_HOME/unroot
	Run  string // run directory
}

// ConfigDir holds config.json, the logs and the lock of a container.
func (d Dirs) ConfigDir(id string) string { return filepath.Join(d.Data, "containers", id) }

// StateDir holds state.json (and sockets) of a running container.
func (d Dirs) StateDir(id string) string { return filepath.Join(d.Run, "containers", id) }

// LogPath is the container's log file (k8s-file format).
func (d Dirs) LogPath(id string) string { return filepath.Join(d.ConfigDir(id), "ctr.log") }

// writeJSON writes v to path atomically (temp file + rename).
func writeJSON(path string, v any) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return err
	}
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), ".tmp-"+filepath.Base(path))
	if err != nil {
		return err
	}
	if _, err := tmp.Write(b); err != nil {
		tmp.Close()
		os.Remove(tmp.Name())
		return err
	}
	if err := tmp.Close(); err != nil {
		os.Remove(tmp.Name())
		return err
	}
	return os.Rename(tmp.Name(), path)
}

// SaveConfig records a new container.
func (d Dirs) SaveConfig(c *Config) error {
	return writeJSON(filepath.Join(d.ConfigDir(c.ID), "config.json"), c)
}

// LoadConfig reads a container's config.
func (d Dirs) LoadConfig(id string) (*Config, error) {
	b, err := os.ReadFile(filepath.Join(d.ConfigDir(id), "config.json"))
	if err != nil {
		return nil, err
	}
	var c Config
	if err := json.Unmarshal(b, &c); err != nil {
		return nil, fmt.Errorf("reading the config of container %s: %w", id, err)
	}
	return &c, nil
}

// SaveState writes the run state atomically.
func (d Dirs) SaveState(id string, st *State) error {
	return writeJSON(filepath.Join(d.StateDir(id), "state.json"), st)
}

// LoadState reads the run state and checks it against the living
// processes: a container whose host-side process is gone (kill -9, a
// reboot that emptied the run directory) is reported exited, code unknown.
//
// A container kept by its init alone (State.ExitFile) ended with the code
// in its exit file; the first caller that can take the container's lock
// at once records that in the state and removes what the container left
// behind (settle). Callers holding the lock get the same answer, without
// the clean-up.
func (d Dirs) LoadState(id string) *State {
	st, ok := d.readState(id)
	if !ok {
		return &State{Status: StatusExited, ExitCode: -1, Unknown: true}
	}
	if st.Status == StatusExited || Alive(st.Pid, st.PidStart) {
		return st
	}
	if st.ExitFile {
		if unlock, err := tryFlock(filepath.Join(d.ConfigDir(id), "lock")); err == nil {
			d.settle(id)
			unlock()
			if st, ok := d.readState(id); ok && st.Status == StatusExited {
				return st
			}
		}
		d.readExit(id, st)
		return st
	}
	st.Status = StatusExited
	st.ExitCode = -1
	st.Unknown = true
	st.InitPid, st.MonitorPid = 0, 0
	return st
}

func (d Dirs) readState(id string) (*State, bool) {
	var st State
	b, err := os.ReadFile(filepath.Join(d.StateDir(id), "state.json"))
	if err != nil || json.Unmarshal(b, &st) != nil {
		return nil, false
	}
	return &st, true
}

// readExit turns the state of a container whose init has ended into its
// end, from the exit file. An init that could not write it was killed
// (SIGKILL: it catches everything else), which is Docker's 137.
func (d Dirs) readExit(id string, st *State) {
	st.Status = StatusExited
	st.Pid, st.PidStart, st.MonitorPid, st.InitPid = 0, 0, 0, 0
	st.Ports = nil
	var info cinit.ExitInfo
	if b, err := os.ReadFile(d.ExitPath(id)); err == nil && json.Unmarshal(b, &info) == nil {
		st.ExitCode, st.FinishedAt, st.OOMKilled = info.ExitCode, info.FinishedAt, info.OOMKilled
		return
	}
	st.ExitCode = 128 + int(unix.SIGKILL)
	if st.FinishedAt.IsZero() {
		st.FinishedAt = time.Now()
	}
}

// settle records the end of a container kept by its init alone, once the
// init is gone, and removes what it leaves behind: the exec socket, the
// generated /etc files, the exit file, the cgroup. Idempotent;
// the caller holds the container's lock.
func (d Dirs) settle(id string) {
	st, ok := d.readState(id)
	if !ok || !st.ExitFile || st.Status == StatusExited || Alive(st.Pid, st.PidStart) {
		return
	}
	d.readExit(id, st)
	_ = os.Remove(filepath.Join(d.StateDir(id), "exec.sock"))
	_ = os.RemoveAll(filepath.Join(d.StateDir(id), "etc"))
	unit, dir := st.CgroupUnit, st.CgroupDir
	if !strings.HasPrefix(unit, "unroot-") {
		unit = ""
	}
	if !strings.HasPrefix(filepath.Base(dir), "unroot-") {
		dir = ""
	}
	_ = cgroupv2.RemoveLeft(unit, dir)
	st.CgroupUnit, st.CgroupDir, st.ExitFile = "", "", false
	if d.SaveState(id, st) == nil {
		_ = os.Remove(d.ExitPath(id))
	}
}

// Lock takes the per-container lock (flock on <config dir>/lock); every
// command that changes a container holds it.
func (d Dirs) Lock(id string) (unlock func(), err error) {
	return flock(filepath.Join(d.ConfigDir(id), "lock"))
}

// LockAll is the lock for creating containers (names must be unique).
func (d Dirs) LockAll() (unlock func(), err error) {
	return flock(filepath.Join(d.Data, "containers", ".lock"))
}

func flock(path string) (func(), error) { return lockFile(path, 0) }

// tryFlock is flock that fails at once when the lock is taken (by
// another process, or by this one through another descriptor).
func tryFlock(path string) (func(), error) { return lockFile(path, unix.LOCK_NB) }

func lockFile(path string, how int) (func(), error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, err
	}
	f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR|unix.O_CLOEXEC, 0o600)
	if err != nil {
		return nil, err
	}
	for {
		err = unix.Flock(int(f.Fd()), unix.LOCK_EX|how)
		if err != unix.EINTR {
			break
		}
	}
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("locking %s: %w", path, err)
	}
	return func() { f.Close() }, nil
}

// List returns every recorded container, newest first.
func (d Dirs) List() ([]*Config, error) {
	ents, err := os.ReadDir(filepath.Join(d.Data, "containers"))
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, err
	}
	var out []*Config
	for _, e := range ents {
		if !e.IsDir() {
			continue
		}
		c, err := d.LoadConfig(e.Name())
		if err != nil {
			continue // being created or removed
		}
		out = append(out, c)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Created.After(out[j].Created) })
	return out, nil
}

// ErrNoContainer is returned by Find for an unknown id or name.
var ErrNoContainer = errors.New("no such container")

// Find resolves a full id, a name, or a unique id prefix.
func (d Dirs) Find(ref string) (*Config, error) {
	list, err := d.List()
	if err != nil {
		return nil, err
	}
	for _, c := range list {
		if c.ID == ref || c.Name == ref || "/"+c.Name == ref {
			return c, nil
		}
	}
	var match []*Config
	for _, c := range list {
		if ref != "" && strings.HasPrefix(c.ID, ref) {
			match = append(match, c)
		}
	}
	switch len(match) {
	case 1:
		return match[0], nil
	case 0:
		return nil, fmt.Errorf("%w: %s (unroot ps -a lists them)", ErrNoContainer, ref)
	default:
		return nil, fmt.Errorf("the id prefix %q matches %d containers: give more of the id", ref, len(match))
	}
}

// NameInUse says whether a recorded container already has the name.
func (d Dirs) NameInUse(name string) bool {
	list, _ := d.List()
	for _, c := range list {
		if c.Name == name {
			return true
		}
	}
	return false
}

// Remove forgets a container (config, logs, state); the caller holds
// its lock.
func (d Dirs) Remove(id string) error {
	d.settle(id)
	_ = os.RemoveAll(d.StateDir(id))
	return os.RemoveAll(d.ConfigDir(id))
}

// ProcStart is the start time of pid (field 22 of /proc/PID/stat), 0 when
// there is no such process.
func ProcStart(pid int) uint64 {
	if pid <= 0 {
		return 0
	}
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0
	}
	// The command name (field 2) may hold spaces and parentheses.
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return 0
	}
	f := strings.Fields(s[i+1:])
	// f[0] is field 3 (state); field 22 is f[19].
	if len(f) < 20 || f[0] == "Z" || f[0] == "X" {
		return 0
	}
	v, _ := strconv.ParseUint(f[19], 10, 64)
	return v
}

// Alive says whether pid is still the process that started at start.
func Alive(pid int, start uint64) bool {
	if pid <= 0 {
		return false
	}
	st := ProcStart(pid)
	return st != 0 && (start == 0 || st == start)
}

// Signal sends sig to a running container: to its PID 1 (the container's
// init forwards it to the process), or with SIGKILL, to the PID 1 itself,
// which takes every process of the container with it.
func Signal(st *State, sig syscall.Signal) error {
	if !st.Active() {
		return fmt.Errorf("the container is not running")
	}
	if st.InitPid > 0 {
		target := st.InitPid
		if st.ExitFile && sig != unix.SIGKILL {
			// An init that keeps its container alone catches no signal
			// (cinit's quiet.go): they go to the process, as Docker sends
			// them to its PID 1.
			if p := MainProcess(st.InitPid); p > 0 {
				target = p
			}
		}
		if err := unix.Kill(target, sig); err == nil {
			return nil
		}
	}
	// Not started yet: the host-side process relays what it can catch
	// (and dies of SIGKILL, taking the container with it).
	return unix.Kill(st.Pid, sig)
}

// MainProcess returns the host pid of the container's process: the
// first child its init (initPid) started, the others being `exec`s; 0
// when it is gone.
func MainProcess(initPid int) int {
	best := ProcInfo{}
	for _, p := range Descendants(initPid) {
		if p.PPid == initPid && (best.Pid == 0 || p.Start.Before(best.Start) || p.Start.Equal(best.Start) && p.Pid < best.Pid) {
			best = p
		}
	}
	return best.Pid
}

var (
	adjectives = []string{"admiring", "agitated", "amazing", "angry", "awesome", "blissful", "bold", "brave", "busy", "charming", "clever", "cool", "compassionate", "competent", "confident", "cranky", "crazy", "dazzling", "determined", "distracted", "dreamy", "eager", "ecstatic", "elastic", "elated", "elegant", "epic", "festive", "focused", "friendly", "funny", "gallant", "gifted", "goofy", "gracious", "happy", "hardcore", "heuristic", "hopeful", "hungry", "infallible", "inspiring", "jolly", "jovial", "keen", "kind", "laughing", "loving", "lucid", "magical", "modest", "musing", "naughty", "nervous", "nice", "nifty", "nostalgic", "objective", "optimistic", "peaceful", "pedantic", "pensive", "practical", "priceless", "quirky", "quizzical", "relaxed", "reverent", "romantic", "sad", "serene", "sharp", "silly", "sleepy", "stoic", "strange", "stupefied", "suspicious", "sweet", "tender", "thirsty", "trusting", "unruffled", "upbeat", "vibrant", "vigilant", "vigorous", "wizardly", "wonderful", "xenodochial", "youthful", "zealous", "zen"}
	nouns      = []string{"agnesi", "albattani", "allen", "archimedes", "babbage", "banach", "bardeen", "bell", "bhabha", "bohr", "booth", "borg", "brahmagupta", "cannon", "carson", "cerf", "chandrasekhar", "curie", "darwin", "dijkstra", "einstein", "euclid", "euler", "faraday", "fermat", "fermi", "feynman", "franklin", "galileo", "gauss", "goldberg", "goodall", "hamilton", "hawking", "heisenberg", "hodgkin", "hopper", "hypatia", "jang", "kepler", "knuth", "lamarr", "lamport", "leakey", "lovelace", "lumiere", "margulis", "mayer", "mccarthy", "meitner", "mendel", "minsky", "morse", "napier", "newton", "nobel", "noether", "pare", "pascal", "pasteur", "perlman", "pike", "poincare", "ramanujan", "ritchie", "rosalind", "sammet", "shannon", "shockley", "sinoussi", "stallman", "swartz", "tesla", "thompson", "torvalds", "turing", "varahamihira", "visvesvaraya", "wiles", "williams", "wozniak", "wright", "yalow", "yonath"}
)

// GenerateName returns a Docker-style adjective_noun name not in use.
func (d Dirs) GenerateName() string {
	for i := 0; ; i++ {
		n := adjectives[mrand.IntN(len(adjectives))] + "_" + nouns[mrand.IntN(len(nouns))]
		if i > 10 {
			n += strconv.Itoa(mrand.IntN(100))
		}
		if !d.NameInUse(n) {
			return n
		}
	}
}

func jsonMarshal(v any) ([]byte, error) { return json.Marshal(v) }

// ProcInfo is a process as `unroot top` shows it.
type ProcInfo struct {
	Pid, PPid, UID int
	Start          time.Time
	CPU            time.Duration
	Cmd            string
}

// Descendants returns pid and every process below it (from /proc).
func Descendants(root int) []ProcInfo {
	ents, _ := os.ReadDir("/proc")
	infos := map[int]ProcInfo{}
	children := map[int][]int{}
	boot := bootTime()
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile("/proc/" + e.Name() + "/stat")
		if err != nil {
			continue
		}
		s := string(b)
		i := strings.LastIndexByte(s, ')')
		if i < 0 {
			continue
		}
		f := strings.Fields(s[i+1:])
		if len(f) < 20 {
			continue
		}
		ppid, _ := strconv.Atoi(f[1])
		ut, _ := strconv.ParseInt(f[11], 10, 64)
		stt, _ := strconv.ParseInt(f[12], 10, 64)
		start, _ := strconv.ParseInt(f[19], 10, 64)
		const hz = 100
		info := ProcInfo{Pid: pid, PPid: ppid, CPU: time.Duration(ut+stt) * time.Second / hz,
			Start: boot.Add(time.Duration(start) * time.Second / hz)}
		if st, err := os.Stat("/proc/" + e.Name()); err == nil {
			if sys, ok := st.Sys().(*syscall.Stat_t); ok {
				info.UID = int(sys.Uid)
			}
		}
		if cl, err := os.ReadFile("/proc/" + e.Name() + "/cmdline"); err == nil && len(cl) > 0 {
			info.Cmd = strings.TrimSpace(strings.ReplaceAll(string(cl), "\x00", " "))
		} else {
			info.Cmd = "[" + s[strings.IndexByte(s, '(')+1:i] + "]"
		}
		infos[pid] = info
		children[ppid] = append(children[ppid], pid)
	}
	var out []ProcInfo
	var walk func(int)
	walk = func(p int) {
		if info, ok := infos[p]; ok {
			out = append(out, info)
		}
		kids := children[p]
		sort.Ints(kids)
		for _, k := range kids {
			walk(k)
		}
	}
	walk(root)
	return out
}

func bootTime() time.Time {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return time.Time{}
	}
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "btime "); ok {
			n, _ := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
			return time.Unix(n, 0)
		}
	}
	return time.Time{}
}
