//! The documents a clone of the repository carries: every relative link in
//! README.md and docs/*.md names a file of the repository, and the commands
//! they and the console print for the example gateway work as written.

use std::path::{Path, PathBuf};

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// README.md and every Markdown file in docs/.
fn documents() -> Vec<PathBuf> {
    let mut files = vec![root().join("README.md")];
    for entry in std::fs::read_dir(root().join("docs")).expect("docs/") {
        let path = entry.expect("docs/ entry").path();
        if path.extension().is_some_and(|ext| ext == "md") {
            files.push(path);
        }
    }
    files.sort();
    files
}

/// The targets of the Markdown links and images in `text`: `](target)`.
fn link_targets(text: &str) -> Vec<String> {
    let mut targets = Vec::new();
    let mut rest = text;
    while let Some(start) = rest.find("](") {
        rest = &rest[start + 2..];
        if let Some(end) = rest.find(')') {
            // `[text](path "title")`: the path is the first word.
            let target = rest[..end].split_whitespace().next().unwrap_or_default();
            targets.push(target.to_owned());
        }
    }
    targets
}

fn is_relative(target: &str) -> bool {
    !(target.is_empty()
        || target.starts_with('#')
        || target.contains("://")
        || target.starts_with("mailto:"))
}

#[test]
fn every_relative_link_in_the_readme_and_docs_names_a_file_in_the_repository() {
    let root = root().canonicalize().expect("repository root");
    let mut broken = Vec::new();
    for doc in documents() {
        let text = std::fs::read_to_string(&doc).expect("readable document");
        for target in link_targets(&text).into_iter().filter(|t| is_relative(t)) {
            let path = target.split('#').next().unwrap_or_default();
            let resolved = doc.parent().expect("a folder").join(path);
            match resolved.canonicalize() {
                Ok(file) if file.starts_with(&root) => {}
                Ok(_) => broken.push(format!("{}: {target} leaves the repository", doc.display())),
                Err(_) => broken.push(format!("{}: {target} does not exist", doc.display())),
            }
        }
    }
    assert!(broken.is_empty(), "broken links:\n{}", broken.join("\n"));
}

#[test]
fn the_documents_do_not_point_outside_the_repository() {
    for doc in documents() {
        let text = std::fs::read_to_string(&doc).expect("readable document");
        assert!(
            !text.contains("../shared"),
            "{} refers to ../shared, which a clone does not have",
            doc.display()
        );
    }
}

/// Every `--example gateway` command line in the README, the docs and the
/// console's sources names the server (`--url`, which it requires) and
/// builds in release mode, like the server (`--release`), so that it does
/// not compile the project a second time.
#[test]
fn every_printed_gateway_command_names_the_server_and_builds_in_release_mode() {
    let mut files = documents();
    let mut dirs = vec![root().join("console/src")];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).expect("console/src") {
            let path = entry.expect("console/src entry").path();
            if path.is_dir() {
                dirs.push(path);
            } else {
                files.push(path);
            }
        }
    }
    let mut found = 0;
    for file in files {
        let text = std::fs::read_to_string(&file).expect("readable file");
        // A command continued with `\` is one line.
        let joined = text.replace("\\\n", " ");
        for line in joined.lines().filter(|l| l.contains("--example gateway")) {
            found += 1;
            assert!(
                line.contains("--url") && line.contains("--release"),
                "{}: {line}",
                file.display()
            );
        }
    }
    assert!(found > 0, "no gateway command found");
}
