// Package bridgeinfo builds the parts of a bridge ProviderInfo that both providers share: it maps
// Terraform resource and data-source names onto the Pulumi tokens the pip SDK uses (a list of
// those tokens is embedded by each provider), and it can dump, for every mapped entity, the
// property names the bridge derives, so that a script can compare them with the SDK.
package bridgeinfo

import (
	"encoding/json"
	"fmt"
	"os"
	"regexp"
	"sort"
	"strings"

	"github.com/pulumi/pulumi-terraform-bridge/v3/pkg/tfbridge"
	shim "github.com/pulumi/pulumi-terraform-bridge/v3/pkg/tfshim"
	"github.com/pulumi/pulumi/sdk/v3/go/common/tokens"
)

// SDKTokens is the content of sdk-tokens.json: the resource and function tokens of the pip SDK.
type SDKTokens struct {
	Package   string   `json:"package"`
	Version   string   `json:"version"`
	Resources []string `json:"resources"`
	Functions []string `json:"functions"`
}

// Overrides name the token of a Terraform entity whose name does not normalise to its SDK token;
// an empty token leaves the entity unmapped (for example when the SDK token of the same
// normalised name belongs to something else).
type Overrides struct {
	Resources   map[string]string
	DataSources map[string]string
	// Modules renames the first word of Terraform names (lb -> loadbalancer) before matching.
	Modules map[string]string
}

var versionSuffix = regexp.MustCompile(`v[0-9]+$`)

// normal drops what the SDK's naming does not keep stable: case, underscores and separators.
func normal(s string) string {
	return strings.ToLower(strings.NewReplacer("_", "", "-", "", "/", "").Replace(s))
}

// tokenKey turns "pkg:mod/name:Name" into the normalised module+name a Terraform name is
// compared with; the "index" module stands for names without a module part.
func tokenKey(tok string, function bool) (string, error) {
	parts := strings.Split(tok, ":")
	if len(parts) != 3 {
		return "", fmt.Errorf("malformed token %q", tok)
	}
	mod := strings.SplitN(parts[1], "/", 2)[0]
	if mod == "index" {
		mod = ""
	}
	name := parts[2]
	if function {
		name = strings.TrimPrefix(name, "get")
	}
	return normal(mod + name), nil
}

// rank orders tokens that normalise alike: a module token beats its legacy twin in "index", a
// "get" function beats a deprecated function without the prefix.
func rank(tok string) int {
	r := 0
	if !strings.Contains(tok, ":index/") {
		r += 2
	}
	if parts := strings.Split(tok, ":"); len(parts) == 3 && strings.HasPrefix(parts[2], "get") {
		r++
	}
	return r
}

// index maps normalised keys to tokens; keys claimed by two tokens of equal rank are ambiguous
// and dropped.
func index(toks []string, function bool) (map[string]string, error) {
	byKey := map[string]string{}
	ambiguous := map[string]bool{}
	for _, tok := range toks {
		k, err := tokenKey(tok, function)
		if err != nil {
			return nil, err
		}
		if prev, dup := byKey[k]; dup {
			switch {
			case rank(prev) > rank(tok):
				continue
			case rank(prev) == rank(tok):
				ambiguous[k] = true
			default:
				delete(ambiguous, k)
			}
		}
		byKey[k] = tok
	}
	for k := range ambiguous {
		delete(byKey, k)
	}
	return byKey, nil
}

// match finds the SDK token of a Terraform name: exactly, or without its API version suffix
// (the SDK drops "_v2" from most names but keeps it on some).
func match(byKey map[string]string, prefix string, modules map[string]string, tfName string) string {
	name := strings.TrimPrefix(tfName, prefix)
	for from, to := range modules {
		if rest, ok := strings.CutPrefix(name, from+"_"); ok {
			name = to + "_" + rest
			break
		}
	}
	k := normal(name)
	if tok, ok := byKey[k]; ok {
		return tok
	}
	if trimmed := versionSuffix.ReplaceAllString(k, ""); trimmed != k {
		return byKey[trimmed]
	}
	return ""
}

// MapTokens fills prov.Resources and prov.DataSources for every Terraform entity that has an SDK
// token, keeping entries already present (hand-written ResourceInfo with field overrides) but
// setting their token. It returns the Terraform names left unmapped, for the names dump.
func MapTokens(prov *tfbridge.ProviderInfo, sdk SDKTokens, ov Overrides) (unmapped []string, err error) {
	prefix := prov.Name + "_"
	if prov.ResourcePrefix != "" {
		prefix = prov.ResourcePrefix + "_"
	}
	resKeys, err := index(sdk.Resources, false)
	if err != nil {
		return nil, err
	}
	fnKeys, err := index(sdk.Functions, true)
	if err != nil {
		return nil, err
	}
	if prov.Resources == nil {
		prov.Resources = map[string]*tfbridge.ResourceInfo{}
	}
	if prov.DataSources == nil {
		prov.DataSources = map[string]*tfbridge.DataSourceInfo{}
	}
	prov.P.ResourcesMap().Range(func(tf string, _ shim.Resource) bool {
		tok, explicit := ov.Resources[tf]
		if !explicit {
			tok = match(resKeys, prefix, ov.Modules, tf)
		}
		if tok == "" {
			unmapped = append(unmapped, "resource "+tf)
			delete(prov.Resources, tf)
			return true
		}
		ri := prov.Resources[tf]
		if ri == nil {
			ri = &tfbridge.ResourceInfo{}
			prov.Resources[tf] = ri
		}
		ri.Tok = tokens.Type(tok)
		return true
	})
	prov.P.DataSourcesMap().Range(func(tf string, _ shim.Resource) bool {
		tok, explicit := ov.DataSources[tf]
		if !explicit {
			tok = match(fnKeys, prefix, ov.Modules, tf)
		}
		if tok == "" {
			unmapped = append(unmapped, "data source "+tf)
			delete(prov.DataSources, tf)
			return true
		}
		di := prov.DataSources[tf]
		if di == nil {
			di = &tfbridge.DataSourceInfo{}
			prov.DataSources[tf] = di
		}
		di.Tok = tokens.ModuleMember(tok)
		return true
	})
	// A hand-written entry for a name the provider does not have is a mistake in our info.
	for tf := range prov.Resources {
		if _, ok := prov.P.ResourcesMap().GetOk(tf); !ok {
			return nil, fmt.Errorf("resource info for %s, which the Terraform provider does not have", tf)
		}
	}
	for tf := range prov.DataSources {
		if _, ok := prov.P.DataSourcesMap().GetOk(tf); !ok {
			return nil, fmt.Errorf("data source info for %s, which the Terraform provider does not have", tf)
		}
	}
	sort.Strings(unmapped)
	return unmapped, nil
}

// AutoNameRequiredNames gives every resource whose Terraform "name" is required an automatic
// name (the Pulumi resource name plus a random suffix) unless its info already says otherwise:
// the SDK declares those names optional.
func AutoNameRequiredNames(prov *tfbridge.ProviderInfo) {
	for tf, ri := range prov.Resources {
		s, ok := prov.P.ResourcesMap().Get(tf).Schema().GetOk("name")
		if !ok || !s.Required() || s.Type() != shim.TypeString {
			continue
		}
		if ri.Fields == nil {
			ri.Fields = map[string]*tfbridge.SchemaInfo{}
		}
		if ri.Fields["name"] == nil {
			ri.Fields["name"] = tfbridge.AutoName("name", 255, "-")
		}
	}
}

// Field describes one property as the bridge projects it.
type Field struct {
	TF       string           `json:"tf"`
	Input    bool             `json:"input"`
	Required bool             `json:"required"`
	Kind     string           `json:"kind"` // scalar, list, map, object (a flattened MaxItems=1 block)
	Fields   map[string]Field `json:"fields,omitempty"`
}

// Entity is a mapped resource or data source.
type Entity struct {
	TF     string           `json:"tf"`
	Fields map[string]Field `json:"fields"`
}

// Dump is what -dump-names prints.
type Dump struct {
	Resources map[string]Entity `json:"resources"`
	Functions map[string]Entity `json:"functions"`
	Config    map[string]Field  `json:"config"`
	Unmapped  []string          `json:"unmapped"`
}

func fieldsOf(sch shim.SchemaMap, infos map[string]*tfbridge.SchemaInfo) map[string]Field {
	out := map[string]Field{}
	sch.Range(func(tf string, s shim.Schema) bool {
		info := infos[tf]
		name := tfbridge.TerraformToPulumiNameV2(tf, sch, infos)
		f := Field{
			TF:    tf,
			Input: s.Optional() || s.Required(),
			// A Terraform default (also one read from an environment variable) makes a required
			// attribute one the program may leave out.
			Required: s.Required() && s.Default() == nil && s.DefaultFunc() == nil &&
				(info == nil || info.Default == nil),
			Kind: "scalar",
		}
		var elemInfo *tfbridge.SchemaInfo
		if info != nil {
			elemInfo = info.Elem
		}
		switch s.Type() {
		case shim.TypeList, shim.TypeSet:
			f.Kind = "list"
			if tfbridge.IsMaxItemsOne(s, info) {
				f.Kind = "object"
			}
		case shim.TypeMap:
			f.Kind = "map"
		}
		if r, ok := s.Elem().(shim.Resource); ok {
			var sub map[string]*tfbridge.SchemaInfo
			if elemInfo != nil {
				sub = elemInfo.Fields
			}
			f.Fields = fieldsOf(r.Schema(), sub)
			if s.Type() == shim.TypeMap {
				f.Kind = "object"
			}
		}
		out[name] = f
		return true
	})
	return out
}

// DumpNames prints the property names of every mapped entity as JSON.
func DumpNames(prov *tfbridge.ProviderInfo, unmapped []string) error {
	d := Dump{Resources: map[string]Entity{}, Functions: map[string]Entity{}, Unmapped: unmapped}
	for tf, ri := range prov.Resources {
		r := prov.P.ResourcesMap().Get(tf)
		d.Resources[string(ri.Tok)] = Entity{TF: tf, Fields: fieldsOf(r.Schema(), ri.Fields)}
	}
	for tf, di := range prov.DataSources {
		r := prov.P.DataSourcesMap().Get(tf)
		d.Functions[string(di.Tok)] = Entity{TF: tf, Fields: fieldsOf(r.Schema(), di.Fields)}
	}
	d.Config = fieldsOf(prov.P.Schema(), prov.Config)
	enc := json.NewEncoder(os.Stdout)
	enc.SetIndent("", " ")
	return enc.Encode(d)
}

// Main maps the tokens and then either dumps the names (first argument -dump-names) or serves
// the provider. Serving passes no Pulumi schema: the bridge then skips its advisory type check
// of inputs, and GetSchema answers with an empty schema (see the toolchain README).
func Main(prov tfbridge.ProviderInfo, sdkJSON []byte, ov Overrides) {
	var sdk SDKTokens
	if err := json.Unmarshal(sdkJSON, &sdk); err != nil {
		fmt.Fprintf(os.Stderr, "sdk-tokens.json: %v\n", err)
		os.Exit(1)
	}
	unmapped, err := MapTokens(&prov, sdk, ov)
	if err != nil {
		fmt.Fprintf(os.Stderr, "mapping tokens: %v\n", err)
		os.Exit(1)
	}
	AutoNameRequiredNames(&prov)
	if len(os.Args) > 1 && os.Args[1] == "-dump-names" {
		if err := DumpNames(&prov, unmapped); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		return
	}
	tfbridge.Main(prov.Name, prov.Version, prov, nil)
}
