//! A first run: what the binary says and leaves behind when it cannot
//! start, the order it starts in, where `--dev` keeps its secret, and what
//! the help shows.

use std::path::Path;

use crate::helpers::*;

/// A builder on a SQLite file of its own, whatever database the suite uses.
fn on_sqlite(builder: ServerBuilder, file: &str) -> ServerBuilder {
    let url = format!("sqlite://{}", builder.dir().join(file).display());
    builder.env("DATABASE_URL", &url)
}

fn failure_line(stderr: &str) -> &str {
    stderr
        .lines()
        .rev()
        .find(|l| l.starts_with("switchboard: "))
        .unwrap_or_else(|| panic!("no error line in: {stderr}"))
}

#[tokio::test]
async fn an_error_says_each_cause_once() {
    let builder = ServerBuilder::with_auth();
    let builder = on_sqlite(builder, "missing-dir/sb.db");
    let (ok, _, stderr) = builder.run(&["serve", "--bind", "127.0.0.1:0"]).await;
    assert!(!ok);
    let line = failure_line(&stderr);
    assert_eq!(
        line.matches("unable to open database file").count(),
        1,
        "{line}"
    );
    assert!(line.contains("missing-dir does not exist"), "{line}");
}

#[tokio::test]
async fn a_sqlite_file_that_does_not_exist_yet_is_created() {
    let builder = on_sqlite(ServerBuilder::with_auth(), "fresh.db");
    let (ok, _, stderr) = builder.run(&["migrate"]).await;
    assert!(ok, "{stderr}");
    assert!(builder.dir().join("fresh.db").is_file());
}

#[tokio::test]
async fn a_bad_address_names_the_flag_or_the_variable_it_came_from() {
    let builder = ServerBuilder::with_auth().env("SWITCHBOARD_BIND", "127.0.0.1:0");
    let (ok, _, stderr) = builder.run(&["serve", "--bind", "nowhere"]).await;
    assert!(!ok);
    let line = failure_line(&stderr);
    assert!(
        line.contains("--bind") && line.contains("nowhere"),
        "{line}"
    );
    assert!(!line.contains("SWITCHBOARD_BIND"), "{line}");

    let builder = ServerBuilder::with_auth().env("SWITCHBOARD_BIND", "nowhere");
    let (ok, _, stderr) = builder.run(&["serve"]).await;
    assert!(!ok);
    assert!(
        failure_line(&stderr).contains("SWITCHBOARD_BIND"),
        "{stderr}"
    );

    let builder = ServerBuilder::with_auth();
    let file = config_file(&builder, "bind = \"nowhere\"\n");
    let (ok, _, stderr) = builder.run(&["serve", "--config", &file]).await;
    assert!(!ok);
    let line = failure_line(&stderr);
    assert!(
        line.contains("`bind` in") && line.contains("sb.toml"),
        "{line}"
    );
}

#[tokio::test]
async fn a_bad_toml_key_is_named_once() {
    let builder = ServerBuilder::with_auth();
    let file = config_file(&builder, "tool_timout = \"5s\"\n");
    let (ok, _, stderr) = builder.run(&["serve", "--config", &file]).await;
    assert!(!ok);
    let line = failure_line(&stderr);
    assert_eq!(line.matches("tool_timout").count(), 1, "{line}");
    assert!(line.contains("unknown setting"), "{line}");
}

#[tokio::test]
async fn several_nodes_on_a_sqlite_file_are_refused() {
    let builder = on_sqlite(ServerBuilder::with_auth(), "sb.db")
        .env("SWITCHBOARD_REDIS_URL", "redis://127.0.0.1:6379");
    let (ok, _, stderr) = builder.run(&["serve", "--bind", "127.0.0.1:0"]).await;
    assert!(!ok);
    let line = failure_line(&stderr);
    assert!(
        line.contains("SWITCHBOARD_REDIS_URL")
            && line.contains("PostgreSQL")
            && line.contains("DATABASE_URL"),
        "{line}"
    );
}

#[tokio::test]
async fn a_port_in_use_is_found_before_the_database_is_touched() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let builder = on_sqlite(ServerBuilder::with_auth(), "sb.db");
    let (ok, _, stderr) = builder.run(&["serve", "--bind", &addr]).await;
    assert!(!ok);
    assert!(
        failure_line(&stderr).contains(&format!("cannot listen on {addr}")),
        "{stderr}"
    );
    assert!(
        !builder.dir().join("sb.db").exists(),
        "the database was created"
    );
}

#[tokio::test]
async fn dev_mode_writes_no_secret_when_the_database_cannot_be_opened() {
    let builder = on_sqlite(ServerBuilder::new(), "missing-dir/sb.db");
    let data = builder.dir().join("data");
    let builder = builder.env("XDG_DATA_HOME", &data.display().to_string());
    let (ok, _, _) = builder
        .run(&["serve", "--dev", "--bind", "127.0.0.1:0"])
        .await;
    assert!(!ok);
    assert!(
        !data.exists(),
        "a secret was written for a server that did not start"
    );
}

#[tokio::test]
async fn dev_mode_keeps_its_secret_in_the_user_data_directory_readable_by_the_user_only() {
    let builder = ServerBuilder::new().arg("--dev");
    let home = builder.dir().join("home");
    let builder = builder.env("HOME", &home.display().to_string());
    let server = builder.spawn().await;
    let secret = home.join(".local/share/switchboard/dev-secret");
    assert!(secret.is_file(), "no secret at {}", secret.display());
    assert_mode(&secret, 0o600);
    let beside_database = std::fs::read_dir(builder.dir())
        .unwrap()
        .filter_map(|e| e.ok())
        .any(|e| e.file_name().to_string_lossy().contains("secret"));
    assert!(!beside_database, "a secret in the working directory");
    drop(server);

    // `token` signs with the same secret.
    let (ok, stdout, stderr) = builder.run(&["token", "--user", "dev"]).await;
    assert!(ok, "{stderr}");
    let server = builder.spawn().await;
    assert!(
        server
            .socket("/agent")
            .token(stdout.trim())
            .connect()
            .await
            .is_ok()
    );

    // A setting moves it.
    let elsewhere = builder.dir().join("elsewhere");
    let builder = ServerBuilder::new()
        .arg("--dev")
        .env("HOME", &home.display().to_string())
        .env("SWITCHBOARD_DATA_DIR", &elsewhere.display().to_string());
    let _server = builder.spawn().await;
    assert!(elsewhere.join("dev-secret").is_file());
}

fn assert_mode(path: &Path, expected: u32) {
    use std::os::unix::fs::PermissionsExt as _;
    let mode = std::fs::metadata(path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, expected, "{} has mode {mode:o}", path.display());
}

#[tokio::test]
async fn logs_carry_no_colours_when_stderr_is_not_a_terminal() {
    let (ok, _, stderr) = ServerBuilder::with_auth().run(&["migrate"]).await;
    assert!(ok, "{stderr}");
    assert!(stderr.contains("migrations are up to date"), "{stderr}");
    assert!(!stderr.contains('\u{1b}'), "{stderr:?}");
}

#[tokio::test]
async fn the_tool_timeout_is_a_duration_and_the_milliseconds_name_still_works() {
    let mut server = ServerBuilder::with_auth()
        .env("SWITCHBOARD_TOOL_TIMEOUT_MS", "5000")
        .spawn()
        .await;
    let notice = server
        .wait_for_log(|l| {
            l["level"] == "WARN"
                && l["message"]
                    .as_str()
                    .is_some_and(|m| m.contains("SWITCHBOARD_TOOL_TIMEOUT_MS is deprecated"))
        })
        .await;
    assert!(
        notice["message"]
            .as_str()
            .unwrap()
            .contains("SWITCHBOARD_TOOL_TIMEOUT"),
        "{notice}"
    );

    let builder = ServerBuilder::with_auth();
    let file = config_file(&builder, "tool_timeout = \"90s\"\n");
    let _server = builder.arg("--config").arg(&file).spawn().await;

    let (ok, _, stderr) = ServerBuilder::with_auth()
        .env("SWITCHBOARD_TOOL_TIMEOUT", "120")
        .run(&["serve", "--bind", "127.0.0.1:0"])
        .await;
    assert!(!ok);
    let line = failure_line(&stderr);
    assert!(
        line.contains("SWITCHBOARD_TOOL_TIMEOUT") && line.contains("`120s`"),
        "{line}"
    );
}

#[tokio::test]
async fn auth_disabled_accepts_1_and_true_as_its_help_says() {
    for value in ["1", "true"] {
        let server = ServerBuilder::new()
            .env("SWITCHBOARD_AUTH_DISABLED", value)
            .spawn()
            .await;
        let socket = server.socket("/agent").connect().await;
        assert!(socket.is_ok(), "SWITCHBOARD_AUTH_DISABLED={value}");
    }
    let server = ServerBuilder::new()
        .arg("--auth-disabled")
        .arg("1")
        .spawn()
        .await;
    assert!(server.socket("/agent").connect().await.is_ok());

    let (_, help, _) = ServerBuilder::new().run(&["serve", "--help"]).await;
    let line = help
        .lines()
        .find(|l| l.contains("--auth-disabled"))
        .expect("--auth-disabled in the help");
    assert!(line.contains("`1`") && line.contains("`true`"), "{line}");
    assert!(!help.contains("possible values: true, false"), "{help}");
}

#[tokio::test]
async fn subcommands_show_only_their_own_options() {
    let builder = ServerBuilder::new();
    let (ok, token_help, _) = builder.run(&["token", "--help"]).await;
    assert!(ok);
    for own in ["--user", "--role", "--ttl", "--audience"] {
        assert!(token_help.contains(own), "{own} missing: {token_help}");
    }
    for server_flag in ["--bind", "--max-connections", "--jwt-secret", "--llm-model"] {
        assert!(
            !token_help.contains(server_flag),
            "{server_flag} in: {token_help}"
        );
    }
    let (_, migrate_help, _) = builder.run(&["migrate", "--help"]).await;
    assert!(migrate_help.contains("--database-url") && !migrate_help.contains("--bind"));
}

#[tokio::test]
async fn the_help_shows_what_the_readme_says_it_shows() {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md"))
        .expect("the README");
    let builder = ServerBuilder::new();
    let (ok, help, _) = builder.run(&["--help"]).await;
    assert!(ok);
    for command in ["serve", "migrate", "token"] {
        assert!(help.contains(command), "{command}: {help}");
    }
    assert!(help.contains("switchboard serve --help"), "{help}");
    assert!(
        readme.contains("switchboard serve --help"),
        "the README points at `switchboard serve --help` for the settings"
    );
    let (_, serve_help, _) = builder.run(&["serve", "--help"]).await;
    // Every row of the README's settings tables (`| variable | flag | …`)
    // is in the help, its variable and its flag.
    let mut rows = 0;
    let mut in_table = false;
    for line in readme.lines() {
        if line.starts_with("| variable | flag |") {
            in_table = true;
            continue;
        }
        in_table &= line.starts_with('|');
        let cells: Vec<&str> = line.split('|').map(str::trim).collect();
        if !in_table || cells.len() < 3 || !cells[1].starts_with('`') || cells[2].is_empty() {
            continue;
        }
        let (variable, flag) = (cells[1].trim_matches('`'), cells[2].trim_matches('`'));
        assert!(serve_help.contains(variable), "{variable} not in the help");
        assert!(serve_help.contains(flag), "{flag} not in the help");
        rows += 1;
    }
    assert!(rows > 20, "the README's settings tables have {rows} rows");
}

/// Writes `toml` to `sb.toml` in the server's directory; its path.
fn config_file(builder: &ServerBuilder, toml: &str) -> String {
    let file = builder.dir().join("sb.toml");
    std::fs::write(&file, toml).expect("write sb.toml");
    file.display().to_string()
}
