# Shared by ./build and ./env: reads the pinned versions and derives the cache layout from them,
# so both scripts agree on where a given set of versions lives.
# shellcheck shell=bash
# shellcheck disable=SC2034 # the variables are for the scripts that source this file

TOOLCHAIN_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=versions.env
. "$TOOLCHAIN_DIR/versions.env"

# Bump when the way binaries are built changes (flags, wrapper modules) without a version
# change, so stale binaries are not reused.
TOOLCHAIN_RECIPE=4

# How the binaries are built, and why: each flag's measured effect is in README.md ("Cost":
# what was cut, and why), with the recipe that brought it in.
# No symbol table and no DWARF: nothing here debugs these binaries, and the linker writes less.
STRIP_LDFLAGS="-s -w"
# The compiler collects garbage a quarter as often (more memory, less time) and writes no DWARF
# (which -w drops at link time anyway).
COMPILE_GOGC=400
# ...and inlines nothing: the compiler's costliest optional work on code this size; the price is
# a slightly slower start of each binary.
COMPILE_GCFLAGS="all=-dwarf=false -l"
# The CLI's tags on every binary: with cgo off osusergo changes nothing, grpcnotrace drops gRPC's
# debug pages nothing here serves, and the providers then reuse packages the CLI compiled.
BUILD_TAGS=osusergo,grpcnotrace

# The CLI's module, and what the pulumi target's stamp records (a changed pin or recipe rebuilds).
CLI_MOD=github.com/pulumi/pulumi/pkg/v3
PULUMI_WANT="$CLI_MOD@v$PULUMI_VERSION r$TOOLCHAIN_RECIPE"

TOOLCHAIN_CACHE=${CALCLAB_CACHE:-$HOME/.cache/calculator-lab}/pulumi-toolchain
TOOLCHAIN_KEY="pulumi-${PULUMI_VERSION}_openstack-${OPENSTACK_VERSION:-none}_docker-${DOCKER_VERSION:-none}_go-${GO_VERSION}_r${TOOLCHAIN_RECIPE}"
TOOLCHAIN_PREFIX="$TOOLCHAIN_CACHE/$TOOLCHAIN_KEY"
TOOLCHAIN_BIN="$TOOLCHAIN_PREFIX/bin"
TOOLCHAIN_PULUMI_HOME="$TOOLCHAIN_PREFIX/pulumi-home"
