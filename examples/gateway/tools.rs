//! The local tools this gateway offers: `read_file`, `list_dir` and
//! `run_command`, all confined to one root directory, where `read_file` and
//! `list_dir` never touch a secret (see [`crate::secrets`]).
//!
//! A tool never fails the process: bad arguments, missing files and paths
//! outside the root become an [`Output`] with `is_error` set, worded for the
//! model to read and correct.

use std::io::ErrorKind;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::process::Command;

use crate::secrets::{is_secret, is_secret_name};

/// `read_file` returns this much unless `max_bytes` says otherwise.
const DEFAULT_READ_BYTES: u64 = 256 * 1024;
/// The most `read_file` returns, whatever `max_bytes` asks for.
const MAX_READ_BYTES: u64 = 512 * 1024;
/// The most `list_dir` lists.
const MAX_DIR_ENTRIES: usize = 5_000;
/// `run_command` keeps this much of stdout and of stderr each.
const MAX_STREAM_BYTES: usize = 256 * 1024;
const DEFAULT_TIMEOUT_MS: u64 = 30_000;
const MAX_TIMEOUT_MS: u64 = 10 * 60_000;
/// How long a finished command's output pipes may stay open (held by a
/// process it left in the background) before its process group is killed.
const PIPE_GRACE: Duration = Duration::from_secs(1);

/// What a tool call answers: `output` is a string or any JSON value.
#[derive(Debug)]
pub struct Output {
    pub output: Value,
    pub is_error: bool,
}

impl Output {
    fn ok(output: impl Into<Value>) -> Self {
        Self {
            output: output.into(),
            is_error: false,
        }
    }

    fn error(message: impl Into<String>) -> Self {
        Self {
            output: Value::String(message.into()),
            is_error: true,
        }
    }
}

/// The tools, confined to `root` (canonical).
pub struct Tools {
    root: PathBuf,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ReadFile {
    path: String,
    max_bytes: Option<u64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ListDir {
    path: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RunCommand {
    command: String,
    timeout_ms: Option<u64>,
}

impl Tools {
    /// Tools working in `root`, which must be an existing directory.
    pub fn new(root: &Path) -> anyhow::Result<Self> {
        let root = std::fs::canonicalize(root)
            .map_err(|e| anyhow::anyhow!("--root {}: {e}", root.display()))?;
        anyhow::ensure!(root.is_dir(), "--root {}: not a directory", root.display());
        Ok(Self { root })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The `tools` of `gateway:register`.
    pub fn definitions(&self) -> Value {
        json!([
            {
                "name": "read_file",
                "description": format!(
                    "Read a text file on the user's machine and return its content (decoded as \
                     UTF-8; invalid bytes become U+FFFD). Paths are relative to the workspace \
                     root {root} and cannot leave it. Long files are cut at max_bytes and the \
                     output says so. Secrets (.env, keys, .git/…) are refused.",
                    root = self.root.display()
                ),
                "parameters": {
                    "type": "object",
                    "properties": {
                        "path": {
                            "type": "string",
                            "minLength": 1,
                            "description": "File path relative to the workspace root, e.g. `src/main.rs`."
                        },
                        "max_bytes": {
                            "type": "integer",
                            "minimum": 1,
                            "maximum": MAX_READ_BYTES,
                            "description": format!("Read at most this many bytes (default {DEFAULT_READ_BYTES}).")
                        }
                    },
                    "required": ["path"],
                    "additionalProperties": false
                }
            },
            {
                "name": "list_dir",
                "description": "List a directory of the workspace on the user's machine: one \
                                entry per line, sorted, directories end with `/`; secrets \
                                (.env, keys, .git/…) are left out. Paths are relative to the \
                                workspace root and cannot leave it.",
                "parameters": {
                    "type": "object",
                    "properties": {
                        "path": {
                            "type": "string",
                            "description": "Directory relative to the workspace root (default `.`, the root itself)."
                        }
                    },
                    "additionalProperties": false
                }
            },
            {
                "name": "run_command",
                "description": format!(
                    "Run a shell command (`sh -c`) on the user's machine, in the workspace root. \
                     Returns JSON {{exit_code, stdout, stderr, timed_out}}; each stream is cut \
                     after {MAX_STREAM_BYTES} bytes. The command is killed after timeout_ms \
                     (default {DEFAULT_TIMEOUT_MS}). stdin is empty: do not run interactive \
                     programs. The user approves each call."
                ),
                "parameters": {
                    "type": "object",
                    "properties": {
                        "command": {
                            "type": "string",
                            "minLength": 1,
                            "description": "The command line, e.g. `cargo test 2>&1 | tail -50`."
                        },
                        "timeout_ms": {
                            "type": "integer",
                            "minimum": 1,
                            "maximum": MAX_TIMEOUT_MS,
                            "description": format!("Kill the command after this many milliseconds (default {DEFAULT_TIMEOUT_MS}).")
                        }
                    },
                    "required": ["command"],
                    "additionalProperties": false
                },
                "requires_approval": true
            }
        ])
    }

    /// Runs the tool `name`; never panics on what the server sent.
    pub async fn call(&self, name: &str, arguments: Value) -> Output {
        // A tool without required arguments may be called with none.
        let arguments = if arguments.is_null() {
            json!({})
        } else {
            arguments
        };
        let result = async {
            match name {
                "read_file" => self.read_file(parse(name, arguments)?).await,
                "list_dir" => self.list_dir(parse(name, arguments)?).await,
                "run_command" => self.run_command(parse(name, arguments)?).await,
                _ => Err(format!(
                    "unknown tool {name:?} (this gateway has read_file, list_dir, run_command)"
                )),
            }
        };
        result.await.unwrap_or_else(Output::error)
    }

    /// `path` resolved against the root, following symlinks; refused when
    /// the result is outside the root, or when the path or what it resolves
    /// to is a secret.
    async fn resolve(&self, path: &str) -> Result<PathBuf, String> {
        let refused = || {
            format!(
                "{path}: refused: secrets (.env, keys, .git/, the dev JWT secret…) \
                 are never read or listed by this gateway"
            )
        };
        if is_secret(Path::new(path)) {
            return Err(refused());
        }
        let real = tokio::fs::canonicalize(self.root.join(path))
            .await
            .map_err(|e| match e.kind() {
                ErrorKind::NotFound => format!("{path}: no such file or directory"),
                _ => format!("{path}: {e}"),
            })?;
        let Ok(inside) = real.strip_prefix(&self.root) else {
            return Err(format!(
                "{path}: outside the workspace root {}",
                self.root.display()
            ));
        };
        if is_secret(inside) {
            return Err(refused());
        }
        Ok(real)
    }

    async fn read_file(&self, args: ReadFile) -> Result<Output, String> {
        let path = self.resolve(&args.path).await?;
        let limit = args
            .max_bytes
            .unwrap_or(DEFAULT_READ_BYTES)
            .clamp(1, MAX_READ_BYTES);
        let failed = |e: std::io::Error| format!("{}: {e}", args.path);
        let file = tokio::fs::File::open(&path).await.map_err(failed)?;
        let meta = file.metadata().await.map_err(failed)?;
        if meta.is_dir() {
            return Err(format!("{}: is a directory (use list_dir)", args.path));
        }
        let size = meta.len();
        let mut bytes = Vec::new();
        file.take(limit)
            .read_to_end(&mut bytes)
            .await
            .map_err(failed)?;
        let mut text = String::from_utf8_lossy(&bytes).into_owned();
        if size > bytes.len() as u64 {
            text.push_str(&format!(
                "\n[truncated: showing the first {} of {size} bytes]",
                bytes.len()
            ));
        }
        Ok(Output::ok(text))
    }

    async fn list_dir(&self, args: ListDir) -> Result<Output, String> {
        let shown = args.path.unwrap_or_else(|| ".".to_owned());
        let failed = |e: std::io::Error| format!("{shown}: {e}");
        let mut entries = tokio::fs::read_dir(self.resolve(&shown).await?)
            .await
            .map_err(failed)?;
        let mut names = Vec::new();
        let mut hidden = 0;
        while let Some(entry) = entries.next_entry().await.map_err(failed)? {
            let mut name = entry.file_name().to_string_lossy().into_owned();
            if is_secret_name(&name) {
                hidden += 1;
                continue;
            }
            // Follows symlinks: a link to a directory lists as one.
            if tokio::fs::metadata(entry.path())
                .await
                .is_ok_and(|m| m.is_dir())
            {
                name.push('/');
            }
            names.push(name);
        }
        if names.is_empty() && hidden == 0 {
            return Ok(Output::ok(format!("{shown}: empty directory")));
        }
        names.sort();
        let total = names.len();
        names.truncate(MAX_DIR_ENTRIES);
        if total > MAX_DIR_ENTRIES {
            names.push(format!(
                "[truncated: {MAX_DIR_ENTRIES} of {total} entries shown]"
            ));
        }
        if hidden > 0 {
            names.push(format!("[{hidden} secret entries not shown]"));
        }
        Ok(Output::ok(names.join("\n")))
    }

    async fn run_command(&self, args: RunCommand) -> Result<Output, String> {
        let timeout = Duration::from_millis(
            args.timeout_ms
                .unwrap_or(DEFAULT_TIMEOUT_MS)
                .clamp(1, MAX_TIMEOUT_MS),
        );
        let mut child = Command::new("sh")
            .arg("-c")
            .arg(&args.command)
            .current_dir(&self.root)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            // Its own process group, so that a kill reaches what it started.
            .process_group(0)
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| format!("cannot start `sh -c`: {e}"))?;
        let group = child
            .id()
            .and_then(|id| i32::try_from(id).ok())
            .map(Pid::from_raw);
        let kill_group = || {
            if let Some(group) = group {
                // Already gone is fine.
                let _ = killpg(group, Signal::SIGKILL);
            }
        };
        let stdout = tokio::spawn(read_capped(child.stdout.take()));
        let stderr = tokio::spawn(read_capped(child.stderr.take()));
        let abort = [stdout.abort_handle(), stderr.abort_handle()];

        let waited = tokio::time::timeout(timeout, child.wait()).await;
        let timed_out = waited.is_err();
        if timed_out {
            kill_group();
        }
        let status = match waited {
            Ok(status) => status,
            Err(_) => child.wait().await,
        };
        // Processes left in the background may hold the pipes open: give
        // them a moment, then end the group so the readers see end of file.
        let readers = async { (stdout.await.ok(), stderr.await.ok()) };
        tokio::pin!(readers);
        let (stdout, stderr) = match tokio::time::timeout(PIPE_GRACE, &mut readers).await {
            Ok(streams) => streams,
            Err(_) => {
                kill_group();
                let streams = tokio::time::timeout(PIPE_GRACE, &mut readers).await;
                abort.iter().for_each(|a| a.abort());
                streams.unwrap_or((None, None))
            }
        };
        let status = status.map_err(|e| format!("waiting for the command failed: {e}"))?;

        let exit_code = status.code();
        Ok(Output {
            output: json!({
                "exit_code": exit_code,
                "stdout": describe(stdout),
                "stderr": describe(stderr),
                "timed_out": timed_out,
            }),
            is_error: timed_out || exit_code != Some(0),
        })
    }
}

fn parse<T: for<'de> Deserialize<'de>>(tool: &str, arguments: Value) -> Result<T, String> {
    serde_json::from_value(arguments).map_err(|e| format!("invalid arguments for {tool}: {e}"))
}

/// Reads a stream to its end, keeping the first [`MAX_STREAM_BYTES`].
/// Returns the text kept and the total length.
async fn read_capped(stream: Option<impl AsyncRead + Unpin>) -> (String, u64) {
    let Some(mut stream) = stream else {
        return (String::new(), 0);
    };
    let mut kept = Vec::new();
    let mut total = 0u64;
    let mut buf = vec![0u8; 16 * 1024];
    // A read error ends the stream like end of file would.
    while let Ok(n) = stream.read(&mut buf).await {
        if n == 0 {
            break;
        }
        total += n as u64;
        let room = MAX_STREAM_BYTES.saturating_sub(kept.len());
        kept.extend_from_slice(&buf[..n.min(room)]);
    }
    (String::from_utf8_lossy(&kept).into_owned(), total)
}

/// The text a reader kept, with a note when it was cut.
fn describe(stream: Option<(String, u64)>) -> String {
    let Some((mut text, total)) = stream else {
        return "[output unavailable: the stream did not close]".to_owned();
    };
    if total > MAX_STREAM_BYTES as u64 {
        text.push_str(&format!(
            "\n[truncated: showing the first {MAX_STREAM_BYTES} of {total} bytes]"
        ));
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A root holding a project file, a `.env`, a `.git/` and a link to the
    /// `.env` under an innocent name.
    fn workspace() -> (tempfile::TempDir, Tools) {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        std::fs::write(root.join("README.md"), "hello").unwrap();
        std::fs::write(root.join(".env"), "API_KEY=secret").unwrap();
        std::fs::create_dir(root.join(".git")).unwrap();
        std::fs::write(root.join(".git/config"), "[credential]").unwrap();
        std::os::unix::fs::symlink(root.join(".env"), root.join("notes.txt")).unwrap();
        let tools = Tools::new(root).unwrap();
        (dir, tools)
    }

    #[tokio::test]
    async fn read_file_refuses_secrets_and_links_to_them() {
        let (_dir, tools) = workspace();
        for path in [".env", ".git/config", "notes.txt", "./.env"] {
            let out = tools.call("read_file", json!({ "path": path })).await;
            assert!(out.is_error, "{path}: {:?}", out.output);
            let text = out.output.as_str().unwrap();
            assert!(text.contains("refused"), "{path}: {text}");
            assert!(!text.contains("API_KEY"), "{path}: {text}");
        }
        let out = tools
            .call("read_file", json!({ "path": "README.md" }))
            .await;
        assert_eq!(out.output, "hello");
    }

    #[tokio::test]
    async fn list_dir_leaves_secrets_out_and_refuses_to_list_inside_them() {
        let (_dir, tools) = workspace();
        let out = tools.call("list_dir", json!({})).await;
        assert!(!out.is_error);
        assert_eq!(
            out.output,
            "README.md\nnotes.txt\n[2 secret entries not shown]"
        );
        let out = tools.call("list_dir", json!({ "path": ".git" })).await;
        assert!(out.is_error, "{:?}", out.output);
    }
}
