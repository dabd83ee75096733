// Package shim hands kreuzwerker's Terraform Docker provider to the Pulumi bridge. It must live
// under the provider's module path to reach its internal package; the build makes it a local
// module with that path.
package shim

import (
	"context"
	"strings"

	"github.com/hashicorp/terraform-plugin-sdk/v2/diag"
	"github.com/hashicorp/terraform-plugin-sdk/v2/helper/schema"
	"github.com/terraform-providers/terraform-provider-docker/internal/provider"
)

// NewProvider returns the upstream SDKv2 provider; version ends up in its user agent.
func NewProvider(version string) *schema.Provider {
	p := provider.New(version)()
	keepCapabilitySpelling(p.ResourcesMap["docker_container"])
	return p
}

// keepCapabilitySpelling wraps the container's read. Docker stores added and dropped
// capabilities as CAP_NET_ADMIN whatever the request said, and the upstream read copies that
// back, so a refresh turns "NET_ADMIN" into "CAP_NET_ADMIN" and, capabilities forcing a new
// container, the next update replaces every container. The wrapper keeps the spelling the state
// already had when both name the same capability.
func keepCapabilitySpelling(r *schema.Resource) {
	if r == nil || r.ReadContext == nil {
		return
	}
	read := r.ReadContext
	r.ReadContext = func(ctx context.Context, d *schema.ResourceData, meta interface{}) diag.Diagnostics {
		before := capabilitySets(d)
		diags := read(ctx, d, meta)
		if diags.HasError() || before == nil {
			return diags
		}
		after := capabilitySets(d)
		if after == nil {
			return diags
		}
		changed := false
		for _, key := range []string{"add", "drop"} {
			spelled := map[string]string{}
			for _, v := range before[key] {
				spelled[canonical(v)] = v
			}
			for i, v := range after[key] {
				if prior, ok := spelled[canonical(v)]; ok && prior != v {
					after[key][i] = prior
					changed = true
				}
			}
		}
		if changed {
			if err := d.Set("capabilities", []interface{}{map[string]interface{}{
				"add": after["add"], "drop": after["drop"],
			}}); err != nil {
				diags = append(diags, diag.FromErr(err)...)
			}
		}
		return diags
	}
}

func canonical(capability string) string {
	return strings.TrimPrefix(strings.ToUpper(capability), "CAP_")
}

// capabilitySets reads the single capabilities block; nil when it is absent.
func capabilitySets(d *schema.ResourceData) map[string][]string {
	set, ok := d.Get("capabilities").(*schema.Set)
	if !ok || set.Len() == 0 {
		return nil
	}
	block, ok := set.List()[0].(map[string]interface{})
	if !ok {
		return nil
	}
	out := map[string][]string{}
	for _, key := range []string{"add", "drop"} {
		if s, ok := block[key].(*schema.Set); ok {
			for _, v := range s.List() {
				out[key] = append(out[key], v.(string))
			}
		}
	}
	return out
}
