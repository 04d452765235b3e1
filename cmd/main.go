// Package cmd is the spindle command's body, importable so that a main package of
// your own can build a spindle with modules of your own, as xcaddy builds Caddy:
//
//	package main
//
//	import (
//		spindlecmd "github.com/spindle-server/spindle/cmd"
//		_ "github.com/spindle-server/spindle/modules/all" // the modules spindle ships
//		_ "example.com/you/yourmodule"                     // yours
//	)
//
//	func main() { spindlecmd.Main() }
//
// Run without arguments the command is the master process, in the foreground,
// serving conf/spindle.hcl; the master re-executes the same binary for its workers.
// See docs/modules.md.
package cmd

import (
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/hclsyntax"
	"github.com/spindle-server/spindle/conf"
	"github.com/spindle-server/spindle/internal/proctitle"
	"github.com/spindle-server/spindle/internal/version"
	"github.com/spindle-server/spindle/master"
	"github.com/spindle-server/spindle/signals"
	"github.com/spindle-server/spindle/worker"
	"github.com/zclconf/go-cty/cty"
)

// Main runs the spindle command with the modules the binary links in: as a worker
// when the master started the process as one, else by its command-line flags. It
// does not return.
func Main() {
	proctitle.Init()
	if os.Getenv(worker.EnvRole) == "worker" {
		os.Exit(worker.Run())
	}
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("spindle", flag.ContinueOnError)
	fs.SetOutput(stderr)
	confPath := fs.String("c", conf.DefaultPath, "configuration `file`, relative to the prefix")
	prefix := fs.String("p", "", "prefix `path` (default: the current directory)")
	test := fs.Bool("t", false, "test the configuration and exit")
	dump := fs.Bool("T", false, "test the configuration, print it and exit")
	quiet := fs.Bool("q", false, "suppress non-error messages while testing the configuration")
	sig := fs.String("s", "", "send `signal` to the master: reload, reopen, quit, stop, upgrade")
	showVersion := fs.Bool("v", false, "print the version and exit")
	fs.Usage = func() {
		fmt.Fprintf(stderr, "usage: spindle [-c file] [-p prefix] [-t] [-T] [-q] [-s reload|reopen|quit|stop|upgrade] [-v]\n")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "spindle: unexpected argument %q\n", fs.Arg(0))
		fs.Usage()
		return 2
	}
	if *showVersion {
		fmt.Fprintf(stdout, "spindle version %s\n", version.Version)
		return 0
	}
	if *prefix == "" {
		wd, err := os.Getwd()
		if err != nil {
			fmt.Fprintf(stderr, "spindle: %v\n", err)
			return 1
		}
		*prefix = wd
	}
	if abs, err := filepath.Abs(*prefix); err == nil {
		*prefix = abs
	}
	path := conf.Resolve(*prefix, *confPath)
	switch {
	case *test || *dump:
		return testConfig(*prefix, path, *dump, *quiet, stdout, stderr)
	case *sig != "":
		return sendSignal(*prefix, path, *sig, stdout, stderr)
	}
	// As nginx: "spindle: master process" and the command line it was started with.
	proctitle.Set("spindle: master process " + strings.Join(os.Args, " "))
	return master.Run(master.Options{Prefix: *prefix, ConfPath: path})
}

func testConfig(prefix, path string, dump, quiet bool, stdout, stderr io.Writer) int {
	bundle, _, err := master.Load(prefix, path)
	if err != nil {
		fmt.Fprintln(stderr, err)
		fmt.Fprintf(stderr, "spindle: configuration file %s test failed\n", path)
		return 1
	}
	if !quiet {
		fmt.Fprintf(stderr, "spindle: the configuration file %s syntax is ok\n", path)
		fmt.Fprintf(stderr, "spindle: configuration file %s test is successful\n", path)
	}
	if dump {
		fmt.Fprint(stdout, bundle.Dump())
	}
	return 0
}

// sendSignal implements -s. Like nginx it reads the config to find the pid file, but
// leniently: a config with errors still names its pid file (or the default one), so
// that `-s reload` reaches the master, which reports the errors itself.
func sendSignal(prefix, path, name string, stdout, stderr io.Writer) int {
	pidFile, startTimeout, upgradeTimeout := lenientSettings(prefix, path)
	timeout := startTimeout + 10*time.Second
	if name == "upgrade" {
		timeout = upgradeTimeout + startTimeout + 10*time.Second
	}
	if err := signals.Send(pidFile, name, timeout, stdout); err != nil {
		fmt.Fprintf(stderr, "spindle: %v\n", err)
		return 1
	}
	return 0
}

func lenientSettings(prefix, path string) (pid string, start, upgrade time.Duration) {
	pid = conf.Resolve(prefix, "logs/spindle.pid")
	start, upgrade = 60*time.Second, 60*time.Second
	src, err := os.ReadFile(path)
	if err != nil {
		return
	}
	f, _ := hclsyntax.ParseConfig(src, path, hcl.Pos{Line: 1, Column: 1})
	if f == nil {
		return
	}
	body, ok := f.Body.(*hclsyntax.Body)
	if !ok {
		return
	}
	str := func(name string) (string, bool) {
		a, ok := body.Attributes[name]
		if !ok {
			return "", false
		}
		v, diags := a.Expr.Value(nil)
		if diags.HasErrors() || v.Type() != cty.String {
			return "", false
		}
		return v.AsString(), true
	}
	if s, ok := str("pid"); ok {
		pid = conf.Resolve(prefix, s)
	}
	if s, ok := str("worker_start_timeout"); ok {
		if d, err := conf.ParseDuration(s); err == nil {
			start = d
		}
	}
	if s, ok := str("upgrade_timeout"); ok {
		if d, err := conf.ParseDuration(s); err == nil {
			upgrade = d
		}
	}
	return
}
