//! The module's OCI image as `make oci` builds it (scripts/build-oci.sh): an OCI image layout
//! in a tarball holding the Wasm image "compat" variant that Istio and Envoy Gateway pull
//! (https://github.com/solo-io/wasm/blob/master/spec/spec-compat.md). The tarball is unpacked
//! with `tar`; every descriptor is checked against its blob; the layer is read the way the
//! pullers read it (gunzip, then the tar entry named plugin.wasm). The same module must give
//! the same bytes, whatever its file's name, mode or mtime.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, SystemTime};

use serde_json::Value;
use sha2::{Digest, Sha256};

const WASM: &str = "target/wasm32-wasip1/release/token_vault_proxy.wasm";
const MANIFEST_TYPE: &str = "application/vnd.oci.image.manifest.v1+json";
const CONFIG_TYPE: &str = "application/vnd.oci.image.config.v1+json";
const LAYER_TYPE: &str = "application/vnd.oci.image.layer.v1.tar+gzip";

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn digest(bytes: &[u8]) -> String {
    let hex: String = Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    format!("sha256:{hex}")
}

/// The release module, built first if it is missing. Read once: other builds may replace the
/// file while the tests run, so the builder is always given a copy of these bytes.
fn wasm() -> &'static [u8] {
    static BYTES: OnceLock<Vec<u8>> = OnceLock::new();
    BYTES.get_or_init(|| {
        let path = root().join(WASM);
        if !path.exists() {
            let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
            let status = Command::new(cargo)
                .current_dir(root())
                .args(["build", "--release", "--target", "wasm32-wasip1", "--lib"])
                .status()
                .expect("cargo build of the wasm module");
            assert!(status.success(), "cargo build of the wasm module failed");
        }
        let bytes = fs::read(&path).unwrap();
        assert_eq!(
            &bytes[..4],
            b"\0asm",
            "{} is not a wasm module",
            path.display()
        );
        bytes
    })
}

/// An empty directory of this test's own, removed when dropped.
struct Scratch(PathBuf);

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

impl std::ops::Deref for Scratch {
    type Target = Path;
    fn deref(&self) -> &Path {
        &self.0
    }
}

fn scratch(name: &str) -> Scratch {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("oci-image-{name}-{}", std::process::id()));
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir).unwrap();
    Scratch(dir)
}

/// Run the builder on `module` with `OCI_REF` (unset if `None`); its exit status and stderr.
fn run_builder(module: &Path, out: &Path, oci_ref: Option<&str>) -> (bool, String) {
    let mut cmd = Command::new("bash");
    cmd.arg(root().join("scripts/build-oci.sh"))
        .arg(module)
        .arg(out)
        .env_remove("OCI_REF");
    if let Some(r) = oci_ref {
        cmd.env("OCI_REF", r);
    }
    let output = cmd.output().expect("run scripts/build-oci.sh");
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// Build the image of `module` into `dir/image.oci.tar`; the tarball's bytes.
fn build(module: &Path, dir: &Path, oci_ref: Option<&str>) -> Vec<u8> {
    let out = dir.join("image.oci.tar");
    let (ok, stderr) = run_builder(module, &out, oci_ref);
    assert!(ok, "scripts/build-oci.sh failed: {stderr}");
    fs::read(out).unwrap()
}

/// Write the module's bytes to `dir/name` and build its image in `dir`.
fn build_copy(dir: &Path, name: &str, oci_ref: Option<&str>) -> (PathBuf, Vec<u8>) {
    let module = dir.join(name);
    fs::write(&module, wasm()).unwrap();
    let tarball = build(&module, dir, oci_ref);
    (module, tarball)
}

fn json(bytes: &[u8]) -> Value {
    serde_json::from_slice(bytes).unwrap()
}

/// One entry of a tar archive, with the header fields reproducibility depends on.
#[derive(Debug, PartialEq)]
struct Entry {
    name: String,
    kind: u8,
    mode: u64,
    uid: u64,
    gid: u64,
    mtime: u64,
    data: Vec<u8>,
}

fn octal(field: &[u8]) -> u64 {
    let text = std::str::from_utf8(field).unwrap();
    let digits = text.trim_matches(|c: char| c == '\0' || c == ' ');
    u64::from_str_radix(digits, 8).unwrap()
}

/// A ustar archive's entries (this builder writes ustar headers, no pax or GNU extensions).
fn tar_entries(archive: &[u8]) -> Vec<Entry> {
    assert_eq!(archive.len() % 512, 0, "tar archive of whole blocks");
    let mut entries = Vec::new();
    let mut at = 0;
    while at + 512 <= archive.len() && archive[at..at + 512].iter().any(|&b| b != 0) {
        let h = &archive[at..at + 512];
        assert_eq!(&h[257..263], b"ustar\0", "ustar header");
        let text = |f: &[u8]| String::from_utf8(f.split(|&b| b == 0).next().unwrap().to_vec());
        let (prefix, name) = (text(&h[345..500]).unwrap(), text(&h[..100]).unwrap());
        let size = usize::try_from(octal(&h[124..136])).unwrap();
        let data = archive[at + 512..at + 512 + size].to_vec();
        entries.push(Entry {
            name: if prefix.is_empty() {
                name
            } else {
                format!("{prefix}/{name}")
            },
            kind: h[156],
            mode: octal(&h[100..108]),
            uid: octal(&h[108..116]),
            gid: octal(&h[116..124]),
            mtime: octal(&h[136..148]),
            data,
        });
        at += 512 + size.div_ceil(512) * 512;
    }
    entries
}

fn gunzip(bytes: &[u8]) -> Vec<u8> {
    let mut child = Command::new("gzip")
        .arg("-dc")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("run gzip -dc");
    // Feed gzip from another thread: it writes as it reads, and a full output pipe would
    // block it (and us) if we wrote all input first.
    let mut stdin = child.stdin.take().unwrap();
    let input = bytes.to_vec();
    let writer = std::thread::spawn(move || stdin.write_all(&input));
    let out = child.wait_with_output().unwrap();
    writer.join().unwrap().unwrap();
    assert!(out.status.success(), "the layer is not gzip");
    out.stdout
}

/// The unpacked layout `dir`'s blob for `descriptor`, checked against its digest and size.
fn blob(dir: &Path, descriptor: &Value, media_type: &str) -> Vec<u8> {
    assert_eq!(descriptor["mediaType"], media_type, "{descriptor}");
    let named = descriptor["digest"].as_str().unwrap();
    let hex = named.strip_prefix("sha256:").expect("a sha256 digest");
    let bytes = fs::read(dir.join("blobs/sha256").join(hex)).unwrap();
    assert_eq!(digest(&bytes), named, "blob digest");
    assert_eq!(
        descriptor["size"].as_u64(),
        Some(bytes.len() as u64),
        "{descriptor}"
    );
    bytes
}

#[test]
fn layout_holds_a_compat_wasm_image_of_the_module() {
    let dir = scratch("layout");
    let (_, tarball) = build_copy(&dir, "module.wasm", None);

    // The layout tarball: sorted, zero-time, root-owned entries.
    let names: Vec<String> = tar_entries(&tarball).into_iter().map(|e| e.name).collect();
    let mut sorted = names.clone();
    sorted.sort();
    assert_eq!(names, sorted);
    assert!(tar_entries(&tarball)
        .iter()
        .all(|e| (e.uid, e.gid, e.mtime) == (0, 0, 0)));

    let layout = dir.join("layout");
    fs::create_dir_all(&layout).unwrap();
    let status = Command::new("tar")
        .arg("-xf")
        .arg(dir.join("image.oci.tar"))
        .arg("-C")
        .arg(&layout)
        .status()
        .unwrap();
    assert!(status.success(), "tar -xf of the image tarball");

    let oci_layout = json(&fs::read(layout.join("oci-layout")).unwrap());
    assert_eq!(oci_layout["imageLayoutVersion"], "1.0.0");

    // index.json: one manifest, named by the crate's version.
    let index = json(&fs::read(layout.join("index.json")).unwrap());
    assert_eq!(index["schemaVersion"], 2);
    assert_eq!(
        index["mediaType"],
        "application/vnd.oci.image.index.v1+json"
    );
    let manifests = index["manifests"].as_array().unwrap();
    assert_eq!(manifests.len(), 1);
    assert_eq!(
        manifests[0]["annotations"]["org.opencontainers.image.ref.name"],
        format!("token-vault-proxy:{}", env!("CARGO_PKG_VERSION"))
    );
    let manifest = json(&blob(&layout, &manifests[0], MANIFEST_TYPE));

    // The manifest: an OCI image manifest of the compat variant.
    assert_eq!(manifest["schemaVersion"], 2);
    assert_eq!(manifest["mediaType"], MANIFEST_TYPE);
    assert_eq!(
        manifest["annotations"]["module.wasm.image/variant"],
        "compat"
    );
    assert_eq!(
        manifest["annotations"]["org.opencontainers.image.version"],
        env!("CARGO_PKG_VERSION")
    );
    let config = json(&blob(&layout, &manifest["config"], CONFIG_TYPE));
    let layers = manifest["layers"].as_array().unwrap();
    assert_eq!(layers.len(), 1, "exactly one layer");
    let layer_gz = blob(&layout, &layers[0], LAYER_TYPE);

    // Nothing else in the layout.
    let mut stored: Vec<String> = fs::read_dir(layout.join("blobs/sha256"))
        .unwrap()
        .map(|e| format!("sha256:{}", e.unwrap().file_name().to_string_lossy()))
        .collect();
    stored.sort();
    let mut described = vec![
        manifests[0]["digest"].as_str().unwrap().to_owned(),
        manifest["config"]["digest"].as_str().unwrap().to_owned(),
        layers[0]["digest"].as_str().unwrap().to_owned(),
    ];
    described.sort();
    assert_eq!(stored, described);

    // The layer: gzip without name or time, around a tar of plugin.wasm alone, the module.
    assert_eq!(&layer_gz[..3], [0x1f, 0x8b, 8], "gzip, deflate");
    assert_eq!(layer_gz[3] & 0x08, 0, "no file name in the gzip header");
    assert_eq!(&layer_gz[4..8], [0, 0, 0, 0], "no mtime in the gzip header");
    let layer_tar = gunzip(&layer_gz);
    let entries = tar_entries(&layer_tar);
    assert_eq!(
        entries.len(),
        1,
        "one entry: {:?}",
        entries.first().map(|e| &e.name)
    );
    let plugin = &entries[0];
    assert_eq!(plugin.name, "plugin.wasm");
    assert_eq!(plugin.kind, b'0', "a regular file");
    assert_eq!(
        (plugin.mode, plugin.uid, plugin.gid, plugin.mtime),
        (0o644, 0, 0, 0)
    );
    assert!(plugin.data == wasm(), "plugin.wasm is not the built module");

    // The config: the layer's diff_id, the platform `--platform wasi/wasm` gives, no time.
    assert_eq!(config["rootfs"]["type"], "layers");
    assert_eq!(
        config["rootfs"]["diff_ids"],
        serde_json::json!([digest(&layer_tar)])
    );
    assert_eq!(config["os"], "wasi");
    assert_eq!(config["architecture"], "wasm");
    assert!(
        config.get("created").is_none(),
        "a build time breaks reproducibility"
    );
}

#[test]
fn same_module_gives_the_same_image() {
    let dir = scratch("reproducible");
    let (first_dir, second_dir) = (dir.join("first"), dir.join("second"));
    fs::create_dir_all(&first_dir).unwrap();
    fs::create_dir_all(&second_dir).unwrap();
    let (_, first) = build_copy(&first_dir, "module.wasm", None);

    // Another file name, mode and mtime for the same bytes, built later in another directory.
    let module = second_dir.join("token_vault_proxy.wasm");
    fs::write(&module, wasm()).unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        fs::set_permissions(&module, fs::Permissions::from_mode(0o755)).unwrap();
    }
    let file = fs::File::options().write(true).open(&module).unwrap();
    file.set_modified(SystemTime::UNIX_EPOCH + Duration::from_secs(1_234_567_890))
        .unwrap();
    drop(file);
    let second = build(&module, &second_dir, None);

    assert!(
        first == second,
        "two builds of the same module differ: {} vs {}",
        digest(&first),
        digest(&second)
    );
}

#[test]
fn oci_ref_names_the_image_and_must_be_a_reference() {
    let dir = scratch("ref");
    let (module, tarball) = build_copy(&dir, "module.wasm", Some("registry.example/tvp:1.2.3"));
    let index = tar_entries(&tarball)
        .into_iter()
        .find(|e| e.name == "index.json")
        .expect("index.json in the tarball");
    assert_eq!(
        json(&index.data)["manifests"][0]["annotations"]["org.opencontainers.image.ref.name"],
        "registry.example/tvp:1.2.3"
    );

    let out = dir.join("bad.oci.tar");
    let (ok, stderr) = run_builder(&module, &out, Some("tvp\",\"x\":\"1"));
    assert!(!ok, "a reference that is not one must be refused");
    assert!(stderr.contains("not an image reference"), "{stderr}");
    assert!(!out.exists());
}
