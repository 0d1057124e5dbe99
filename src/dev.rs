//! `serve --dev`: loopback only, and a JWT secret generated once and kept
//! next to the database when no authentication is configured.

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

/// Applies `--dev` to the configuration before the server is built.
pub fn prepare(config: &mut Config) -> anyhow::Result<()> {
    if !config.bind.ip().is_loopback() {
        anyhow::bail!(
            "--dev listens on loopback only, but SWITCHBOARD_BIND is {}; \
             use 127.0.0.1 or [::1], or run without --dev",
            config.bind
        );
    }
    if !config.auth.any_method() && !config.auth.disabled {
        let path = secret_path(config);
        config.auth.jwt_secret = Some(load_or_create_secret(&path)?);
        tracing::info!(path = %path.display(), "development JWT secret in use");
    }
    Ok(())
}

/// Where the development secret lives: beside the SQLite file, or in the
/// working directory for other databases.
pub fn secret_path(config: &Config) -> PathBuf {
    match config.sqlite_path() {
        Some(db) => {
            let mut name = db.file_name().unwrap_or_default().to_os_string();
            name.push(".dev-secret");
            db.with_file_name(name)
        }
        None => PathBuf::from("switchboard.dev-secret"),
    }
}

/// Reads the development secret, creating it (mode 0600) on first use.
pub fn load_or_create_secret(path: &Path) -> anyhow::Result<SecretString> {
    if let Ok(text) = std::fs::read_to_string(path) {
        let text = text.trim();
        if text.len() >= 32 {
            return Ok(SecretString::from(text.to_owned()));
        }
    }
    let bytes: [u8; 32] = rand::rng().random();
    let secret: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options
        .open(path)
        .with_context(|| format!("cannot write the development secret {}", path.display()))?;
    file.write_all(secret.as_bytes())?;
    Ok(SecretString::from(secret))
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
