// Command pulumi-language-python is the calculator lab's own Python language host for the Pulumi
// engine: it runs Python programs and Python policy packs in the virtualenv named by the
// project's runtime options, through the pulumi-language-python-exec script installed beside it.
//
// The engine starts it as `pulumi-language-python [-logtostderr] [-v=N] [-tracing=URL] ENGINE`,
// reads the gRPC port it prints on stdout, and then calls the LanguageRuntime service.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/pulumi/pulumi/sdk/v3/go/common/util/cmdutil"
	"github.com/pulumi/pulumi/sdk/v3/go/common/util/logging"
	"github.com/pulumi/pulumi/sdk/v3/go/common/util/rpcutil"
	pulumirpc "github.com/pulumi/pulumi/sdk/v3/proto/go"
	"google.golang.org/grpc"
)

// execScriptName is the Python driver shipped in the sdk/v3 module; the build copies it here.
const execScriptName = "pulumi-language-python-exec"

func main() {
	// The engine appends -logtostderr, -v=N and -logflow to every plugin's command line when its
	// own logging is on. glog (linked in through the SDK) already defines the first two on the
	// global flag set, and logging.InitLogging reads them from there.
	defineBool("logtostderr", "log to stderr instead of to files")
	defineBool("logflow", "pass log settings on to child processes")
	if flag.Lookup("v") == nil {
		flag.Int("v", 0, "log verbosity")
	}
	tracing := flag.String("tracing", "", "Zipkin-compatible tracing endpoint")
	// Older engines passed the project root and virtualenv on the command line; newer ones put
	// them in each request's ProgramInfo, which wins when present.
	root := flag.String("root", "", "project root directory (older engines)")
	virtualenv := flag.String("virtualenv", "", "virtualenv option (older engines)")
	execScript := flag.String("use-executor", "", "run programs with this script instead of the one beside this binary")
	flag.Parse()

	logging.InitLogging(false, 0, flag.Lookup("logflow").Value.String() == "true")
	cmdutil.InitTracing("pulumi-language-python", "pulumi-language-python", *tracing)

	if *execScript == "" {
		self, err := os.Executable()
		if err != nil {
			cmdutil.Exit(fmt.Errorf("finding this executable: %w", err))
		}
		*execScript = filepath.Join(filepath.Dir(self), execScriptName)
	}
	if _, err := os.Stat(*execScript); err != nil {
		cmdutil.Exit(fmt.Errorf("the Python driver %s must sit beside the language host: %w", execScriptName, err))
	}

	var engineAddress string
	if args := flag.Args(); len(args) > 0 {
		engineAddress = args[0]
	}

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	// Without this a host whose engine was killed would keep serving (and its children running)
	// forever.
	if engineAddress != "" {
		if err := rpcutil.Healthcheck(ctx, engineAddress, 5*time.Minute, cancel); err != nil {
			cmdutil.Exit(fmt.Errorf("starting the engine health check: %w", err))
		}
	}
	stop := make(chan bool)
	go func() {
		<-ctx.Done()
		close(stop)
	}()

	cwd, err := os.Getwd()
	if err != nil {
		cmdutil.Exit(fmt.Errorf("reading the working directory: %w", err))
	}
	host := newHost(*execScript, engineAddress, *tracing, cwd, *root, *virtualenv)
	handle, err := rpcutil.ServeWithOptions(rpcutil.ServeOptions{
		Cancel: stop,
		Init: func(srv *grpc.Server) error {
			pulumirpc.RegisterLanguageRuntimeServer(srv, host)
			return nil
		},
		Options: rpcutil.OpenTracingServerInterceptorOptions(nil),
	})
	if err != nil {
		cmdutil.Exit(fmt.Errorf("starting the language host's gRPC server: %w", err))
	}
	// The engine reads exactly one line, the port, before it dials.
	fmt.Printf("%d\n", handle.Port)

	err = <-handle.Done
	host.killChildren()
	if err != nil {
		cmdutil.Exit(fmt.Errorf("language host stopped serving: %w", err))
	}
}

func defineBool(name, usage string) {
	if flag.Lookup(name) == nil {
		flag.Bool(name, false, usage)
	}
}
