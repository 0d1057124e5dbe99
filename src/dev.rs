//! `serve --dev`: loopback only (checked by [`crate::config::Config::load`]),
//! and, when no authentication is configured, a JWT secret generated once
//! and kept in the per-user data directory: `SWITCHBOARD_DATA_DIR`, else
//! `$XDG_DATA_HOME/switchboard`, else `~/.local/share/switchboard`. Never in
//! the working directory, where a gateway's tool root could read it. Only a
//! process with neither `HOME` nor `XDG_DATA_HOME` falls back to the
//! database's directory, and says so.

use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context as _;
use rand::RngExt as _;
use secrecy::SecretString;

use crate::auth::{Authenticator, Role, UserId};
use crate::config::Config;

/// The user of the token printed by `--dev`.
pub const DEV_USER: &str = "dev";
const DEV_TOKEN_TTL: Duration = Duration::from_secs(7 * 24 * 3600);
const SECRET_FILE: &str = "dev-secret";

/// Whether the server is a `--dev` one without configured authentication,
/// which [`ensure_secret`] gives a development secret.
pub fn needs_secret(config: &Config) -> bool {
    config.dev && !config.auth.any_method() && !config.auth.disabled
}

/// Gives the server its development secret. Called once the listener is
/// bound and the database is reachable, so that a server that cannot start
/// leaves no file behind.
pub fn ensure_secret(config: &mut Config) -> anyhow::Result<()> {
    let path = secret_path(config);
    if data_dir(config).is_none() {
        tracing::warn!(
            path = %path.display(),
            "neither HOME nor XDG_DATA_HOME is set: the development secret is kept \
             beside the database; set SWITCHBOARD_DATA_DIR to keep it elsewhere"
        );
    }
    config.auth.jwt_secret = Some(load_or_create_secret(&path)?);
    tracing::info!(path = %path.display(), "development JWT secret in use");
    Ok(())
}

/// The per-user data directory, if there is one.
pub fn data_dir(config: &Config) -> Option<PathBuf> {
    let absolute = |var: &str| {
        std::env::var_os(var)
            .map(PathBuf::from)
            .filter(|p| p.is_absolute())
    };
    config.data_dir.clone().or_else(|| {
        absolute("XDG_DATA_HOME")
            .or_else(|| absolute("HOME").map(|home| home.join(".local/share")))
            .map(|dir| dir.join("switchboard"))
    })
}

/// Where the development secret lives: in the per-user data directory, or,
/// without one, beside the SQLite file (the working directory for other
/// databases).
pub fn secret_path(config: &Config) -> PathBuf {
    if let Some(dir) = data_dir(config) {
        return dir.join(SECRET_FILE);
    }
    match config.sqlite_path() {
        Some(db) => {
            let mut name = db.file_name().unwrap_or_default().to_os_string();
            name.push(".dev-secret");
            db.with_file_name(name)
        }
        None => PathBuf::from("switchboard.dev-secret"),
    }
}

/// Reads the development secret, creating it (mode 0600, in a directory
/// created with mode 0700) on first use.
pub fn load_or_create_secret(path: &Path) -> anyhow::Result<SecretString> {
    if let Ok(text) = std::fs::read_to_string(path) {
        let text = text.trim();
        if text.len() >= 32 {
            restrict(path)?;
            return Ok(SecretString::from(text.to_owned()));
        }
    }
    let cannot = || format!("cannot write the development secret {}", path.display());
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        let mut builder = std::fs::DirBuilder::new();
        builder.recursive(true);
        #[cfg(unix)]
        std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
        builder.create(dir).with_context(cannot)?;
    }
    let bytes: [u8; 32] = rand::rng().random();
    let secret: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(path).with_context(cannot)?;
    file.write_all(secret.as_bytes()).with_context(cannot)?;
    restrict(path)?;
    Ok(SecretString::from(secret))
}

/// Mode 0600, also for a file made earlier with a laxer one.
fn restrict(path: &Path) -> anyhow::Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(path)?.permissions().mode() & 0o777;
        if mode != 0o600 {
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
                .with_context(|| format!("cannot restrict {} to mode 0600", path.display()))?;
        }
    }
    #[cfg(not(unix))]
    let _ = path;
    Ok(())
}

/// The banner `--dev` prints on stdout once the server listens.
pub fn banner(addr: SocketAddr, auth: &Authenticator, config: &Config) -> String {
    let base = format!("http://{addr}");
    let mut out = format!("\nSwitchboard is running in development mode on {base}\n");
    if config.auth.disabled {
        out.push_str(&format!(
            "  Console:  {base}/\n  Auth:     disabled (user `anonymous`)\n"
        ));
        return out;
    }
    match auth
        .jwt()
        .map(|keys| keys.mint(&UserId::new(DEV_USER), Role::User, DEV_TOKEN_TTL, None))
    {
        Some(Ok(minted)) => {
            out.push_str(&format!(
                "  Console:  {base}/#token={token}\n  Token:    {token}\n  \
                 (user `{DEV_USER}`, valid until {expires})\n  \
                 Connect:  io(\"{base}/agent\", {{ auth: {{ token }} }})\n",
                token = minted.token,
                expires = minted.expires_at.to_rfc3339(),
            ));
        }
        _ => out.push_str(&format!(
            "  Console:  {base}/\n  Sign in with one of the configured credentials.\n"
        )),
    }
    out
}
