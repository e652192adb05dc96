package e2e

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"
)

// suite is set up once by TestMain and read-only afterwards.
var suite struct {
	repo       string // repository root
	fixtures   string // tests/fixtures
	bin        string // copy of UNROOT_BIN that the test user can execute
	state      string // per-run state directory (homes, registries, bin)
	layout     string // OCI layout with the fixture images
	asRoot     bool   // the suite runs as root and switches to testUser
	user       *testUser
	nosub      *testUser // nil unless asRoot
	reg        string    // plain-HTTP registry, 127.0.0.1:PORT
	authReg    string    // TLS + htpasswd registry, 127.0.0.1:PORT
	authDir    string    // its state dir: holds ca.crt, usable as --cert-dir
	authUser   string
	authPass   string
	registries []string // state dirs to stop
}

const (
	testUserName  = "unroot-test"
	nosubUserName = "unroot-nosub"
)

// Images in the plain registry.
func img(name string) string { return suite.reg + "/" + name }

var (
	busybox = func() string { return img("busybox") }
	layered = func() string { return img("layered") }
	debian  = func() string { return img("debian:bookworm") }
)

func TestMain(m *testing.M) {
	os.Exit(mainWithCleanup(m))
}

// setupFailure is raised by fatalf and turned into exit status 1 once the
// deferred cleanups (registries, state directory) have run.
type setupFailure string

func mainWithCleanup(m *testing.M) (code int) {
	defer func() {
		if r := recover(); r != nil {
			msg, ok := r.(setupFailure)
			if !ok {
				panic(r)
			}
			fmt.Fprintf(os.Stderr, "e2e: setup failed: %s\n", msg)
			code = 1
		}
	}()
	bin := os.Getenv("UNROOT_BIN")
	if bin == "" {
		fmt.Println("e2e: UNROOT_BIN is not set (make test-e2e sets it); skipping the end-to-end tests")
		return 0
	}
	if !filepath.IsAbs(bin) {
		fatalf("UNROOT_BIN must be an absolute path, got %q", bin)
	}
	if _, err := os.Stat(bin); err != nil {
		fatalf("UNROOT_BIN: %v", err)
	}
	start := time.Now()

	_, file, _, _ := runtime.Caller(0)
	suite.repo = filepath.Clean(filepath.Join(filepath.Dir(file), "..", ".."))
	suite.fixtures = filepath.Join(suite.repo, "tests", "fixtures")
	suite.asRoot = os.Geteuid() == 0

	var err error
	if suite.asRoot {
		suite.user, err = lookupUser(testUserName, true)
		if err != nil {
			fatalf("%v (run `make deps` as root: it creates %s)", err, testUserName)
		}
		suite.nosub, err = lookupUser(nosubUserName, true)
		if err != nil {
			fatalf("%v (run `make deps` as root: it creates %s)", err, nosubUserName)
		}
	} else {
		suite.user, err = currentUser()
		if err != nil {
			fatalf("%v", err)
		}
	}

	suite.state, err = os.MkdirTemp("", "unroot-e2e-")
	if err != nil {
		fatalf("%v", err)
	}
	// The test user must reach its home directories and the binary below.
	must(os.Chmod(suite.state, 0o755))
	must(os.MkdirAll(filepath.Join(suite.state, "h"), 0o755))
	must(os.MkdirAll(filepath.Join(suite.state, "bin"), 0o755))
	defer func() {
		for _, dir := range suite.registries {
			if out, err := exec.Command(filepath.Join(suite.fixtures, "registry.sh"), "stop", dir).CombinedOutput(); err != nil {
				fmt.Fprintf(os.Stderr, "e2e: stopping registry %s: %v\n%s", dir, err, out)
			}
		}
		if os.Getenv("UNROOT_E2E_KEEP") != "" {
			fmt.Printf("e2e: UNROOT_E2E_KEEP set: state kept in %s\n", suite.state)
			return
		}
		if err := removeTree(suite.state, suite.user); err != nil {
			fmt.Fprintf(os.Stderr, "e2e: cleaning %s: %v\n", suite.state, err)
		}
	}()

	// A copy of the binary in a directory every user can read.
	suite.bin = filepath.Join(suite.state, "bin", "unroot")
	must(copyFile(bin, suite.bin, 0o755))

	// Fixture images (cached; the first build takes minutes).
	out, err := fixture("images.sh")
	if err != nil {
		fatalf("building fixture images: %v", err)
	}
	suite.layout = strings.TrimSpace(lastLine(out))

	// Plain-HTTP registry with every fixture image.
	plainDir := filepath.Join(suite.state, "registry-plain")
	out, err = fixture("registry.sh", "start", plainDir)
	if err != nil {
		fatalf("starting registry: %v", err)
	}
	suite.registries = append(suite.registries, plainDir)
	suite.reg = strings.TrimSpace(lastLine(out))
	for _, tag := range []string{"busybox:latest", "layered:latest", "debian:bookworm"} {
		if _, err := fixture("push.sh", suite.layout, tag, suite.reg+"/"+tag); err != nil {
			fatalf("pushing %s: %v", tag, err)
		}
	}

	// TLS + htpasswd registry with busybox.
	suite.authUser, suite.authPass = "alice", "s3cret-pw"
	suite.authDir = filepath.Join(suite.state, "registry-auth")
	out, err = fixture("registry.sh", "start", suite.authDir, "--tls", "--htpasswd", suite.authUser+":"+suite.authPass)
	if err != nil {
		fatalf("starting auth registry: %v", err)
	}
	suite.registries = append(suite.registries, suite.authDir)
	suite.authReg = strings.TrimSpace(lastLine(out))
	if _, err := fixture("push.sh", suite.layout, "busybox:latest", suite.authReg+"/busybox:latest",
		"--dest-cert-dir", suite.authDir, "--dest-creds", suite.authUser+":"+suite.authPass); err != nil {
		fatalf("pushing to auth registry: %v", err)
	}

	who := suite.user.name
	if suite.asRoot {
		who += " (switched from root)"
	}
	fmt.Printf("e2e: binary %s, user %s uid %d, subuid %v; registries %s (http) %s (https+auth); layout %s; setup %s\n",
		bin, who, suite.user.uid, suite.user.subuid, suite.reg, suite.authReg, suite.layout,
		time.Since(start).Round(time.Millisecond))

	return m.Run()
}

// fixture runs tests/fixtures/NAME and returns its stdout; stderr is passed
// through (so a cold image build shows progress).
func fixture(name string, args ...string) (string, error) {
	cmd := exec.Command(filepath.Join(suite.fixtures, name), args...)
	var stdout bytes.Buffer
	cmd.Stdout = &stdout
	cmd.Stderr = os.Stderr
	err := cmd.Run()
	if err != nil {
		err = fmt.Errorf("%s %s: %w", name, strings.Join(args, " "), err)
	}
	return stdout.String(), err
}

func lastLine(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return lines[len(lines)-1]
}

func copyFile(src, dst string, mode os.FileMode) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, mode)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	if err := out.Close(); err != nil {
		return err
	}
	return os.Chmod(dst, mode)
}

func must(err error) {
	if err != nil {
		fatalf("%v", err)
	}
}

func fatalf(format string, args ...any) {
	panic(setupFailure(fmt.Sprintf(format, args...)))
}
