#[tokio::main]
async fn main() -> std::process::ExitCode {
    let cli = switchboard::cli::parse();
    match switchboard::commands::run(cli).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("switchboard: {}", switchboard::commands::describe(&error));
            std::process::ExitCode::FAILURE
        }
    }
}
