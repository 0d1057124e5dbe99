//! Files the gateway never reads or lists, wherever they lie under the root:
//! credentials that a model has no business seeing, and that a tool root
//! such as a project checkout often holds (`.env`, keys, `.git/`, the
//! development JWT secret of `switchboard serve --dev`).
//!
//! A path is secret when any of its components is: `read_file` refuses it,
//! `list_dir` refuses to list inside it and leaves it out of listings. Both
//! the path asked for and the file it resolves to (after symlinks) are
//! checked, so a link to a secret is refused too. `run_command` is not
//! filtered: it runs only with the user's approval, which shows the command.

use std::path::{Component, Path};

/// Directories whose whole contents are secret (or, for `.git`, hold
/// credentials and history the model should reach through `git` commands).
const SECRET_DIRS: &[&str] = &[".git", ".ssh", ".gnupg", ".aws", ".kube", ".docker"];
/// Files that hold credentials by name.
const SECRET_FILES: &[&str] = &[
    ".env",
    ".netrc",
    ".pgpass",
    ".npmrc",
    ".pypirc",
    ".git-credentials",
];
/// Key and certificate stores, by extension.
const SECRET_EXTENSIONS: &[&str] = &[".pem", ".key", ".p12", ".pfx", ".jks", ".keystore"];
/// SSH private keys (and their `.pub` halves, which are harmless but share
/// the prefix; refusing them costs nothing).
const SECRET_PREFIXES: &[&str] = &["id_rsa", "id_dsa", "id_ecdsa", "id_ed25519", ".env."];
/// The development JWT secret `switchboard serve --dev` keeps
/// (`switchboard.db.dev-secret` and the like), which signs admin tokens.
const SECRET_SUFFIXES: &[&str] = &["dev-secret"];

/// Whether `path`, relative to the root, is or lies inside a secret.
pub fn is_secret(path: &Path) -> bool {
    path.components().any(|component| match component {
        Component::Normal(name) => is_secret_name(&name.to_string_lossy()),
        _ => false,
    })
}

/// Whether one file or directory name is a secret's.
pub fn is_secret_name(name: &str) -> bool {
    let name = name.to_ascii_lowercase();
    SECRET_DIRS.contains(&name.as_str())
        || SECRET_FILES.contains(&name.as_str())
        || SECRET_EXTENSIONS.iter().any(|ext| name.ends_with(ext))
        || SECRET_PREFIXES
            .iter()
            .any(|prefix| name.starts_with(prefix))
        || SECRET_SUFFIXES.iter().any(|suffix| name.ends_with(suffix))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_keys_and_the_dev_secret_are_secret() {
        for path in [
            ".env",
            ".env.local",
            "config/.ENV",
            "certs/server.pem",
            "tls/server.key",
            "id_rsa",
            "home/.ssh/known_hosts",
            "id_ed25519.pub",
            ".git/config",
            ".git",
            "switchboard.db.dev-secret",
            "data/switchboard.dev-secret",
            ".netrc",
            "store.p12",
        ] {
            assert!(is_secret(Path::new(path)), "{path} should be secret");
        }
    }

    #[test]
    fn ordinary_project_files_are_not_secret() {
        for path in [
            "Cargo.toml",
            "src/main.rs",
            ".gitignore",
            ".github/workflows/ci.yml",
            "docs/keys.md",
            "environment.md",
            "src/key.rs",
            "switchboard.db",
            ".",
        ] {
            assert!(!is_secret(Path::new(path)), "{path} should not be secret");
        }
    }
}
