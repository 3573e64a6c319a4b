//! `meridian ctl`: one request over the control socket, the server's answer on stdout.

use super::{CommandError, EXIT_CONFIG, EXIT_RUNTIME};
use crate::cli::{CtlArgs, CtlCommand, OverrideCommand};
use crate::control::socket::{Request, SocketError, send};

/// Why `ctl` did not get an ok: 2 when the request was not made, 1 when the server refused it.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The override given on the command line is not one (exit 2).
    #[error("ctl override add: {0}")]
    Override(serde_json::Error),
    /// The server cannot be reached or did not answer (exit 2).
    #[error(transparent)]
    Socket(#[from] SocketError),
    /// The server answered, but not ok (exit 1); its message, unless the answer was printed
    /// whole (`--json`) or carries none.
    #[error("{}", .0.as_deref().unwrap_or("the server did not answer ok"))]
    Refused(Option<String>),
}

/// Sends the request and prints the answer: `result` as pretty JSON, or with `--json` the
/// whole response on one line.
pub fn run(args: CtlArgs) -> Result<(), Error> {
    let request = match args.command {
        CtlCommand::Reload => Request::Reload,
        CtlCommand::Status => Request::Status,
        CtlCommand::Override { command } => match command {
            OverrideCommand::List => Request::OverrideList,
            OverrideCommand::Remove { id } => Request::OverrideRemove { id },
            OverrideCommand::Add {
                zone,
                service,
                region,
                address,
                state,
                expires_in,
                reason,
            } => {
                let new = serde_json::json!({
                    "target": { "zone": zone, "service": service, "region": region, "address": address },
                    "state": state,
                    "expires_in_seconds": expires_in,
                    "reason": reason,
                });
                let new = serde_json::from_value(strip_nulls(new)).map_err(Error::Override)?;
                Request::OverrideAdd { new }
            }
        },
    };
    let response = send(&args.socket, &request)?;
    let ok = response.get("ok").and_then(|v| v.as_bool()) == Some(true);
    if args.json {
        println!("{response}");
    } else if let Some(result) = response.get("result") {
        // Not the command's failure: the server's answer is what matters, and still follows.
        match serde_json::to_string_pretty(result) {
            Ok(text) => println!("{text}"),
            Err(e) => eprintln!("meridian: {e}"),
        }
    }
    if ok {
        return Ok(());
    }
    let message = response.get("error").and_then(|v| v.as_str());
    Err(Error::Refused(
        message.filter(|_| !args.json).map(str::to_owned),
    ))
}

/// Drops `null` members (optional override target parts not given).
fn strip_nulls(value: serde_json::Value) -> serde_json::Value {
    match value {
        serde_json::Value::Object(map) => map
            .into_iter()
            .filter(|(_, v)| !v.is_null())
            .map(|(k, v)| (k, strip_nulls(v)))
            .collect(),
        other => other,
    }
}

impl CommandError for Error {
    fn exit_code(&self) -> u8 {
        match self {
            Self::Override(_) | Self::Socket(_) => EXIT_CONFIG,
            Self::Refused(_) => EXIT_RUNTIME,
        }
    }

    fn is_reported(&self) -> bool {
        matches!(self, Self::Refused(None))
    }
}
