#!/bin/sh
# Cargo runs every rustc through this script (.cargo/config.toml, `build.rustc-wrapper`). It adds
# one thing: optimized builds (`cargo build --release`, `cargo run --release`) are guided by the
# profile in tools/pgo/, recorded by tools/pgo-build.sh under the load bench's workloads. The
# profile cuts about 17% of the instructions per proxied request (docs/performance.md, "The
# shipped profile"); without it the build is the plain release build, which works the same.
#
# The profile is used only when all of these hold, else rustc runs exactly as cargo asked:
# - the crate is compiled with `-C opt-level=3` (the release profile; tests and debug builds
#   are not);
# - the command line names no profile of its own (tools/pgo-build.sh's own builds, or a user's
#   RUSTFLAGS);
# - this rustc is the one that recorded the profile (`rustc -vV`, stored beside it), and the
#   target is its host: LLVM reads only the profile format of its own version, and a profile
#   of another target's code would not match.
# RAMPART_PGO, set for rustc, says what was decided (`rampart --version` shows it).
set -eu

rustc=$1
shift
here=$(cd "$(dirname "$0")" && pwd)
profile="$here/pgo/rampart.profdata"
recorded="$here/pgo/rustc-vV.txt"

decision=""
optimized=no
target=""
previous=""
for arg in "$@"; do
    case "$arg" in
    opt-level=3 | -Copt-level=3) optimized=yes ;;
    *profile-generate*) decision="instrumented to record a profile (tools/pgo-build.sh's training build)" ;;
    *profile-use* | *profile-sample-use*) decision="profile-guided by the profile its RUSTFLAGS named" ;;
    esac
    if [ "$previous" = "--target" ]; then
        target=$arg
    fi
    case "$arg" in --target=*) target=${arg#--target=} ;; esac
    previous=$arg
done

if [ "$optimized" = no ]; then
    exec "$rustc" "$@"
fi
if [ -z "$decision" ]; then
    if [ ! -f "$profile" ] || [ ! -f "$recorded" ]; then
        decision="not profile-guided: tools/pgo holds no profile"
    elif ! "$rustc" -vV | cmp -s - "$recorded"; then
        decision="not profile-guided: tools/pgo/rampart.profdata was recorded by rustc $(sed -n 's/^release: //p' "$recorded"), not this one"
    elif [ -n "$target" ] && [ "$target" != "$(sed -n 's/^host: //p' "$recorded")" ]; then
        decision="not profile-guided: tools/pgo/rampart.profdata was recorded for another target"
    fi
fi
if [ -n "$decision" ]; then
    export RAMPART_PGO="$decision"
    exec "$rustc" "$@"
fi
export RAMPART_PGO="profile-guided by tools/pgo/rampart.profdata (trained at $(cat "$here/pgo/trained-at.txt" 2>/dev/null || echo "an unknown commit"))"
exec "$rustc" "$@" -Cprofile-use="$profile"
