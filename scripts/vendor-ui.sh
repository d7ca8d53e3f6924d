#!/usr/bin/env bash
# Refreshes the dashboard's vendored front-end assets from the npm registry (run by hand when
# upgrading; the files are committed so the API serves them with no network and no build step).
set -euo pipefail
cd "$(dirname "$0")/.."
UPLOT_VERSION=${UPLOT_VERSION:-1.6.32}
out=api/k8sim_api/ui/vendor/uplot
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
( cd "$tmp" && npm pack --silent "uplot@$UPLOT_VERSION" >/dev/null && tar xzf "uplot-$UPLOT_VERSION.tgz" )
mkdir -p "$out"
cp "$tmp/package/dist/uPlot.iife.min.js" "$tmp/package/dist/uPlot.min.css" "$tmp/package/LICENSE" "$out/"
echo "uplot $UPLOT_VERSION (npm) $(sha256sum "$tmp/uplot-$UPLOT_VERSION.tgz" | cut -d' ' -f1)" > "$out/VERSION"
echo "[k8sim] vendored uplot $UPLOT_VERSION into $out" >&2
