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

# Every binary is linked without its symbol table and DWARF (-s -w): the linker writes a third
# less and runs faster, and nothing here debugs these binaries (r2; r1 kept them).
STRIP_LDFLAGS="-s -w"

# The compiler collects garbage a quarter as often (GOGC=400: more memory, less time spent
# collecting) and writes no DWARF, which -w drops at link time anyway (r3). Measured cold on 2
# idle cores with the modules downloaded: CLI 240 -> 196 s, the Docker stack's three targets
# 382 -> 328 s wall, 718 -> 624 CPU-s. The binaries are the same size but not byte-identical
# (another build ID, other offsets), hence the new recipe.
COMPILE_GOGC=400
# ...and inlines nothing (-l, r4). Inlining is the compiler's costliest optional work on code this
# size: the CLI alone, back to back on 2 idle cores, 183 -> 131 s wall, 355 -> 252 CPU-s, and a
# binary 13 % smaller; the Docker stack's three targets 328 -> 237 s. The price is paid at run
# time, measured: `pulumi version` 0.14 -> 0.20 s, a warm `make up` of `dev` 5.5 -> 6.1 s
# (README.md, "Cost"). -N (no optimisation at all) saved nothing more (129 s) and doubled the
# start-up, so it is not used.
COMPILE_GCFLAGS="all=-dwarf=false -l"
# Every binary is built with the CLI's tags (the providers too, since r4): with cgo off, osusergo
# changes nothing, and grpcnotrace drops gRPC's debug tracing pages, which nothing here serves. The
# same tags let the providers reuse about 50 more packages the CLI compiled.
BUILD_TAGS=osusergo,grpcnotrace

# The CLI's module, and what the pulumi target's stamp records (a changed pin or recipe rebuilds).
CLI_MOD=github.com/pulumi/pulumi/pkg/v3
PULUMI_WANT="$CLI_MOD@v$PULUMI_VERSION r$TOOLCHAIN_RECIPE"

TOOLCHAIN_CACHE=${CALCLAB_CACHE:-$HOME/.cache/calculator-lab}/pulumi-toolchain
TOOLCHAIN_KEY="pulumi-${PULUMI_VERSION}_openstack-${OPENSTACK_VERSION:-none}_docker-${DOCKER_VERSION:-none}_go-${GO_VERSION}_r${TOOLCHAIN_RECIPE}"
TOOLCHAIN_PREFIX="$TOOLCHAIN_CACHE/$TOOLCHAIN_KEY"
TOOLCHAIN_BIN="$TOOLCHAIN_PREFIX/bin"
TOOLCHAIN_PULUMI_HOME="$TOOLCHAIN_PREFIX/pulumi-home"
