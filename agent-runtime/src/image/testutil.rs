//! Builders of layer tars and image archives for the tests, including hostile entries
//! the `tar` crate would refuse to write through its checked API.

use std::io::Write;

use tar::{EntryType, Header};

use super::digest::Digest;

/// A tar archive built in memory, entry by entry.
pub struct TarBuilder {
    /// The archive being written.
    builder: tar::Builder<Vec<u8>>,
}

impl Default for TarBuilder {
    fn default() -> Self {
        Self::new()
    }
}

impl TarBuilder {
    /// An empty archive.
    pub fn new() -> Self {
        TarBuilder {
            builder: tar::Builder::new(Vec::new()),
        }
    }

    /// Appends an entry with the raw `path` and `link` bytes (no checks at all).
    #[allow(clippy::too_many_arguments)]
    pub fn raw(
        &mut self,
        kind: EntryType,
        path: &str,
        link: Option<&str>,
        mode: u32,
        uid: u64,
        gid: u64,
        data: &[u8],
    ) -> &mut Self {
        let mut h = Header::new_gnu();
        h.set_entry_type(kind);
        h.set_mode(mode);
        h.set_uid(uid);
        h.set_gid(gid);
        h.set_mtime(1_700_000_000);
        h.set_size(data.len() as u64);
        {
            let gnu = h.as_gnu_mut().unwrap();
            gnu.name.fill(0);
            gnu.name[..path.len()].copy_from_slice(path.as_bytes());
            if let Some(link) = link {
                gnu.linkname.fill(0);
                gnu.linkname[..link.len()].copy_from_slice(link.as_bytes());
            }
        }
        if matches!(kind, EntryType::Char | EntryType::Block) {
            h.set_device_major(1).unwrap();
            h.set_device_minor(3).unwrap();
        }
        h.set_cksum();
        self.builder.append(&h, data).unwrap();
        self
    }

    /// A regular file, mode 0644, owned by root.
    pub fn file(&mut self, path: &str, data: &[u8]) -> &mut Self {
        self.raw(EntryType::Regular, path, None, 0o644, 0, 0, data)
    }

    /// A directory, mode 0755, owned by root.
    pub fn dir(&mut self, path: &str) -> &mut Self {
        self.raw(EntryType::Directory, path, None, 0o755, 0, 0, b"")
    }

    /// A symlink.
    pub fn symlink(&mut self, path: &str, target: &str) -> &mut Self {
        self.raw(EntryType::Symlink, path, Some(target), 0o777, 0, 0, b"")
    }

    /// A hard link to an earlier entry.
    pub fn hardlink(&mut self, path: &str, target: &str) -> &mut Self {
        self.raw(EntryType::Link, path, Some(target), 0o644, 0, 0, b"")
    }

    /// A PAX extended header applying to the next entry.
    pub fn pax(&mut self, records: &[(&str, &[u8])]) -> &mut Self {
        let mut data = Vec::new();
        for (key, value) in records {
            let body_len = key.len() + value.len() + 3; // space, '=', newline
            let mut len = body_len + 1;
            while len.to_string().len() + body_len != len {
                len = len.to_string().len() + body_len;
            }
            data.extend_from_slice(format!("{len} {key}=").as_bytes());
            data.extend_from_slice(value);
            data.push(b'\n');
        }
        self.raw(EntryType::XHeader, "PaxHeader", None, 0o644, 0, 0, &data)
    }

    /// The finished archive.
    pub fn finish(&mut self) -> Vec<u8> {
        let builder = std::mem::replace(&mut self.builder, tar::Builder::new(Vec::new()));
        builder.into_inner().unwrap()
    }
}

/// `bytes` gzip-compressed.
pub fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(bytes).unwrap();
    gz.finish().unwrap()
}

/// `bytes` zstd-compressed.
pub fn zstd(bytes: &[u8]) -> Vec<u8> {
    zstd::encode_all(bytes, 1).unwrap()
}

/// A small layer: `bin/hello` (a script) and `etc/motd`.
pub fn sample_layer(tag: &str) -> Vec<u8> {
    TarBuilder::new()
        .dir("bin/")
        .raw(
            EntryType::Regular,
            "bin/hello",
            None,
            0o755,
            0,
            0,
            b"#!/bin/sh\necho hi\n",
        )
        .dir("etc/")
        .file("etc/motd", tag.as_bytes())
        .finish()
}

/// The image config JSON for these layers, with a command.
pub fn sample_config(layers: &[&[u8]]) -> Vec<u8> {
    let diff_ids: Vec<String> = layers.iter().map(|l| Digest::of(l).to_string()).collect();
    serde_json::to_vec(&serde_json::json!({
        "architecture": "amd64",
        "os": "linux",
        "created": "2024-05-01T10:00:00Z",
        "config": {"Cmd": ["/bin/hello"], "Env": ["A=1"], "WorkingDir": "/srv"},
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
    }))
    .unwrap()
}

/// A `docker save` archive of one image with these layers and repo tags.
pub fn docker_save(layers: &[&[u8]], repo_tags: &[&str]) -> Vec<u8> {
    let config = sample_config(layers);
    let config_name = format!("{}.json", Digest::of(&config).hex());
    let mut tar = TarBuilder::new();
    tar.file(&config_name, &config);
    let mut layer_names = Vec::new();
    for (i, layer) in layers.iter().enumerate() {
        let dir = format!("{i:064x}");
        tar.dir(&format!("{dir}/"));
        tar.file(&format!("{dir}/layer.tar"), layer);
        layer_names.push(format!("{dir}/layer.tar"));
    }
    let manifest = serde_json::json!([{
        "Config": config_name,
        "RepoTags": if repo_tags.is_empty() { serde_json::Value::Null } else { serde_json::json!(repo_tags) },
        "Layers": layer_names,
    }]);
    tar.file("manifest.json", &serde_json::to_vec(&manifest).unwrap());
    tar.file("repositories", b"{}");
    tar.finish()
}

/// The files of an OCI image layout holding one image with these (gzip) layers,
/// named by a `ref.name` annotation when `ref_name` is given.
pub fn oci_layout(layers: &[&[u8]], ref_name: Option<&str>) -> Vec<(String, Vec<u8>)> {
    let config = sample_config(layers);
    let mut files = Vec::new();
    let mut layer_descs = Vec::new();
    for layer in layers {
        let gz = gzip(layer);
        layer_descs.push(serde_json::json!({
            "mediaType": super::oci::MEDIA_LAYER_GZIP,
            "digest": Digest::of(&gz).to_string(),
            "size": gz.len(),
        }));
        files.push((format!("blobs/sha256/{}", Digest::of(&gz).hex()), gz));
    }
    let manifest = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": super::oci::MEDIA_MANIFEST,
        "config": {
            "mediaType": super::oci::MEDIA_CONFIG,
            "digest": Digest::of(&config).to_string(),
            "size": config.len(),
        },
        "layers": layer_descs,
    }))
    .unwrap();
    let mut annotations = serde_json::Map::new();
    if let Some(name) = ref_name {
        annotations.insert(super::oci::ANNOTATION_REF_NAME.into(), name.into());
    }
    let index = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "manifests": [{
            "mediaType": super::oci::MEDIA_MANIFEST,
            "digest": Digest::of(&manifest).to_string(),
            "size": manifest.len(),
            "annotations": annotations,
        }],
    }))
    .unwrap();
    files.push((
        format!("blobs/sha256/{}", Digest::of(&config).hex()),
        config,
    ));
    files.push((
        format!("blobs/sha256/{}", Digest::of(&manifest).hex()),
        manifest,
    ));
    files.push(("index.json".into(), index));
    files.push((
        "oci-layout".into(),
        br#"{"imageLayoutVersion":"1.0.0"}"#.to_vec(),
    ));
    files
}

/// These files as a tar archive.
pub fn tar_of(files: &[(String, Vec<u8>)]) -> Vec<u8> {
    let mut tar = TarBuilder::new();
    for (path, data) in files {
        tar.file(path, data);
    }
    tar.finish()
}

/// Writes these files under `dir`.
pub fn write_tree(dir: &std::path::Path, files: &[(String, Vec<u8>)]) {
    for (path, data) in files {
        let p = dir.join(path);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, data).unwrap();
    }
}
