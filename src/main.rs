/// jemalloc rather than glibc's malloc: with thousands of connections
/// opening and closing, glibc keeps the peak of what every burst allocated
/// (each `session:subscribe` briefly holds a database query's future),
/// while jemalloc's background thread returns unused pages to the system.
/// It is what the "memory per connection" figures in BENCHMARKS.md assume.
#[cfg(all(unix, not(target_env = "musl")))]
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// jemalloc's settings (`_RJEM_MALLOC_CONF` in the environment overrides
/// them): a background thread purges pages freed more than a second ago,
/// instead of allocating threads doing it on their way (10 s by default),
/// and at most 4 arenas, so that the runtime's worker threads do not each
/// keep a partly used arena of their own.
#[cfg(all(unix, not(target_env = "musl")))]
#[allow(non_upper_case_globals)]
#[unsafe(export_name = "_rjem_malloc_conf")]
pub static malloc_conf: &[u8] =
    b"background_thread:true,dirty_decay_ms:1000,muzzy_decay_ms:0,narenas:4\0";

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
