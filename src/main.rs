//! The `meridian` binary: parse the command line, set up logging, run the subcommand, and turn
//! its error into an exit code (1 runtime, 2 bad configuration or flags).

use std::process::ExitCode;

use clap::Parser;
use meridian::cli::{
    CheckConfigArgs, Cli, Command, CtlArgs, CtlCommand, ExplainArgs, GeoipCommand, LogFormat,
    OverrideCommand,
};
use meridian::daemon::{ServeError, serve};

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Serve(args) => {
            init_logging(args.log_format);
            let Some(runtime) = runtime() else {
                return ExitCode::from(1);
            };
            match runtime.block_on(serve(*args)) {
                Ok(()) => ExitCode::SUCCESS,
                Err(
                    e @ (ServeError::Config(_)
                    | ServeError::Keys(_)
                    | ServeError::Token { .. }
                    | ServeError::Notify(_)
                    | ServeError::Tls(_)
                    | ServeError::Control(_)),
                ) => {
                    eprintln!("meridian: {e}");
                    ExitCode::from(2)
                }
                Err(e) => {
                    eprintln!("meridian: {e}");
                    ExitCode::from(1)
                }
            }
        }
        Command::Explain(args) => explain(args),
        Command::Probe(args) => {
            init_logging(args.log_format);
            let Some(runtime) = runtime() else {
                return ExitCode::from(1);
            };
            match runtime.block_on(meridian::prober::probe(args)) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("meridian: {e}");
                    ExitCode::from(2)
                }
            }
        }
        Command::LabBackend(args) => {
            init_logging(LogFormat::Text);
            let result = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .and_then(|rt| rt.block_on(meridian::lab::serve_backend(args.listen, args.name)));
            match result {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("meridian: lab-backend: {e}");
                    ExitCode::from(1)
                }
            }
        }
        Command::Geoip {
            command: GeoipCommand::Build { src, out },
        } => match meridian::geo::run_build(&src, &out) {
            Ok(summary) => {
                println!("{summary}");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("meridian: {e}");
                ExitCode::from(2)
            }
        },
        Command::CheckConfig(args) => check_config(args),
        Command::Ctl(args) => ctl(args),
    }
}

/// `meridian check-config`: what `serve` does before it opens a socket.
fn check_config(args: CheckConfigArgs) -> ExitCode {
    match meridian::control::check::check(&args.zones, &args.geoip, args.keys.as_deref()) {
        Ok(checked) => {
            // RFC 2181 §10.3 and friends: legal, but worth a look; `--strict` refuses them.
            let level = if args.strict { "error" } else { "warning" };
            for w in &checked.warnings {
                eprintln!("meridian: {level}: {w}");
            }
            if args.strict && !checked.warnings.is_empty() {
                return ExitCode::from(2);
            }
            print!("{}", checked.summary());
            if args.print {
                print!("{}", checked.print());
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("meridian: {e}");
            ExitCode::from(2)
        }
    }
}

/// `meridian ctl`: one request over the control socket. Exit 0 when the server says ok, 1
/// when it refused or failed, 2 when it cannot be reached.
fn ctl(args: CtlArgs) -> ExitCode {
    use meridian::control::socket::{Request, send};
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
                match serde_json::from_value(strip_nulls(new)) {
                    Ok(new) => Request::OverrideAdd { new },
                    Err(e) => {
                        eprintln!("meridian: ctl override add: {e}");
                        return ExitCode::from(2);
                    }
                }
            }
        },
    };
    let response = match send(&args.socket, &request) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("meridian: {e}");
            return ExitCode::from(2);
        }
    };
    let ok = response.get("ok").and_then(|v| v.as_bool()) == Some(true);
    if args.json {
        println!("{response}");
    } else {
        if let Some(result) = response.get("result") {
            match serde_json::to_string_pretty(result) {
                Ok(text) => println!("{text}"),
                Err(e) => eprintln!("meridian: {e}"),
            }
        }
        if let Some(error) = response.get("error").and_then(|v| v.as_str()) {
            eprintln!("meridian: {error}");
        }
    }
    if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
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

/// `meridian explain`: compile the zones offline (every endpoint up) and explain one query.
fn explain(args: ExplainArgs) -> ExitCode {
    use meridian::routing::explain::{Asker, explain, parse_ecs};
    let asker = match (&args.ecs, args.client) {
        (Some(text), _) => match parse_ecs(text) {
            Ok(net) => Asker::Subnet(net),
            Err(e) => {
                eprintln!("meridian: {e}");
                return ExitCode::from(2);
            }
        },
        (None, Some(ip)) => Asker::Address(ip),
        (None, None) => Asker::Address(std::net::IpAddr::from([127, 0, 0, 1])),
    };
    let table = match meridian::routing::publish::compile_offline(&args.zones, &args.geoip) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("meridian: {e}");
            return ExitCode::from(2);
        }
    };
    match explain(&table, &args.name, &args.qtype, asker) {
        Ok(x) if args.json => match serde_json::to_string_pretty(&x) {
            Ok(text) => {
                println!("{text}");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("meridian: {e}");
                ExitCode::from(1)
            }
        },
        Ok(x) => {
            print!("{x}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("meridian: {e}");
            ExitCode::from(2)
        }
    }
}

fn runtime() -> Option<tokio::runtime::Runtime> {
    match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => Some(rt),
        Err(e) => {
            eprintln!("meridian: cannot start the runtime: {e}");
            None
        }
    }
}

fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}
