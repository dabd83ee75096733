package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"

	"github.com/pulumi/pulumi/sdk/v3/go/common/util/logging"
	"github.com/pulumi/pulumi/sdk/v3/go/common/util/rpcutil"
	"github.com/pulumi/pulumi/sdk/v3/go/common/version"
	pulumirpc "github.com/pulumi/pulumi/sdk/v3/proto/go"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/types/known/emptypb"
)

// The exec script exits with this code after it has already shown the user an error (an
// unhandled exception with its traceback), so the engine must not add a second message.
const exitAfterUserMessage = 32

// host implements the LanguageRuntime service. Methods the engine only needs for code
// generation, `pulumi new` and `pulumi convert` stay Unimplemented (from the embedded struct).
type host struct {
	pulumirpc.UnimplementedLanguageRuntimeServer

	execScript string
	tracing    string
	// Used when a request carries no ProgramInfo (engines older than this protocol).
	cwd, flagRoot, flagVenv string

	mu            sync.Mutex
	engineAddress string
	// Cancelled by the Cancel RPC (then replaced); every child process runs under it.
	ctx    context.Context
	cancel context.CancelFunc
}

func newHost(execScript, engineAddress, tracing, cwd, root, venv string) *host {
	ctx, cancel := context.WithCancel(context.Background())
	return &host{
		execScript: execScript, engineAddress: engineAddress, tracing: tracing,
		cwd: cwd, flagRoot: root, flagVenv: venv, ctx: ctx, cancel: cancel,
	}
}

func (h *host) engine() string {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.engineAddress
}

// childContext ends when either the request ends or the engine cancels everything.
func (h *host) childContext(req context.Context) (context.Context, context.CancelFunc) {
	h.mu.Lock()
	all := h.ctx
	h.mu.Unlock()
	ctx, cancel := context.WithCancel(req)
	stop := context.AfterFunc(all, cancel)
	return ctx, func() { stop(); cancel() }
}

// killChildren stops every running child. Children started afterwards run normally: the engine
// calls Cancel when it is done with a host, and nothing says it never reuses one after that.
func (h *host) killChildren() {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.cancel()
	h.ctx, h.cancel = context.WithCancel(context.Background())
}

func (h *host) python(info *pulumirpc.ProgramInfo) (pythonEnv, error) {
	root := h.flagRoot
	if root == "" {
		root = h.cwd
	}
	return resolvePython(info, root, h.flagVenv)
}

// programDir is where the program (or plugin) lives: the ProgramInfo's program directory, else
// the working directory the engine gave.
func programDir(info *pulumirpc.ProgramInfo, pwd string) string {
	if dir := info.GetProgramDirectory(); dir != "" {
		return dir
	}
	return pwd
}

// dieWithParent makes the kernel kill a child when the host dies, so that a policy pack (which
// serves until killed) never outlives an engine that killed its language host.
func dieWithParent(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}

func (h *host) Handshake(
	_ context.Context, req *pulumirpc.LanguageHandshakeRequest,
) (*pulumirpc.LanguageHandshakeResponse, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if req.GetEngineAddress() != "" {
		h.engineAddress = req.GetEngineAddress()
	}
	return &pulumirpc.LanguageHandshakeResponse{}, nil
}

func (h *host) GetPluginInfo(context.Context, *emptypb.Empty) (*pulumirpc.PluginInfo, error) {
	return &pulumirpc.PluginInfo{Version: strings.TrimPrefix(version.Version, "v")}, nil
}

func (h *host) GetRequiredPackages(
	ctx context.Context, req *pulumirpc.GetRequiredPackagesRequest,
) (*pulumirpc.GetRequiredPackagesResponse, error) {
	deps, err := h.requiredPackages(ctx, req.GetInfo(), "")
	if err != nil {
		return nil, err
	}
	return &pulumirpc.GetRequiredPackagesResponse{Packages: deps}, nil
}

// GetRequiredPlugins is what engines before GetRequiredPackages call.
func (h *host) GetRequiredPlugins(
	ctx context.Context, req *pulumirpc.GetRequiredPluginsRequest,
) (*pulumirpc.GetRequiredPluginsResponse, error) {
	deps, err := h.requiredPackages(ctx, req.GetInfo(), req.GetPwd())
	if err != nil {
		return nil, err
	}
	plugins := make([]*pulumirpc.PluginDependency, 0, len(deps))
	for _, d := range deps {
		if d.Parameterization != nil {
			continue // not expressible as a plain plugin
		}
		plugins = append(plugins, &pulumirpc.PluginDependency{
			Name: d.Name, Kind: d.Kind, Version: d.Version, Server: d.Server,
		})
	}
	return &pulumirpc.GetRequiredPluginsResponse{Plugins: plugins}, nil
}

func (h *host) requiredPackages(
	ctx context.Context, info *pulumirpc.ProgramInfo, pwd string,
) ([]*pulumirpc.PackageDependency, error) {
	py, err := h.python(info)
	if err != nil {
		return nil, err
	}
	dir := programDir(info, pwd)
	if dir == "" {
		dir = h.cwd
	}
	paths, err := py.sysPath(ctx, dir)
	if err != nil {
		return nil, fmt.Errorf("listing the Python packages the program can import: %w", err)
	}
	deps, err := requiredPackages(paths)
	if err != nil {
		return nil, err
	}
	for _, d := range deps {
		logging.V(5).Infof("required package %s %s (%s)", d.Name, d.Version, d.Kind)
	}
	return deps, nil
}

func (h *host) Run(ctx context.Context, req *pulumirpc.RunRequest) (*pulumirpc.RunResponse, error) {
	info := req.GetInfo()
	py, err := h.python(info)
	if err != nil {
		return nil, err
	}
	if err := py.check(); err != nil {
		// Shown to the user as the program's error rather than as an engine failure.
		return &pulumirpc.RunResponse{Error: err.Error()}, nil
	}

	dir := programDir(info, req.GetPwd())
	program := req.GetProgram()
	if info != nil {
		program = info.GetEntryPoint()
	}
	if program == "" {
		program = "."
	}
	if !filepath.IsAbs(program) {
		program = filepath.Join(dir, program)
	}

	args := []string{"-u", h.execScript}
	add := func(flag, value string) {
		if value != "" {
			args = append(args, "--"+flag, value)
		}
	}
	add("monitor", req.GetMonitorAddress())
	add("engine", h.engine())
	add("project", req.GetProject())
	add("root_directory", info.GetRootDirectory())
	add("stack", req.GetStack())
	add("pwd", req.GetPwd())
	add("dry_run", strconv.FormatBool(req.GetDryRun()))
	add("parallel", strconv.Itoa(int(req.GetParallel())))
	add("tracing", h.tracing)
	add("organization", req.GetOrganization())
	args = append(args, program)
	args = append(args, req.GetArgs()...)

	env := os.Environ()
	// The SDK iterates over both; JSON null (what a nil map or slice encodes to) would crash it.
	configMap := req.GetConfig()
	if configMap == nil {
		configMap = map[string]string{}
	}
	config, err := json.Marshal(configMap)
	if err != nil {
		return nil, fmt.Errorf("encoding the stack's config: %w", err)
	}
	env = append(env, "PULUMI_CONFIG="+string(config))
	secretKeys := req.GetConfigSecretKeys()
	if secretKeys == nil {
		secretKeys = []string{}
	}
	keys, err := json.Marshal(secretKeys)
	if err != nil {
		return nil, fmt.Errorf("encoding the stack's secret config keys: %w", err)
	}
	env = append(env, "PULUMI_CONFIG_SECRET_KEYS="+string(keys))

	cctx, done := h.childContext(ctx)
	defer done()
	cmd, err := py.command(cctx, dir, env, args...)
	if err != nil {
		return &pulumirpc.RunResponse{Error: err.Error()}, nil
	}
	// The engine reads the host's own stdout and stderr and shows them as the program's output.
	cmd.Stdout, cmd.Stderr = os.Stdout, os.Stderr
	logging.V(5).Infof("running %s %s in %s", cmd.Path, strings.Join(args, " "), dir)
	err = cmd.Run()
	_ = os.Stdout.Sync()
	_ = os.Stderr.Sync()
	if err == nil {
		return &pulumirpc.RunResponse{}, nil
	}
	var exitErr *exec.ExitError
	if !errors.As(err, &exitErr) {
		return &pulumirpc.RunResponse{Error: fmt.Sprintf("could not start the Python program: %v", err)}, nil
	}
	if cctx.Err() != nil {
		return &pulumirpc.RunResponse{Error: "the Python program was cancelled"}, nil
	}
	switch code := exitErr.ExitCode(); code {
	case exitAfterUserMessage:
		return &pulumirpc.RunResponse{Bail: true}, nil
	case -1:
		return &pulumirpc.RunResponse{Error: fmt.Sprintf("the Python program was killed: %v", exitErr)}, nil
	default:
		return &pulumirpc.RunResponse{Error: fmt.Sprintf("the Python program exited with code %d", code)}, nil
	}
}

// RunPlugin starts a plugin written in Python: a policy pack (kind "analyzer", served by the
// SDK's pulumi.policy runner) or a provider (its directory's __main__.py). It streams the
// plugin's output back until it exits or the engine cancels the stream.
func (h *host) RunPlugin(
	req *pulumirpc.RunPluginRequest, server grpc.ServerStreamingServer[pulumirpc.RunPluginResponse],
) error {
	info := req.GetInfo()
	py, err := h.python(info)
	if err != nil {
		return err
	}
	dir := programDir(info, req.GetPwd())
	if req.GetProgram() != "" && info == nil {
		dir = req.GetProgram()
	}
	// -u: the engine waits for the port line, which Python would otherwise keep in its buffer.
	var args []string
	switch req.GetKind() {
	case "analyzer":
		// pulumi.policy takes the engine's flags and address, then the pack's directory.
		args = append([]string{"-u", "-m", "pulumi.policy"}, req.GetArgs()...)
		args = append(args, dir)
	default:
		entry := info.GetEntryPoint()
		if entry == "" {
			entry = "."
		}
		args = append([]string{"-u", filepath.Join(dir, entry)}, req.GetArgs()...)
	}

	env := req.GetEnv()
	if len(env) == 0 {
		env = os.Environ()
	}
	cctx, done := h.childContext(server.Context())
	defer done()
	workdir := req.GetPwd()
	if workdir == "" {
		workdir = dir
	}
	cmd, err := py.command(cctx, workdir, env, args...)
	if err != nil {
		return err
	}
	closer, stdout, stderr, err := rpcutil.MakeRunPluginStreams(server, false)
	if err != nil {
		return err
	}
	defer closer.Close()
	cmd.Stdout, cmd.Stderr = stdout, stderr
	logging.V(5).Infof("running plugin %s %s in %s", cmd.Path, strings.Join(args, " "), workdir)

	err = cmd.Run()
	if cerr := closer.Close(); err == nil {
		return cerr
	}
	var exitErr *exec.ExitError
	if errors.As(err, &exitErr) {
		if cctx.Err() != nil {
			// The engine closed the stream to stop the plugin; nobody is listening any more.
			return nil
		}
		return server.Send(&pulumirpc.RunPluginResponse{
			Output: &pulumirpc.RunPluginResponse_Exitcode{Exitcode: int32(exitErr.ExitCode())},
		})
	}
	return fmt.Errorf("could not start the Python plugin in %s: %w", dir, err)
}

// InstallDependencies only checks: the repository's scripts create and fill the virtualenv
// (pinned in requirements.lock), so a language host that ran pip here would fight them.
func (h *host) InstallDependencies(
	req *pulumirpc.InstallDependenciesRequest, server grpc.ServerStreamingServer[pulumirpc.InstallDependenciesResponse],
) error {
	info := req.GetInfo()
	py, err := h.python(info)
	if err != nil {
		return err
	}
	dir := programDir(info, req.GetDirectory())
	out, err := py.output(server.Context(), dir, "-c", "import pulumi, sys; print(sys.executable)")
	if err != nil {
		return fmt.Errorf("the Pulumi Python SDK is not importable (install the requirements into the virtualenv): %w", err)
	}
	msg := fmt.Sprintf("Python dependencies are managed outside pulumi; using %s", strings.TrimSpace(string(out)))
	return server.Send(&pulumirpc.InstallDependenciesResponse{Stdout: []byte(msg + "\n")})
}

func (h *host) About(ctx context.Context, req *pulumirpc.AboutRequest) (*pulumirpc.AboutResponse, error) {
	py, err := h.python(req.GetInfo())
	if err != nil {
		return nil, err
	}
	dir := programDir(req.GetInfo(), h.cwd)
	out, err := py.output(ctx, dir, "-c", "import platform, sys; print(sys.executable); print(platform.python_version())")
	if err != nil {
		return nil, err
	}
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	if len(lines) != 2 {
		return nil, fmt.Errorf("unexpected answer from python: %q", out)
	}
	meta := map[string]string{}
	if py.venv != "" {
		meta["virtualenv"] = py.venv
	}
	return &pulumirpc.AboutResponse{Executable: lines[0], Version: lines[1], Metadata: meta}, nil
}

// GetProgramDependencies lists the distributions installed where the program imports from
// (`pulumi about` shows them).
func (h *host) GetProgramDependencies(
	ctx context.Context, req *pulumirpc.GetProgramDependenciesRequest,
) (*pulumirpc.GetProgramDependenciesResponse, error) {
	info := req.GetInfo()
	py, err := h.python(info)
	if err != nil {
		return nil, err
	}
	dir := programDir(info, req.GetPwd())
	script := "import importlib.metadata as m, json\n" +
		"print(json.dumps(sorted({(d.metadata['Name'] or '', d.version) for d in m.distributions()})))"
	out, err := py.output(ctx, dir, "-c", script)
	if err != nil {
		return nil, err
	}
	var pairs [][2]string
	if err := json.Unmarshal(out, &pairs); err != nil {
		return nil, fmt.Errorf("reading the installed distributions: %w", err)
	}
	deps := make([]*pulumirpc.DependencyInfo, 0, len(pairs))
	for _, p := range pairs {
		if p[0] != "" {
			deps = append(deps, &pulumirpc.DependencyInfo{Name: p[0], Version: p[1]})
		}
	}
	return &pulumirpc.GetProgramDependenciesResponse{Dependencies: deps}, nil
}

// Cancel stops every program and plugin this host started; the engine calls it when the user
// interrupts an update.
func (h *host) Cancel(context.Context, *emptypb.Empty) (*emptypb.Empty, error) {
	h.killChildren()
	return &emptypb.Empty{}, nil
}

// RuntimeOptionsPrompts has nothing to ask: `pulumi new` is not how this repository is set up.
func (h *host) RuntimeOptionsPrompts(
	context.Context, *pulumirpc.RuntimeOptionsRequest,
) (*pulumirpc.RuntimeOptionsResponse, error) {
	return &pulumirpc.RuntimeOptionsResponse{}, nil
}

var _ pulumirpc.LanguageRuntimeServer = (*host)(nil)
