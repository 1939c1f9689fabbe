#!/usr/bin/env bash
# Build the module's OCI image without Docker, as an OCI image layout packed in a tarball.
#
#   scripts/build-oci.sh [WASM] [OUT]      (make oci)
#     WASM     default target/wasm32-wasip1/release/token_vault_proxy.wasm
#     OUT      default target/oci/token-vault-proxy.oci.tar
#     OCI_REF  env, default token-vault-proxy:<version in Cargo.toml>
#
# The image is the Wasm image "compat" variant that Istio and Envoy Gateway pull
# (https://github.com/solo-io/wasm/blob/master/spec/spec-compat.md), the same image as the
# Dockerfile: an ordinary image config and exactly one layer, an
# application/vnd.oci.image.layer.v1.tar+gzip tar holding one file, plugin.wasm, at its root.
# The manifest carries the annotation module.wasm.image/variant=compat that the spec asks of
# images with the OCI layer media type. The pullers take the image's last layer and the entry
# named plugin.wasm in it; they ignore the platform. The config says os "wasi", architecture
# "wasm", which is what `docker buildx build --platform wasi/wasm` writes for the Dockerfile.
#
# Reproducible: the same wasm gives the same bytes, hence the same digests. Tar entries are
# sorted, with mtime 0, uid/gid 0, no user/group names, fixed modes, ustar headers (no pax
# times); gzip writes no name or timestamp; the config has no `created` time; every JSON
# document is written byte for byte below. (Digests hold for one gzip; another gzip version may
# compress differently. A `docker build` of the Dockerfile has the same content and layout, not
# the same digests: Docker's layer tar carries the file's times.)
#
# The tarball is an OCI layout (oci-layout, index.json, blobs/sha256/...): push it with
#   skopeo copy oci-archive:target/oci/token-vault-proxy.oci.tar:token-vault-proxy:0.1.0 \
#     docker://REGISTRY/token-vault-proxy:0.1.0
# index.json names the manifest with org.opencontainers.image.ref.name = OCI_REF.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
wasm=${1:-$root/target/wasm32-wasip1/release/token_vault_proxy.wasm}
out=${2:-$root/target/oci/token-vault-proxy.oci.tar}
version=$(sed -n 's/^version = "\(.*\)"$/\1/p' "$root/Cargo.toml" | head -n 1)
ref=${OCI_REF:-token-vault-proxy:$version}

# The reference goes into JSON unescaped: allow only the characters of an image reference.
if ! [[ $ref =~ ^[A-Za-z0-9][A-Za-z0-9._:/@+-]*$ ]]; then
  echo "build-oci: OCI_REF '$ref' is not an image reference" >&2
  exit 1
fi
if [ ! -f "$wasm" ]; then
  echo "build-oci: $wasm is missing: run \`make wasm\`" >&2
  exit 1
fi

# GNU tar is needed for --sort/--mtime/--owner (gtar on macOS); sha256sum is GNU coreutils.
tar=tar
if ! tar --version 2>/dev/null | grep -q 'GNU tar'; then
  tar=gtar
fi
if ! "$tar" --version 2>/dev/null | grep -q 'GNU tar'; then
  echo "build-oci: GNU tar is required" >&2
  exit 1
fi

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# Deterministic tar of the named entries under directory $1 into $2. --sort=name orders what
# tar finds in directories; the names given are sorted here, bytewise.
det_tar() {
  local dir=$1 dest=$2
  shift 2
  printf '%s\n' "$@" | LC_ALL=C sort |
    "$tar" -C "$dir" --format=ustar --sort=name --mtime=@0 --owner=0 --group=0 --numeric-owner \
      --mode='u=rwX,go=rX' -cf "$dest" --verbatim-files-from -T -
}
sha256() { sha256sum "$1" | cut -d ' ' -f 1; }
size() { wc -c <"$1" | tr -d ' '; }

layout=$work/layout
blobs=$layout/blobs/sha256
mkdir -p "$work/rootfs" "$blobs"

# Store a file as a blob; print its descriptor fields "digest size".
add_blob() {
  local digest
  digest=$(sha256 "$1")
  cp "$1" "$blobs/$digest"
  echo "sha256:$digest $(size "$1")"
}

# The layer: plugin.wasm at the root, as `COPY ... ./plugin.wasm` makes it.
cp "$wasm" "$work/rootfs/plugin.wasm"
chmod 0644 "$work/rootfs/plugin.wasm" # the built wasm is executable; the mode must not depend on it
det_tar "$work/rootfs" "$work/layer.tar" plugin.wasm
diff_id=sha256:$(sha256 "$work/layer.tar")
gzip -n -9 -c "$work/layer.tar" >"$work/layer.tar.gz"
read -r layer_digest layer_size < <(add_blob "$work/layer.tar.gz")

printf '%s' \
  '{"architecture":"wasm","os":"wasi","config":{},' \
  '"rootfs":{"type":"layers","diff_ids":["'"$diff_id"'"]},' \
  '"history":[{"created_by":"COPY target/wasm32-wasip1/release/token_vault_proxy.wasm ./plugin.wasm"}]}' \
  >"$work/config.json"
read -r config_digest config_size < <(add_blob "$work/config.json")

printf '%s' \
  '{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json",' \
  '"config":{"mediaType":"application/vnd.oci.image.config.v1+json",' \
  '"digest":"'"$config_digest"'","size":'"$config_size"'},' \
  '"layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar+gzip",' \
  '"digest":"'"$layer_digest"'","size":'"$layer_size"'}],' \
  '"annotations":{"module.wasm.image/variant":"compat",' \
  '"org.opencontainers.image.title":"token-vault-proxy",' \
  '"org.opencontainers.image.version":"'"$version"'"}}' \
  >"$work/manifest.json"
read -r manifest_digest manifest_size < <(add_blob "$work/manifest.json")

printf '%s' '{"imageLayoutVersion":"1.0.0"}' >"$layout/oci-layout"
printf '%s' \
  '{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json",' \
  '"manifests":[{"mediaType":"application/vnd.oci.image.manifest.v1+json",' \
  '"digest":"'"$manifest_digest"'","size":'"$manifest_size"',' \
  '"annotations":{"org.opencontainers.image.ref.name":"'"$ref"'"}}]}' \
  >"$layout/index.json"

mkdir -p "$(dirname "$out")"
det_tar "$layout" "$work/image.tar" oci-layout index.json blobs
mv "$work/image.tar" "$out"

echo "built $out ($(size "$out") bytes): $ref"
echo "  manifest $manifest_digest (WasmPlugin sha256: ${manifest_digest#sha256:})"
echo "  layer    $layer_digest ($layer_size bytes, plugin.wasm $(size "$wasm") bytes)"
