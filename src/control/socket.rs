//! The local control channel: a UNIX stream socket (mode 0600) that `meridian ctl` talks to,
//! as `knotc`, `gdnsdctl` and `nsd-control` talk to their servers. Whoever can open the socket
//! is the operator: file permissions are the authentication, so it needs no token.
//!
//! Protocol: one JSON request per connection, on one line, and one JSON response line:
//! `{"command":"reload"}`, `{"command":"status"}`, `{"command":"override-list"}`,
//! `{"command":"override-add","override":{...}}` (the body of `POST /v1/overrides`),
//! `{"command":"override-remove","id":N}`. Responses are `{"ok":true,"result":...}` or
//! `{"ok":false,"error":"..."}`.
//!
//! Owns: the socket file (created at start-up, removed at exit) and the request parsing.
//! Never: changes state except through [`ControlPlane`]; reads more than [`MAX_REQUEST`]
//! bytes or waits longer than [`REQUEST_TIMEOUT`] for a request.

use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};

use super::ControlPlane;
use crate::health::overrides::NewOverride;

/// Largest request accepted, bytes.
pub const MAX_REQUEST: u64 = 64 * 1024;
/// Time a client has to send its request.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// Time `meridian ctl` waits for an answer (a reload of a large configuration takes a while).
pub const CLIENT_TIMEOUT: Duration = Duration::from_secs(60);

/// A request on the control socket.
#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "command", rename_all = "kebab-case", deny_unknown_fields)]
pub enum Request {
    /// Reload zones, GeoIP and keys.
    Reload,
    /// Generation, zones, health summary, overrides, last reload.
    Status,
    /// Active overrides.
    OverrideList,
    /// Add an override.
    OverrideAdd {
        /// What to force, for how long and why.
        #[serde(rename = "override")]
        new: NewOverride,
    },
    /// Remove an override.
    OverrideRemove {
        /// Its id.
        id: u64,
    },
}

/// Why the control socket could not be set up or used.
#[derive(Debug, thiserror::Error)]
pub enum SocketError {
    /// Another process answers on the socket.
    #[error("{}: another meridian is serving on this control socket", path.display())]
    InUse {
        /// The socket.
        path: PathBuf,
    },
    /// An I/O error on the socket.
    #[error("{}: {source}", path.display())]
    Io {
        /// The socket.
        path: PathBuf,
        /// The error.
        source: io::Error,
    },
    /// The server's answer is not a response.
    #[error("{}: unreadable response: {message}", path.display())]
    Protocol {
        /// The socket.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
}

/// The bound socket; the file is removed when this is dropped.
pub struct ControlSocket {
    listener: UnixListener,
    path: PathBuf,
}

impl Drop for ControlSocket {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Binds `path` with mode 0600. A stale socket file (nobody answers on it) is replaced; a live
/// one is an error, so two servers never share a control channel.
pub fn bind(path: &Path) -> Result<ControlSocket, SocketError> {
    let io_err = |source| SocketError::Io {
        path: path.to_path_buf(),
        source,
    };
    if path.exists() {
        if std::os::unix::net::UnixStream::connect(path).is_ok() {
            return Err(SocketError::InUse {
                path: path.to_path_buf(),
            });
        }
        std::fs::remove_file(path).map_err(io_err)?;
    }
    let listener = UnixListener::bind(path).map_err(io_err)?;
    // Before anyone can know the path exists in practice; the directory should be private too.
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).map_err(io_err)?;
    Ok(ControlSocket {
        listener,
        path: path.to_path_buf(),
    })
}

impl ControlSocket {
    /// The socket's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Serves requests until the process ends.
    pub async fn serve(self, control: Arc<ControlPlane>) {
        loop {
            match self.listener.accept().await {
                Ok((stream, _)) => {
                    let control = Arc::clone(&control);
                    tokio::spawn(async move {
                        if let Err(e) = handle(stream, control).await {
                            tracing::debug!(error = %e, "control connection failed");
                        }
                    });
                }
                Err(e) => {
                    tracing::warn!(error = %e, "control socket accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        }
    }
}

async fn handle(stream: UnixStream, control: Arc<ControlPlane>) -> io::Result<()> {
    let (read, mut write) = stream.into_split();
    let mut line = String::new();
    let mut reader = BufReader::new(read.take(MAX_REQUEST));
    let response = match tokio::time::timeout(REQUEST_TIMEOUT, reader.read_line(&mut line)).await {
        Err(_) => failure("no request within the time allowed"),
        Ok(Err(e)) => failure(&format!("unreadable request: {e}")),
        Ok(Ok(_)) if !line.ends_with('\n') => failure("the request must be one line"),
        Ok(Ok(_)) => match serde_json::from_str::<Request>(&line) {
            Err(e) => failure(&format!("bad request: {e}")),
            Ok(request) => {
                tracing::info!(request = ?request, "control request");
                match tokio::task::spawn_blocking(move || execute(&control, request)).await {
                    Ok(r) => r,
                    Err(e) => failure(&format!("request failed: {e}")),
                }
            }
        },
    };
    let mut text = response.to_string();
    text.push('\n');
    write.write_all(text.as_bytes()).await?;
    write.shutdown().await
}

fn failure(error: &str) -> serde_json::Value {
    serde_json::json!({ "ok": false, "error": error })
}

fn success(result: impl Serialize) -> serde_json::Value {
    match serde_json::to_value(result) {
        Ok(result) => serde_json::json!({ "ok": true, "result": result }),
        Err(e) => failure(&e.to_string()),
    }
}

/// Runs one request (blocking: a reload reads files).
fn execute(control: &ControlPlane, request: Request) -> serde_json::Value {
    match request {
        Request::Reload => {
            let report = control.reload();
            if report.ok {
                success(report)
            } else {
                serde_json::json!({ "ok": false, "error": "reload rejected some files", "result": report })
            }
        }
        Request::Status => success(control.status()),
        Request::OverrideList => success(control.overrides()),
        Request::OverrideAdd { new } => match control.set_override(new) {
            Ok(o) => success(o),
            Err(e) => failure(&e.to_string()),
        },
        Request::OverrideRemove { id } => {
            if control.remove_override(id) {
                success(id)
            } else {
                failure(&format!("no override {id}"))
            }
        }
    }
}

/// Sends one request to the server at `path` and returns its response (blocking; for
/// `meridian ctl`).
pub fn send(path: &Path, request: &Request) -> Result<serde_json::Value, SocketError> {
    use std::io::{BufRead, Write};
    let io_err = |source| SocketError::Io {
        path: path.to_path_buf(),
        source,
    };
    let mut stream = std::os::unix::net::UnixStream::connect(path).map_err(io_err)?;
    stream
        .set_read_timeout(Some(CLIENT_TIMEOUT))
        .map_err(io_err)?;
    let mut line = serde_json::to_string(request).map_err(|e| SocketError::Protocol {
        path: path.to_path_buf(),
        message: e.to_string(),
    })?;
    line.push('\n');
    stream.write_all(line.as_bytes()).map_err(io_err)?;
    let mut answer = String::new();
    std::io::BufReader::new(stream)
        .read_line(&mut answer)
        .map_err(io_err)?;
    serde_json::from_str(&answer).map_err(|e| SocketError::Protocol {
        path: path.to_path_buf(),
        message: e.to_string(),
    })
}
