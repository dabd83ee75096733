package main

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	pulumirpc "github.com/pulumi/pulumi/sdk/v3/proto/go"
	"google.golang.org/protobuf/types/known/structpb"
)

func programInfo(t *testing.T, root string, options map[string]any) *pulumirpc.ProgramInfo {
	t.Helper()
	opts, err := structpb.NewStruct(options)
	if err != nil {
		t.Fatal(err)
	}
	return &pulumirpc.ProgramInfo{RootDirectory: root, ProgramDirectory: root, EntryPoint: ".", Options: opts}
}

func TestVirtualenvIsRelativeToTheProjectRoot(t *testing.T) {
	py, err := resolvePython(programInfo(t, "/srv/lab/policy", map[string]any{"virtualenv": "../.venv"}), "/elsewhere", "")
	if err != nil {
		t.Fatal(err)
	}
	if py.venv != "/srv/lab/.venv" {
		t.Fatalf("venv = %q, want /srv/lab/.venv", py.venv)
	}
	abs, err := resolvePython(programInfo(t, "/srv/lab", map[string]any{"virtualenv": "/opt/venv"}), "", "")
	if err != nil || abs.venv != "/opt/venv" {
		t.Fatalf("absolute virtualenv: %q, %v", abs.venv, err)
	}
}

func TestOtherToolchainsAreRefused(t *testing.T) {
	_, err := resolvePython(programInfo(t, "/srv/lab", map[string]any{"toolchain": "poetry"}), "", "")
	if err == nil || !strings.Contains(err.Error(), "poetry") {
		t.Fatalf("err = %v, want a refusal naming poetry", err)
	}
}

func TestMissingVirtualenvIsNamed(t *testing.T) {
	root := t.TempDir()
	py, err := resolvePython(programInfo(t, root, map[string]any{"virtualenv": "venv"}), "", "")
	if err != nil {
		t.Fatal(err)
	}
	err = py.check()
	if err == nil || !strings.Contains(err.Error(), filepath.Join(root, "venv")) {
		t.Fatalf("err = %v, want one naming %s", err, filepath.Join(root, "venv"))
	}
}

func TestActivationPutsTheVenvFirstAndDropsPythonHome(t *testing.T) {
	env := pythonEnv{venv: "/v"}.environ([]string{"PATH=/usr/bin", "PYTHONHOME=/x", "HOME=/root"})
	want := []string{"HOME=/root", "PATH=/v/bin:/usr/bin", "VIRTUAL_ENV=/v"}
	if !slices.Equal(env, want) {
		t.Fatalf("env = %v, want %v", env, want)
	}
}

func writeFile(t *testing.T, path, content string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

func TestRequiredPackagesComeFromPulumiPluginJSON(t *testing.T) {
	site := t.TempDir()
	writeFile(t, filepath.Join(site, "pulumi_docker", "pulumi-plugin.json"),
		`{"resource": true, "name": "docker", "version": "5.2.0"}`)
	writeFile(t, filepath.Join(site, "pulumi_policy", "pulumi-plugin.json"), `{"resource": false}`)
	writeFile(t, filepath.Join(site, "pulumi_random", "pulumi-plugin.json"),
		`{"resource": true, "version": "4.1.0", "server": "https://example.invalid"}`)
	writeFile(t, filepath.Join(site, "pulumi_terraform_thing", "pulumi-plugin.json"),
		`{"resource": true, "name": "terraform-provider", "version": "0.3.0",
		  "parameterization": {"name": "thing", "version": "1.0.0", "value": "aGk="}}`)
	writeFile(t, filepath.Join(site, "requests", "__init__.py"), "")

	// The same directory twice (as a .pth file can make it) must not double the packages.
	deps, err := requiredPackages([]string{"", "relative", site, site})
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, d := range deps {
		entry := d.Kind + ":" + d.Name + "@" + d.Version
		if d.Server != "" {
			entry += " from " + d.Server
		}
		if p := d.Parameterization; p != nil {
			entry += " as " + p.Name + "@" + p.Version + "=" + string(p.Value)
		}
		got = append(got, entry)
	}
	want := []string{
		"resource:docker@5.2.0",
		"resource:random@4.1.0 from https://example.invalid",
		"resource:terraform-provider@0.3.0 as thing@1.0.0=hi",
	}
	if !slices.Equal(got, want) {
		t.Fatalf("packages = %v, want %v", got, want)
	}
}
