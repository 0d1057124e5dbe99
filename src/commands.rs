//! What each subcommand does; `main.rs` only parses the command line.

use anyhow::Context as _;

use crate::app::{Application, shutdown_signal};
use crate::auth::{Authenticator, UserId};
use crate::cli::{Cli, Command, MigrateArgs, TokenArgs};
use crate::config::{Config, Settings};

pub async fn run(cli: Cli) -> anyhow::Result<()> {
    let Cli {
        config: config_file,
        log_format,
        command,
    } = cli;
    let (mut flags, dev) = match &command {
        Command::Serve(args) => (args.settings.clone(), args.dev),
        Command::Migrate(MigrateArgs { database_url }) => (
            Settings {
                database_url: database_url.clone(),
                ..Default::default()
            },
            false,
        ),
        Command::Token(_) => (Settings::default(), false),
    };
    flags.log_format = log_format;
    let config = Config::load(config_file.as_deref(), &flags, dev)?;
    crate::telemetry::init(config.log_format);
    for notice in &config.deprecations {
        tracing::warn!("{notice}");
    }
    match command {
        Command::Serve(_) => serve(config).await,
        Command::Migrate(_) => {
            crate::db::connect_and_migrate(&config)
                .await
                .with_context(|| format!("cannot migrate {}", config.database_display()))?
                .close()
                .await?;
            tracing::info!(database = %config.database_display(), "migrations are up to date");
            Ok(())
        }
        Command::Token(args) => {
            println!("{}", token(config, args)?);
            Ok(())
        }
    }
}

async fn serve(config: Config) -> anyhow::Result<()> {
    let shutdown = shutdown_signal()?;
    let app = Application::build(config).await?;
    let state = app.state();
    if state.config.dev {
        println!(
            "{}",
            crate::dev::banner(app.local_addr(), &state.auth, &state.config)
        );
    }
    app.run_until_stopped(shutdown).await
}

fn token(mut config: Config, args: TokenArgs) -> anyhow::Result<String> {
    if config.auth.jwt_secret.is_none() {
        let path = crate::dev::secret_path(&config);
        if path.exists() {
            config.auth.jwt_secret = Some(crate::dev::load_or_create_secret(&path)?);
        }
    }
    let auth = Authenticator::from_config(&config.auth)?;
    let keys = auth
        .jwt()
        .filter(|_| config.auth.jwt_secret.is_some())
        .context(
            "no JWT secret to sign with: set SWITCHBOARD_JWT_SECRET, \
         or run `switchboard serve --dev` once to create a development secret",
        )?;
    let user = UserId::parse(&args.user)
        .map_err(|why| anyhow::anyhow!("--user {:?}: {why}", args.user))?;
    let minted = keys.mint(&user, args.role, args.ttl, args.audience.as_deref())?;
    Ok(minted.token)
}

/// An error and its causes on one line, each said once: many errors
/// (sqlx's and sea-orm's among them) repeat their cause's text in their own.
pub fn describe(error: &anyhow::Error) -> String {
    let mut line = String::new();
    for cause in error.chain() {
        let text = cause.to_string();
        if line.contains(&text) {
            continue;
        }
        if !line.is_empty() {
            line.push_str(": ");
        }
        line.push_str(&text);
    }
    line
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("error returned from database: {0}")]
    struct Repeats(#[source] Inner);

    #[derive(Debug, thiserror::Error)]
    #[error("unable to open database file")]
    struct Inner;

    #[test]
    fn each_cause_is_said_once() {
        let error = anyhow::Error::new(Repeats(Inner)).context("cannot open the database x");
        assert_eq!(
            describe(&error),
            "cannot open the database x: error returned from database: unable to open database file"
        );
        let plain = anyhow::Error::new(Inner).context("cannot migrate");
        assert_eq!(
            describe(&plain),
            "cannot migrate: unable to open database file"
        );
    }
}
