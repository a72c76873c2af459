#!/usr/bin/env bash
# check-imports.sh enforces the import directions of STYLE.md §1:
#
#   wsproto, registry, upstream  import no package of ours
#   engine                       may import wsproto, registry, upstream
#   cmd                          may import engine, wsproto, registry, upstream, bench
#   bench                        may import wsproto
#
# so nothing but cmd imports engine, and nothing imports cmd. Test files (including those
# behind the e2e tag) obey the same table. A package outside these six trees is itself an
# error: STYLE §1 has no util/common package, and a new layer is a design change.
#
# Prints every offending edge and exits 1; exits 0 when the graph is clean.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

mod=$(go list -m)

# layer prints the top-level directory of one of our import paths ("" for the module root).
layer() {
	local p=${1#"$mod"}
	p=${p#/}
	printf '%s\n' "${p%%/*}"
}

# allowed reports whether layer $1 may import layer $2.
allowed() {
	case "$1" in
	wsproto | registry | upstream) return 1 ;;
	engine) [[ $2 == wsproto || $2 == registry || $2 == upstream ]] ;;
	cmd) [[ $2 == engine || $2 == wsproto || $2 == registry || $2 == upstream || $2 == bench ]] ;;
	bench) [[ $2 == wsproto ]] ;;
	*) return 1 ;;
	esac
}

graph=$(go list -tags e2e -f '{{.ImportPath}} {{join .Imports " "}} {{join .TestImports " "}} {{join .XTestImports " "}}' ./...)

fail=0
while read -r pkg imports; do
	[[ -n $pkg ]] || continue
	from=$(layer "$pkg")
	case "$from" in
	wsproto | registry | upstream | engine | cmd | bench) ;;
	*)
		echo "check-imports: package $pkg is not in a layer of STYLE §1 (wsproto, registry, upstream, engine, cmd, bench)"
		fail=1
		continue
		;;
	esac
	for imp in $imports; do
		[[ $imp == "$mod" || $imp == "$mod"/* ]] || continue
		to=$(layer "$imp")
		[[ $to == "$from" ]] && continue
		if ! allowed "$from" "$to"; then
			echo "check-imports: forbidden import $pkg -> $imp ($from may not import $to; see STYLE §1)"
			fail=1
		fi
	done
done <<<"$graph"

if ((fail)); then
	exit 1
fi
echo "check-imports: import directions follow STYLE §1"
