//! What each subcommand does; `main.rs` only parses the command line.

use anyhow::Context as _;

use crate::app::{Application, shutdown_signal};
use crate::auth::{Authenticator, UserId};
use crate::cli::{Cli, Command, LogFormat, ServeArgs, Settings, TokenArgs};
use crate::config::Config;

pub async fn run(cli: Cli) -> anyhow::Result<()> {
    let config_file = cli.config;
    let log_format = cli.log_format;
    let load = |settings: Settings, dev: bool| {
        Config::load(config_file.as_deref(), log_format, settings, dev)
    };
    match cli.command {
        Command::Serve(ServeArgs { dev, settings }) => {
            let config = load(settings, dev)?;
            crate::telemetry::init(config.log_format);
            serve(config).await
        }
        Command::Migrate(settings) => {
            let config = load(settings, false)?;
            crate::telemetry::init(config.log_format);
            crate::db::connect_and_migrate(&config)
                .await
                .with_context(|| format!("cannot migrate {}", config.database_display()))?
                .close()
                .await?;
            tracing::info!(database = %config.database_display(), "migrations are up to date");
            Ok(())
        }
        Command::Token(args) => {
            crate::telemetry::init(log_format.unwrap_or(LogFormat::Text));
            let token = token(load, args)?;
            println!("{token}");
            Ok(())
        }
    }
}

async fn serve(mut config: Config) -> anyhow::Result<()> {
    if config.dev {
        crate::dev::prepare(&mut config)?;
    }
    let dev = config.dev;
    let shutdown = shutdown_signal()?;
    let app = Application::build(config).await?;
    if dev {
        let state = app.state();
        println!(
            "{}",
            crate::dev::banner(app.local_addr(), &state.auth, &state.config)
        );
    }
    app.run_until_stopped(shutdown).await
}

fn token(
    load: impl Fn(Settings, bool) -> Result<Config, crate::config::ConfigError>,
    args: TokenArgs,
) -> anyhow::Result<String> {
    let mut config = load(args.settings, false)?;
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
