// Command pulumi-resource-docker serves kreuzwerker's terraform-provider-docker (its SDKv2
// resources) through the Pulumi Terraform bridge under the tokens and property names of the
// pulumi_docker SDK.
package main

import (
	_ "embed"

	"github.com/pulumi/pulumi-terraform-bridge/v3/pkg/tfbridge"
	shimv2 "github.com/pulumi/pulumi-terraform-bridge/v3/pkg/tfshim/sdk-v2"
	"github.com/terraform-providers/terraform-provider-docker/shim"

	"calculator-lab.invalid/toolchain/pulumi-resource-docker/bridgeinfo"
)

// sdk-tokens.json is generated from the pip SDK by ../sdk_names.py.
//
//go:embed sdk-tokens.json
var sdkTokens []byte

// version is set with -ldflags -X; the engine matches it against the SDK's plugin version.
var version = "dev"

func main() {
	prov := tfbridge.ProviderInfo{
		P:       shimv2.NewProvider(shim.NewProvider(version)),
		Name:    "docker",
		Version: version,
		Config: map[string]*tfbridge.SchemaInfo{
			"registry_auth": {Name: "registryAuth"},
		},
		Resources: map[string]*tfbridge.ResourceInfo{
			// The SDK keeps these list attributes (and registry_auth above) singular.
			"docker_container": {Fields: map[string]*tfbridge.SchemaInfo{
				"command":           {Name: "command"},
				"networks_advanced": {Name: "networksAdvanced"},
			}},
		},
	}
	bridgeinfo.Main(prov, sdkTokens, bridgeinfo.Overrides{
		// The SDK's names for these differ from Terraform's; its docker:index/image:Image is a
		// resource of pulumi-docker's own (not bridged), which this provider does not have.
		Resources: map[string]string{
			"docker_image":  "docker:index/remoteImage:RemoteImage",
			"docker_config": "docker:index/serviceConfig:ServiceConfig",
		},
		DataSources: map[string]string{
			"docker_image": "docker:index/getRemoteImage:getRemoteImage",
		},
	})
}
