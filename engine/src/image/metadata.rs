//! `metadata.yaml` of an image: architecture, dates, properties and templates.

use std::collections::BTreeMap;
use std::io::Read;

use serde::{Deserialize, Serialize};

use super::archive::decompress;
use super::Error;

/// The largest metadata.yaml accepted.
const MAX_METADATA: u64 = 1 << 20;

/// One template of `templates:` (LXD `api.ImageMetadataTemplate`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct Template {
    /// When to render: `create`, `copy`, `start`, `rename`.
    #[serde(default)]
    pub when: Vec<String>,
    /// Only render when the target file does not exist yet.
    #[serde(default)]
    pub create_only: bool,
    /// The template file under `templates/`.
    #[serde(default)]
    pub template: String,
    /// Extra properties passed to the template.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub properties: BTreeMap<String, String>,
}

/// The content of `metadata.yaml` (LXD `api.ImageMetadata`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct ImageMetadata {
    /// Architecture name, normalised to the kernel's (`x86_64`, `aarch64`, ...).
    pub architecture: String,
    /// Unix seconds.
    #[serde(default)]
    pub creation_date: i64,
    /// Unix seconds; 0 when the image never expires.
    #[serde(default)]
    pub expiry_date: i64,
    /// Free-form properties (`os`, `release`, `description`, ...).
    #[serde(default)]
    pub properties: BTreeMap<String, String>,
    /// Target path in the container → template.
    #[serde(default)]
    pub templates: BTreeMap<String, Template>,
}

/// Architecture aliases LXD accepts, mapped to the kernel name.
const ARCHES: &[(&str, &[&str])] = &[
    ("i686", &["i386", "i586", "386", "x86"]),
    ("x86_64", &["amd64"]),
    ("armv6l", &["armel", "arm"]),
    ("armv7l", &["armhf", "armhfp", "armv7a", "armv7hl", "armv7hnl"]),
    ("armv8l", &[]),
    ("aarch64", &["arm64", "arm64-v8a"]),
    ("ppc", &["powerpc"]),
    ("ppc64", &["powerpc64", "ppc64be"]),
    ("ppc64le", &["ppc64el"]),
    ("s390x", &[]),
    ("mips", &[]),
    ("mips64", &[]),
    ("riscv32", &[]),
    ("riscv64", &[]),
    ("loongarch64", &[]),
];

/// The kernel name of an architecture or alias.
pub fn normalize_architecture(arch: &str) -> Option<&'static str> {
    ARCHES.iter().find(|(name, aliases)| *name == arch || aliases.contains(&arch)).map(|(name, _)| *name)
}

/// Parses and checks a metadata.yaml document.
pub fn parse(bytes: &[u8]) -> Result<ImageMetadata, Error> {
    let mut meta: ImageMetadata = serde_yaml::from_slice(bytes).map_err(|e| Error::Metadata(e.to_string()))?;
    meta.architecture = normalize_architecture(&meta.architecture)
        .ok_or_else(|| Error::Metadata(format!("unsupported architecture {:?}", meta.architecture)))?
        .to_string();
    for (path, t) in &meta.templates {
        if !path.starts_with('/') {
            return Err(Error::Metadata(format!("template target {path:?} is not an absolute path")));
        }
        if t.template.is_empty() || t.template.starts_with('/') || t.template.split('/').any(|c| c == "..") {
            return Err(Error::Metadata(format!("template file {:?} for {path:?} is not inside templates/", t.template)));
        }
        if let Some(bad) = t.when.iter().find(|w| !matches!(w.as_str(), "create" | "copy" | "start" | "rename")) {
            return Err(Error::Metadata(format!("template {path:?}: unknown trigger {bad:?}")));
        }
    }
    Ok(meta)
}

/// Finds and parses `metadata.yaml` in a (compressed) image or metadata tarball.
pub fn read_from_archive<R: Read>(reader: R) -> Result<ImageMetadata, Error> {
    let decoded = decompress(std::io::BufReader::new(reader))?;
    let mut archive = tar::Archive::new(decoded);
    let entries = archive.entries().map_err(|e| Error::Corrupt { entry: String::new(), source: e })?;
    for entry in entries {
        let entry = entry.map_err(|e| Error::Corrupt { entry: String::new(), source: e })?;
        let path = entry.path_bytes().into_owned();
        let trimmed = path.strip_prefix(b"./").unwrap_or(&path);
        if trimmed != b"metadata.yaml" {
            continue;
        }
        if entry.header().entry_type() != tar::EntryType::Regular {
            return Err(Error::Metadata("metadata.yaml is not a regular file".into()));
        }
        let mut buf = Vec::new();
        entry.take(MAX_METADATA + 1).read_to_end(&mut buf).map_err(|e| Error::Corrupt { entry: "metadata.yaml".into(), source: e })?;
        if buf.len() as u64 > MAX_METADATA {
            return Err(Error::TooLarge { entry: "metadata.yaml".into(), limit: format!("{MAX_METADATA} bytes") });
        }
        return parse(&buf);
    }
    Err(Error::Metadata("no metadata.yaml in the archive".into()))
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = r#"
architecture: amd64
creation_date: 1700000000
properties:
  os: Debian
  release: bookworm
  description: Debian bookworm amd64
templates:
  /etc/hostname:
    when: [create, copy]
    template: hostname.tpl
  /etc/hosts:
    when: [create]
    create_only: true
    template: hosts.tpl
    properties:
      foo: bar
"#;

    #[test]
    fn parses_lxd_metadata() {
        let m = parse(SAMPLE.as_bytes()).unwrap();
        assert_eq!(m.architecture, "x86_64");
        assert_eq!(m.creation_date, 1_700_000_000);
        assert_eq!(m.expiry_date, 0);
        assert_eq!(m.properties["release"], "bookworm");
        assert_eq!(m.templates["/etc/hostname"].when, vec!["create", "copy"]);
        assert!(m.templates["/etc/hosts"].create_only);
        assert_eq!(m.templates["/etc/hosts"].properties["foo"], "bar");
    }

    #[test]
    fn refuses_bad_metadata() {
        assert!(parse(b"architecture: vax\n").is_err());
        assert!(parse(b"creation_date: 1\n").is_err(), "architecture is required");
        let escaping = "architecture: x86_64\ntemplates:\n  /etc/x:\n    template: ../../etc/shadow\n";
        assert!(matches!(parse(escaping.as_bytes()), Err(Error::Metadata(m)) if m.contains("templates/")));
        assert!(parse(b"architecture: [\n").is_err());
    }

    #[test]
    fn architecture_aliases() {
        assert_eq!(normalize_architecture("arm64"), Some("aarch64"));
        assert_eq!(normalize_architecture("ppc64el"), Some("ppc64le"));
        assert_eq!(normalize_architecture("x86_64"), Some("x86_64"));
        assert_eq!(normalize_architecture("sparc"), None);
    }
}
