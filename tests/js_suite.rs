//! Runs the JavaScript suite in `tests/js` — the official `socket.io-client`
//! v4 against the real server, and the web console in Debian's Chromium
//! (playwright-core; `/usr/bin/chromium` must be installed) — as part of
//! `cargo test`, so one command runs every test. Installs the suite's npm packages (`npm ci`, from the
//! committed lockfile) when they are missing or older than the lockfile.

use std::path::Path;
use std::process::Command;

#[test]
fn the_official_socket_io_client_suite_passes() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/js");
    let installed = dir.join("node_modules/.package-lock.json");
    let lockfile = dir.join("package-lock.json");
    let modified = |p: &Path| p.metadata().and_then(|m| m.modified()).ok();
    if modified(&installed).is_none() || modified(&installed) < modified(&lockfile) {
        let status = Command::new("npm")
            .args(["ci", "--no-audit", "--no-fund"])
            .current_dir(&dir)
            .status()
            .expect("npm is needed for the JavaScript suite");
        assert!(status.success(), "npm ci failed in {}", dir.display());
    }
    let status = Command::new("node")
        .args(["--test", "--test-reporter=spec"])
        .current_dir(&dir)
        .env("SWITCHBOARD_BIN", env!("CARGO_BIN_EXE_switchboard"))
        .status()
        .expect("node is needed for the JavaScript suite");
    assert!(
        status.success(),
        "the JavaScript suite failed (output above)"
    );
}
