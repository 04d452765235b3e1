package proctitle

import (
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"
)

// The test binary runs itself as the process whose title changes: Init has to be the
// first thing a process does.
func TestMain(m *testing.M) {
	if title, ok := os.LookupEnv("PROCTITLE_TEST_TITLE"); ok {
		Init()
		Set(title)
		cmdline, _ := os.ReadFile("/proc/self/cmdline")
		comm, _ := os.ReadFile("/proc/self/comm")
		fmt.Printf("cmdline=%q\ncomm=%q\nmarker=%q\nargs=%q\n", strings.TrimRight(string(cmdline), "\x00"),
			strings.TrimSpace(string(comm)), os.Getenv("PROCTITLE_MARKER"), os.Args[1:])
		os.Exit(0)
	}
	os.Exit(m.Run())
}

func run(t *testing.T, title string, args ...string) string {
	t.Helper()
	cmd := exec.Command(os.Args[0], args...)
	cmd.Env = append(os.Environ(), "PROCTITLE_TEST_TITLE="+title, "PROCTITLE_MARKER=still-here")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	return string(out)
}

func TestTitleLongerThanArguments(t *testing.T) {
	// Longer than the arguments, shorter than arguments and environment: it runs on
	// into the environment strings, which Go keeps a copy of.
	title := "spindle: master process " + strings.Repeat("x", 300)
	out := run(t, title, "-test.run=none", "a", "b")
	for _, want := range []string{
		fmt.Sprintf("cmdline=%q", title),
		`comm="spindle"`,
		`marker="still-here"`,
		`args=["-test.run=none" "a" "b"]`,
	} {
		if !strings.Contains(out, want) {
			t.Errorf("want %s in\n%s", want, out)
		}
	}
}

func TestTitleShorterThanArguments(t *testing.T) {
	out := run(t, "s", "-test.run=none", strings.Repeat("y", 50))
	if !strings.Contains(out, `cmdline="s"`) {
		t.Errorf("short title:\n%s", out)
	}
}

func TestTitleLongerThanTheMemory(t *testing.T) {
	size := len(strings.Join(os.Environ(), "\x00")) + 4096
	out := run(t, strings.Repeat("z", size), "-test.run=none")
	i := strings.Index(out, "cmdline=")
	if i < 0 || !strings.Contains(out, `marker="still-here"`) {
		t.Fatalf("%s", out)
	}
	if got := len(out[i:strings.IndexByte(out[i:], '\n')+i]) - len(`cmdline=""`); got >= size || got < 100 {
		t.Errorf("title of %d bytes shown as %d bytes: not cut to the memory there is", size, got)
	}
}
