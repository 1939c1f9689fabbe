# The module as a Wasm OCI image, "compat" variant: one layer holding plugin.wasm at its root
# (https://github.com/solo-io/wasm/blob/master/spec/spec-compat.md), pulled by Istio and Envoy
# Gateway from oci://REGISTRY/token-vault-proxy:TAG. Keep exactly one COPY: one layer.
#
#   make wasm
#   docker buildx build --platform wasi/wasm -t REGISTRY/token-vault-proxy:0.1.0 --push .
#   (or: buildah build --platform wasi/wasm -t REGISTRY/token-vault-proxy:0.1.0 . && buildah push ...)
#
# `make oci` builds the same image without Docker, reproducibly, as an OCI layout tarball
# (target/oci/token-vault-proxy.oci.tar; see scripts/build-oci.sh), pushed with skopeo copy.
FROM scratch
COPY target/wasm32-wasip1/release/token_vault_proxy.wasm ./plugin.wasm
