//! The command line: refusing to start insecurely, --dev, token, migrate,
//! layered configuration, secrets kept out of output (PROTOCOL §1).

use serde_json::{Value, json};

use crate::helpers::*;

#[tokio::test]
async fn serve_refuses_to_start_without_authentication_and_names_the_variables() {
    let (ok, _, stderr) = ServerBuilder::new()
        .run(&["serve", "--bind", "127.0.0.1:0"])
        .await;
    assert!(!ok);
    for var in [
        "SWITCHBOARD_API_TOKENS",
        "SWITCHBOARD_JWT_SECRET",
        "SWITCHBOARD_JWT_PUBLIC_KEY",
        "SWITCHBOARD_AUTH_DISABLED",
    ] {
        assert!(stderr.contains(var), "{var} not named in: {stderr}");
    }
}

#[tokio::test]
async fn dev_mode_refuses_a_non_loopback_address() {
    let (ok, _, stderr) = ServerBuilder::new()
        .run(&["serve", "--dev", "--bind", "0.0.0.0:0"])
        .await;
    assert!(!ok);
    assert!(stderr.contains("loopback"), "{stderr}");
}

#[tokio::test]
async fn dev_mode_prints_a_working_token_and_keeps_its_secret_across_restarts() {
    let builder = ServerBuilder::new().arg("--dev");
    let mut server = builder.spawn().await;
    let banner = loop {
        let text = server.stdout.text();
        if text.contains("Token:") {
            break text;
        }
        server.wait_for_log(|_| true).await;
        tokio::task::yield_now().await;
    };
    let token = banner
        .split("Token:")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .map(|t| t.trim_matches('"').to_owned())
        .expect("a token in the banner");
    assert!(
        banner.contains(&format!("{}/#token={token}", server.url)),
        "{banner}"
    );
    // Next to the SQLite file; in the working directory for PostgreSQL.
    let beside_sqlite = builder.dir().join("sb.db.dev-secret");
    let in_workdir = builder.dir().join("switchboard.dev-secret");
    assert!(
        beside_sqlite.exists() || in_workdir.exists(),
        "the secret is kept next to the database"
    );

    let socket = server.agent(&token).await;
    assert_eq!(
        socket.request("auth:whoami", json!({})).await["user_id"],
        "dev"
    );
    socket.disconnect().await;
    server.stop_with(nix::sys::signal::Signal::SIGTERM).await;

    let restarted = builder.spawn().await;
    let socket = restarted.socket("/agent").token(&token).connect().await;
    assert!(
        socket.is_ok(),
        "the first token still works after a restart"
    );
}

#[tokio::test]
async fn token_prints_a_jwt_the_server_accepts() {
    let builder = ServerBuilder::new().env("SWITCHBOARD_JWT_SECRET", JWT_SECRET);
    let (ok, stdout, stderr) = builder
        .run(&["token", "--user", "nina", "--role", "admin", "--ttl", "10m"])
        .await;
    assert!(ok, "{stderr}");
    let token = stdout.trim();
    let claims = jsonwebtoken::decode::<Value>(
        token,
        &jsonwebtoken::DecodingKey::from_secret(JWT_SECRET.as_bytes()),
        &jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::HS256),
    )
    .unwrap()
    .claims;
    assert_eq!(claims["sub"], "nina");
    assert_eq!(claims["role"], "admin");
    let ttl = claims["exp"].as_i64().unwrap() - now();
    assert!((590..=600).contains(&ttl), "ttl {ttl}");

    let server = builder.spawn().await;
    let socket = server.agent(token).await;
    let ack = socket.request("auth:whoami", json!({})).await;
    assert_eq!(ack["role"], "admin");
}

#[tokio::test]
async fn token_without_a_secret_says_how_to_get_one() {
    let (ok, stdout, stderr) = ServerBuilder::new().run(&["token", "--user", "x"]).await;
    assert!(!ok);
    assert!(stdout.is_empty());
    assert!(stderr.contains("SWITCHBOARD_JWT_SECRET"), "{stderr}");
}

#[tokio::test]
async fn migrate_applies_every_migration_and_exits() {
    let builder = ServerBuilder::new();
    let (ok, _, stderr) = builder.run(&["migrate"]).await;
    assert!(ok, "{stderr}");
    use migration::MigratorTrait;
    let db = sea_orm::Database::connect(builder.database_url().await)
        .await
        .unwrap();
    assert!(
        migration::Migrator::get_pending_migrations(&db)
            .await
            .unwrap()
            .is_empty()
    );
    // And again: nothing to do, still success.
    let (ok, _, stderr) = builder.run(&["migrate"]).await;
    assert!(ok, "{stderr}");
}

#[tokio::test]
async fn configuration_layers_rise_from_file_to_environment_to_flags() {
    let builder = ServerBuilder::new();
    let file = builder.dir().join("switchboard.toml");
    std::fs::write(
        &file,
        "api_tokens = { olga = \"from-file\" }\ncookie_name = \"file_cookie\"\n",
    )
    .unwrap();
    let file = file.display().to_string();

    // The file alone.
    let server = ServerBuilder::new()
        .arg("--config")
        .arg(&file)
        .spawn()
        .await;
    assert!(
        server
            .socket("/agent")
            .token("from-file")
            .connect()
            .await
            .is_ok()
    );
    drop(server);

    // The environment overrides the file; the file still sets what the environment does not.
    let server = ServerBuilder::new()
        .env("SWITCHBOARD_CONFIG", &file)
        .env("SWITCHBOARD_API_TOKENS", "olga:from-env")
        .env("SWITCHBOARD_JWT_SECRET", JWT_SECRET)
        .spawn()
        .await;
    assert_eq!(
        server
            .socket("/agent")
            .token("from-file")
            .connect()
            .await
            .err()
            .unwrap(),
        "unauthorized: invalid_token"
    );
    assert!(
        server
            .socket("/agent")
            .token("from-env")
            .connect()
            .await
            .is_ok()
    );
    let cookie = format!("file_cookie={}", user_jwt("olga"));
    assert!(
        server
            .socket("/agent")
            .header("Cookie", &cookie)
            .connect()
            .await
            .is_ok()
    );
    drop(server);

    // Flags override the environment.
    let server = ServerBuilder::new()
        .env("SWITCHBOARD_CONFIG", &file)
        .env("SWITCHBOARD_API_TOKENS", "olga:from-env")
        .arg("--api-tokens")
        .arg("olga:from-flag")
        .spawn()
        .await;
    assert!(
        server
            .socket("/agent")
            .token("from-env")
            .connect()
            .await
            .is_err()
    );
    assert!(
        server
            .socket("/agent")
            .token("from-flag")
            .connect()
            .await
            .is_ok()
    );
}

#[tokio::test]
async fn a_bad_setting_is_refused_with_its_name() {
    let (ok, _, stderr) = ServerBuilder::new()
        .env("SWITCHBOARD_API_TOKENS", "alice")
        .run(&["serve"])
        .await;
    assert!(!ok);
    assert!(stderr.contains("SWITCHBOARD_API_TOKENS"), "{stderr}");

    let builder = ServerBuilder::new();
    let file = builder.dir().join("bad.toml");
    std::fs::write(&file, "no_such_setting = 1\n").unwrap();
    let (ok, _, stderr) = builder
        .run(&["serve", "--config", &file.display().to_string()])
        .await;
    assert!(!ok);
    assert!(stderr.contains("no_such_setting"), "{stderr}");
}

#[tokio::test]
async fn secrets_never_reach_the_logs_or_the_help() {
    let db_password = "pg-password-that-must-not-leak";
    let mut server = ServerBuilder::with_auth()
        .env("SWITCHBOARD_LLM_API_KEY", "sk-must-not-leak")
        .env("SWITCHBOARD_LOG_FORMAT", "json")
        .env("RUST_LOG", "debug")
        .spawn()
        .await;
    let socket = server.agent("tok-alice").await;
    socket.disconnect().await;
    server.wait_for_log(|l| l["message"] == "handshake").await;
    let logs = server.logs.text();
    for secret in ["tok-alice", "tok-bob", JWT_SECRET, "sk-must-not-leak"] {
        assert!(!logs.contains(secret), "{secret} reached the logs");
    }

    let (ok, help, _) = ServerBuilder::new()
        .env("SWITCHBOARD_JWT_SECRET", JWT_SECRET)
        .env(
            "DATABASE_URL",
            &format!("postgres://sb:{db_password}@localhost/sb"),
        )
        .run(&["serve", "--help"])
        .await;
    assert!(ok);
    assert!(
        help.contains("SWITCHBOARD_BIND") && help.contains("--dev"),
        "{help}"
    );
    assert!(
        !help.contains(JWT_SECRET) && !help.contains(db_password),
        "{help}"
    );
}
