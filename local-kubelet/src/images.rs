//! The image map: which host binary stands for which image, and what the image's
//! Dockerfile would give (entrypoint, cmd, working directory, environment).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;

/// One image of the map file.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ImageEntry {
    /// `repository` or `repository:tag`; a tag-specific entry wins over a bare one.
    pub image: String,
    /// Host binary bind-mounted at `entrypoint[0]` inside the container (optional:
    /// an image whose entrypoint already exists on the host needs none).
    #[serde(default)]
    pub binary: Option<String>,
    #[serde(default)]
    pub entrypoint: Vec<String>,
    #[serde(default)]
    pub cmd: Vec<String>,
    #[serde(default)]
    pub working_dir: Option<String>,
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// `USER` of the image, `uid` or `uid:gid`; used when the pod sets no runAsUser.
    #[serde(default)]
    pub user: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ImageFile {
    #[serde(default)]
    images: Vec<ImageEntry>,
}

/// What a container of a mapped image runs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ResolvedImage {
    pub binary: Option<PathBuf>,
    pub entrypoint: Vec<String>,
    pub cmd: Vec<String>,
    pub working_dir: Option<String>,
    pub env: BTreeMap<String, String>,
    pub uid: Option<u32>,
    pub gid: Option<u32>,
    /// Reported as `imageID`.
    pub image_id: String,
}

#[derive(Clone, Debug, Default)]
pub struct ImageMap {
    entries: Vec<ImageEntry>,
}

/// Splits `repo[:tag][@digest]` into the repository and the tag (a digest counts as
/// no tag). A colon before the last `/` belongs to a registry port.
pub fn split_image(image: &str) -> (&str, Option<&str>) {
    let image = image.split('@').next().unwrap_or(image);
    let slash = image.rfind('/').map_or(0, |i| i + 1);
    match image[slash..].rfind(':') {
        Some(i) => (&image[..slash + i], Some(&image[slash + i + 1..])),
        None => (image, None),
    }
}

/// The end of a `${...}` body starting at `braced` (after the `{`), nested braces
/// counted.
fn closing_brace(braced: &str) -> Option<usize> {
    let mut depth = 0usize;
    for (i, c) in braced.char_indices() {
        match c {
            '{' => depth += 1,
            '}' if depth == 0 => return Some(i),
            '}' => depth -= 1,
            _ => {}
        }
    }
    None
}

/// Expands `$VAR`, `${VAR}` and `${VAR:-default}` (the default expanded in turn)
/// from `lookup`; an unknown variable expands to "".
pub fn expand_env_vars(s: &str, lookup: &dyn Fn(&str) -> Option<String>) -> String {
    let mut out = String::new();
    let mut rest = s;
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        let after = &rest[i + 1..];
        if let Some(braced) = after.strip_prefix('{')
            && let Some(end) = closing_brace(braced)
            && let Some((name, default)) = braced[..end].split_once(":-")
        {
            let value = lookup(name).filter(|v| !v.is_empty());
            out.push_str(&value.unwrap_or_else(|| expand_env_vars(default, lookup)));
            rest = &braced[end + 1..];
            continue;
        }
        let (name, len) = if let Some(braced) = after.strip_prefix('{') {
            match closing_brace(braced) {
                Some(end) => (&braced[..end], end + 2),
                None => ("", 0),
            }
        } else {
            let end = after
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .unwrap_or(after.len());
            (&after[..end], end)
        };
        if name.is_empty() {
            out.push('$');
            rest = after;
        } else {
            out.push_str(&lookup(name).unwrap_or_default());
            rest = &after[len..];
        }
    }
    out.push_str(rest);
    out
}

/// `uid` or `uid:gid` (numeric only: there is no /etc/passwd of the image).
pub fn parse_user(user: Option<&str>) -> (Option<u32>, Option<u32>) {
    let Some(u) = user else { return (None, None) };
    let (uid, gid) = match u.split_once(':') {
        Some((a, b)) => (a, Some(b)),
        None => (u, None),
    };
    (
        uid.trim().parse().ok(),
        gid.and_then(|g| g.trim().parse().ok()),
    )
}

impl ImageMap {
    pub fn new(entries: Vec<ImageEntry>) -> Self {
        Self { entries }
    }

    /// Reads the YAML map file (`images: [...]`), expanding environment variables in
    /// `binary`.
    pub fn load(path: &Path) -> anyhow::Result<Self> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| anyhow::anyhow!("reading image map {}: {e}", path.display()))?;
        let file: ImageFile = serde_norway::from_str(&text)
            .map_err(|e| anyhow::anyhow!("parsing image map {}: {e}", path.display()))?;
        let env = |k: &str| std::env::var(k).ok();
        let entries = file
            .images
            .into_iter()
            .map(|mut e| {
                e.binary = e.binary.map(|b| expand_env_vars(&b, &env));
                e
            })
            .collect();
        Ok(Self { entries })
    }

    /// The entry for `image`: `repo:tag` first, then `repo`.
    pub fn lookup(&self, image: &str) -> Option<ResolvedImage> {
        let (repo, tag) = split_image(image);
        let exact = tag.and_then(|t| {
            self.entries
                .iter()
                .find(|e| split_image(&e.image) == (repo, Some(t)))
        });
        let entry = exact.or_else(|| {
            self.entries
                .iter()
                .find(|e| split_image(&e.image) == (repo, None))
        })?;
        let binary = entry.binary.as_ref().map(PathBuf::from);
        let image_id = match &binary {
            Some(b) => format!("local://{}", b.display()),
            None => format!("local://{}", entry.image),
        };
        let (uid, gid) = parse_user(entry.user.as_deref());
        Some(ResolvedImage {
            uid,
            gid,
            binary,
            entrypoint: entry.entrypoint.clone(),
            cmd: entry.cmd.clone(),
            working_dir: entry.working_dir.clone(),
            env: entry.env.clone(),
            image_id,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(image: &str, binary: &str) -> ImageEntry {
        ImageEntry {
            image: image.into(),
            binary: Some(binary.into()),
            entrypoint: vec!["/usr/local/bin/x".into()],
            cmd: vec![],
            working_dir: None,
            env: BTreeMap::new(),
            user: None,
        }
    }

    #[test]
    fn image_names_split_into_repository_and_tag() {
        assert_eq!(split_image("busybox"), ("busybox", None));
        assert_eq!(split_image("busybox:1.36"), ("busybox", Some("1.36")));
        assert_eq!(
            split_image("localhost:5000/a/b:v1"),
            ("localhost:5000/a/b", Some("v1"))
        );
        assert_eq!(
            split_image("localhost:5000/a/b"),
            ("localhost:5000/a/b", None)
        );
        assert_eq!(split_image("ghcr.io/x/y@sha256:abc"), ("ghcr.io/x/y", None));
        assert_eq!(
            split_image("ghcr.io/x/y:v2@sha256:abc"),
            ("ghcr.io/x/y", Some("v2"))
        );
    }

    #[test]
    fn a_tag_specific_entry_wins_over_the_repository_entry() {
        let map = ImageMap::new(vec![
            entry("ghcr.io/s/runtime", "/bin/any"),
            entry("ghcr.io/s/runtime:v2", "/bin/v2"),
        ]);
        let b = |i: &str| map.lookup(i).and_then(|r| r.binary);
        assert_eq!(b("ghcr.io/s/runtime:v2"), Some("/bin/v2".into()));
        assert_eq!(b("ghcr.io/s/runtime:v1"), Some("/bin/any".into()));
        assert_eq!(b("ghcr.io/s/runtime"), Some("/bin/any".into()));
        assert_eq!(b("ghcr.io/s/other:v2"), None);
    }

    #[test]
    fn environment_variables_in_paths_are_expanded() {
        let env = |k: &str| (k == "T").then(|| "/tgt".to_owned());
        assert_eq!(expand_env_vars("$T/release/x", &env), "/tgt/release/x");
        assert_eq!(expand_env_vars("${T}/r", &env), "/tgt/r");
        assert_eq!(expand_env_vars("/a/$NOPE/b", &env), "/a//b");
        assert_eq!(expand_env_vars("cost $ 5", &env), "cost $ 5");
        assert_eq!(expand_env_vars("${T:-/d}/x", &env), "/tgt/x");
        assert_eq!(
            expand_env_vars("${NOPE:-${T}/cache}/x", &env),
            "/tgt/cache/x"
        );
    }

    #[test]
    fn the_example_map_names_the_release_binaries() {
        // Compiled in, so the test follows the file (and not the path the
        // binary happened to be built at).
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("images.example.yaml");
        std::fs::write(&path, include_str!("../images.example.yaml")).expect("write");
        let map = ImageMap::load(&path).expect("example loads");
        let r = map
            .lookup("ghcr.io/streamjoin/streamjoin-runtime:0.1.0")
            .expect("runtime");
        let bin = r.binary.expect("binary").display().to_string();
        assert!(
            bin.starts_with('/') && bin.ends_with("/release/streamjoin-runtime"),
            "{bin}"
        );
        assert_eq!(r.entrypoint, ["/usr/local/bin/streamjoin-runtime"]);
        assert_eq!((r.uid, r.gid), (Some(65532), Some(65532)));
    }

    #[test]
    fn the_map_file_is_yaml_with_camel_case_fields() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("images.yaml");
        std::fs::write(
            &path,
            "images:\n- image: ghcr.io/s/runtime\n  binary: /bin/true\n  entrypoint: [/usr/local/bin/streamjoin-runtime]\n  cmd: [run]\n  workingDir: /work\n  user: 65532:65532\n",
        )
        .expect("write");
        let map = ImageMap::load(&path).expect("loads");
        let r = map.lookup("ghcr.io/s/runtime:1.0").expect("found");
        assert_eq!(r.entrypoint, ["/usr/local/bin/streamjoin-runtime"]);
        assert_eq!(r.cmd, ["run"]);
        assert_eq!(r.working_dir.as_deref(), Some("/work"));
        assert_eq!(r.image_id, "local:///bin/true");
        assert_eq!((r.uid, r.gid), (Some(65532), Some(65532)));
    }
}
