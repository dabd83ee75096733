// Package shim hands kreuzwerker's Terraform Docker provider to the Pulumi bridge. It must live
// under the provider's module path to reach its internal package; the build makes it a local
// module with that path.
package shim

import (
	"github.com/hashicorp/terraform-plugin-sdk/v2/helper/schema"
	"github.com/terraform-providers/terraform-provider-docker/internal/provider"
)

// NewProvider returns the upstream SDKv2 provider; version ends up in its user agent.
func NewProvider(version string) *schema.Provider {
	return provider.New(version)()
}
