// Command pulumi-resource-openstack serves terraform-provider-openstack through the Pulumi
// Terraform bridge under the tokens and property names of the pulumi_openstack SDK.
package main

import (
	_ "embed"

	"github.com/pulumi/pulumi-terraform-bridge/v3/pkg/tfbridge"
	shimv2 "github.com/pulumi/pulumi-terraform-bridge/v3/pkg/tfshim/sdk-v2"
	"github.com/terraform-provider-openstack/terraform-provider-openstack/v3/openstack"

	"calculator-lab.invalid/toolchain/pulumi-resource-openstack/bridgeinfo"
)

// sdk-tokens.json is generated from the pip SDK by ../sdk_names.py.
//
//go:embed sdk-tokens.json
var sdkTokens []byte

// version is set with -ldflags -X; the engine matches it against the SDK's plugin version.
var version = "dev"

func main() {
	prov := tfbridge.ProviderInfo{
		P:       shimv2.NewProvider(openstack.Provider()),
		Name:    "openstack",
		Version: version,
		Resources: map[string]*tfbridge.ResourceInfo{
			// The SDK names this attribute StackOutputs, not outputs.
			"openstack_orchestration_stack_v1": {Fields: map[string]*tfbridge.SchemaInfo{
				"outputs": {Name: "StackOutputs"},
			}},
		},
	}
	bridgeinfo.Main(prov, sdkTokens, bridgeinfo.Overrides{
		Modules: map[string]string{"lb": "loadbalancer", "fw": "firewall", "db": "database"},
		// Names of the SDK that no normalisation reaches (some carry the SDK's own typos).
		Resources: map[string]string{
			"openstack_objectstorage_object_v1":  "openstack:objectstorage/containerObject:ContainerObject",
			"openstack_blockstorage_quotaset_v3": "openstack:blockstorage/quoteSetV3:QuoteSetV3",
		},
		DataSources: map[string]string{
			"openstack_dns_zone_v2":                            "openstack:dns/getDnsZone:getDnsZone",
			"openstack_sharedfilesystem_availability_zones_v2": "openstack:sharedfilesystem/getAvailbilityZones:getAvailbilityZones",
			"openstack_lb_flavor_v2":                           "openstack:loadbalancer/getLbFlavorDeprecated:getLbFlavorDeprecated",
		},
	})
}
