package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"

	pulumirpc "github.com/pulumi/pulumi/sdk/v3/proto/go"
)

// pythonEnv is the interpreter a program or policy pack runs with: the one of its virtualenv
// when the runtime options name one, else python3 from PATH (or PULUMI_PYTHON_CMD).
type pythonEnv struct {
	// Directory of the virtualenv; empty when no virtualenv is configured.
	venv string
	// The virtualenv option as written in Pulumi.yaml / PulumiPolicy.yaml, for messages.
	option string
	// Where the option came from, for messages.
	source string
}

// runtimeOptions are the parts of `runtime.options` this host understands.
type runtimeOptions struct {
	virtualenv string
	toolchain  string
}

func optionsOf(info *pulumirpc.ProgramInfo) runtimeOptions {
	var opts runtimeOptions
	if info == nil || info.GetOptions() == nil {
		return opts
	}
	fields := info.GetOptions().GetFields()
	if v, ok := fields["virtualenv"]; ok {
		opts.virtualenv = v.GetStringValue()
	}
	if v, ok := fields["toolchain"]; ok {
		opts.toolchain = v.GetStringValue()
	}
	return opts
}

// resolvePython picks the interpreter for a program or plugin. A relative virtualenv is taken
// relative to the directory holding Pulumi.yaml (PulumiPolicy.yaml for a policy pack), which is
// the ProgramInfo's root directory.
func resolvePython(info *pulumirpc.ProgramInfo, fallbackRoot, fallbackVenv string) (pythonEnv, error) {
	opts := optionsOf(info)
	root := info.GetRootDirectory()
	if root == "" {
		root = fallbackRoot
	}
	source := filepath.Join(root, "Pulumi.yaml")
	if info == nil {
		opts.virtualenv = fallbackVenv
		source = "the -virtualenv flag"
	}
	switch opts.toolchain {
	case "", "pip":
	default:
		return pythonEnv{}, fmt.Errorf(
			"runtime option toolchain: %s is not supported by this language host (only pip, with a virtualenv)",
			opts.toolchain)
	}
	if opts.virtualenv == "" {
		return pythonEnv{}, nil
	}
	venv := opts.virtualenv
	if !filepath.IsAbs(venv) {
		venv = filepath.Join(root, venv)
	}
	return pythonEnv{venv: filepath.Clean(venv), option: opts.virtualenv, source: source}, nil
}

// check fails with a message the user can act on when the virtualenv is missing or broken.
func (p pythonEnv) check() error {
	if p.venv == "" {
		_, err := p.interpreter()
		return err
	}
	_, cfgErr := os.Stat(filepath.Join(p.venv, "pyvenv.cfg"))
	_, pyErr := os.Stat(filepath.Join(p.venv, "bin", "python"))
	if cfgErr != nil || pyErr != nil {
		return fmt.Errorf(
			"the virtualenv %s (runtime option virtualenv: %s in %s) does not exist or is not a virtualenv; "+
				"create it with `python3 -m venv %s` and install the program's requirements into it",
			p.venv, p.option, p.source, p.venv)
	}
	return nil
}

// interpreter is the python executable to start.
func (p pythonEnv) interpreter() (string, error) {
	if p.venv != "" {
		return filepath.Join(p.venv, "bin", "python"), nil
	}
	if cmd := os.Getenv("PULUMI_PYTHON_CMD"); cmd != "" {
		return cmd, nil
	}
	for _, name := range []string{"python3", "python"} {
		if path, err := exec.LookPath(name); err == nil {
			return path, nil
		}
	}
	return "", errors.New("no python3 on PATH; install Python 3 or set the virtualenv runtime option in Pulumi.yaml")
}

// environ returns env with the virtualenv activated the way `source bin/activate` would, so
// that subprocesses the program starts (pip, python3) also come from the virtualenv.
func (p pythonEnv) environ(env []string) []string {
	if p.venv == "" {
		return env
	}
	out := make([]string, 0, len(env)+2)
	path := ""
	for _, kv := range env {
		switch {
		case strings.HasPrefix(kv, "PATH="):
			path = strings.TrimPrefix(kv, "PATH=")
		case strings.HasPrefix(kv, "PYTHONHOME="), strings.HasPrefix(kv, "VIRTUAL_ENV="):
			// A PYTHONHOME would make the venv's interpreter load another installation's stdlib.
		default:
			out = append(out, kv)
		}
	}
	bin := filepath.Join(p.venv, "bin")
	if path != "" {
		bin += string(os.PathListSeparator) + path
	}
	return append(out, "PATH="+bin, "VIRTUAL_ENV="+p.venv)
}

// command builds a python invocation in this environment.
func (p pythonEnv) command(ctx context.Context, dir string, env []string, args ...string) (*exec.Cmd, error) {
	if err := p.check(); err != nil {
		return nil, err
	}
	python, err := p.interpreter()
	if err != nil {
		return nil, err
	}
	cmd := exec.CommandContext(ctx, python, args...)
	cmd.Dir = dir
	cmd.Env = p.environ(env)
	dieWithParent(cmd)
	return cmd, nil
}

// output runs a short python snippet and returns its stdout; stderr goes into the error.
func (p pythonEnv) output(ctx context.Context, dir string, args ...string) ([]byte, error) {
	cmd, err := p.command(ctx, dir, os.Environ(), args...)
	if err != nil {
		return nil, err
	}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("%s %s: %w: %s", cmd.Path, strings.Join(args, " "), err, strings.TrimSpace(stderr.String()))
	}
	return out, nil
}

// sysPath asks the interpreter where it imports packages from. Asking (rather than globbing
// lib/python*/site-packages) also covers .pth files, user site-packages and non-venv installs.
func (p pythonEnv) sysPath(ctx context.Context, dir string) ([]string, error) {
	out, err := p.output(ctx, dir, "-c", "import json, sys; print(json.dumps(sys.path))")
	if err != nil {
		return nil, err
	}
	var paths []string
	if err := json.Unmarshal(out, &paths); err != nil {
		return nil, fmt.Errorf("reading sys.path from python: %w", err)
	}
	return paths, nil
}

// pluginJSON is the pulumi-plugin.json a Pulumi package ships inside its import package.
type pluginJSON struct {
	Resource         bool   `json:"resource"`
	Name             string `json:"name"`
	Version          string `json:"version"`
	Server           string `json:"server"`
	Parameterization *struct {
		Name    string `json:"name"`
		Version string `json:"version"`
		Value   []byte `json:"value"`
	} `json:"parameterization"`
}

// requiredPackages lists the resource plugins that the Pulumi packages importable from dirs
// ask for, one entry per (name, version, parameterization), sorted for stable output.
func requiredPackages(dirs []string) ([]*pulumirpc.PackageDependency, error) {
	seen := map[string]bool{}
	var deps []*pulumirpc.PackageDependency
	for _, dir := range dirs {
		// "" is the script's directory, which is not a place packages are installed in.
		if dir == "" || !filepath.IsAbs(dir) {
			continue
		}
		matches, err := filepath.Glob(filepath.Join(dir, "*", "pulumi-plugin.json"))
		if err != nil {
			return nil, err
		}
		sort.Strings(matches)
		for _, path := range matches {
			data, err := os.ReadFile(path)
			if err != nil {
				return nil, err
			}
			var pj pluginJSON
			if err := json.Unmarshal(data, &pj); err != nil {
				return nil, fmt.Errorf("parsing %s: %w", path, err)
			}
			if !pj.Resource {
				continue
			}
			if pj.Name == "" {
				// Old packages derived the name from the directory (pulumi_<name>).
				pj.Name = strings.ReplaceAll(strings.TrimPrefix(filepath.Base(filepath.Dir(path)), "pulumi_"), "_", "-")
			}
			dep := &pulumirpc.PackageDependency{
				Name:    pj.Name,
				Kind:    "resource",
				Version: pj.Version,
				Server:  pj.Server,
			}
			key := pj.Name + "@" + pj.Version
			if pz := pj.Parameterization; pz != nil {
				dep.Parameterization = &pulumirpc.PackageParameterization{
					Name: pz.Name, Version: pz.Version, Value: pz.Value,
				}
				key += "/" + pz.Name + "@" + pz.Version
			}
			// A directory can be on sys.path twice (a venv and a .pth pointing at it).
			if seen[key] {
				continue
			}
			seen[key] = true
			deps = append(deps, dep)
		}
	}
	return deps, nil
}
