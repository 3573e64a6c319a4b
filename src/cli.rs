//! Command-line interface: the subcommands and their flags (clap derive).

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Parser, Subcommand, ValueEnum};

use crate::dns::encrypted::{
    DEFAULT_DOH_PORT, DEFAULT_DOT_PORT, DEFAULT_MAX_TLS_CONNECTIONS,
    DEFAULT_MAX_TLS_CONNECTIONS_PER_CLIENT, DEFAULT_TLS_IDLE_TIMEOUT, parse_listen,
};
use crate::dns::handler::{CLASSIC_UDP_SIZE, DEFAULT_MAX_UDP_SIZE};
use crate::dns::rrl::{DEFAULT_RRL_SLIP, DEFAULT_RRL_TABLE_SIZE, MAX_RRL_RATE, MAX_RRL_SLIP};
use crate::dns::server::{
    DEFAULT_DRAIN_TIMEOUT, DEFAULT_MAX_TCP_CONNECTIONS, DEFAULT_MAX_TCP_CONNECTIONS_PER_CLIENT,
    DEFAULT_TCP_IDLE_TIMEOUT,
};
use crate::etcd::{EtcdOptions, Layout, OptionsError};
use crate::health::aggregate::DEFAULT_GRACE;
use crate::health::overrides::DEFAULT_OVERRIDE_SECONDS;
use crate::probe::runner::DEFAULT_MAX_IN_FLIGHT;
use crate::routing::counters::AnswersBy;

/// Where every subcommand looks for zone files unless told (`--zones`).
pub const DEFAULT_ZONES_DIR: &str = "zones";
/// The GeoIP database every subcommand opens unless told (`--geoip`): the sample shipped in
/// the repository.
pub const DEFAULT_GEOIP: &str = "geoip/meridian-sample.txt";

/// The version `--version` prints: the crate version and the commit it was built from
/// (`build.rs`: `MERIDIAN_COMMIT`, else `git describe`, else `unknown`).
pub const VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (",
    env!("MERIDIAN_COMMIT"),
    ")"
);

/// Meridian: a DNS traffic manager and authoritative nameserver.
#[derive(Debug, Parser)]
#[command(name = "meridian", version = VERSION, about)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve DNS and the HTTP API.
    Serve(Box<ServeArgs>),
    /// Check the configuration as `serve` would start it (zones, GeoIP, compile, keys),
    /// without opening sockets; one line per zone.
    CheckConfig(CheckConfigArgs),
    /// Talk to a running server over its control socket (reload, status, overrides).
    Ctl(CtlArgs),
    /// Run a prober: check endpoints and report to nameservers.
    Probe(ProbeArgs),
    /// Explain, step by step, what a client gets for a name and why (offline).
    Explain(ExplainArgs),
    /// A tiny HTTP server answering its name (the compose lab's sample backends).
    #[command(hide = true)]
    LabBackend(LabBackendArgs),
    /// Zones in etcd (distributed mode): push a directory, pull it back.
    Config {
        /// What to do.
        #[command(subcommand)]
        command: ConfigCommand,
    },
    /// GeoIP database tools.
    Geoip {
        /// What to do.
        #[command(subcommand)]
        command: GeoipCommand,
    },
    /// DNSSEC keys: generate a key pair, print DS records for the parent.
    Dnssec {
        /// What to do.
        #[command(subcommand)]
        command: DnssecCommand,
    },
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell) to stdout.
    Completions {
        /// The shell.
        shell: clap_complete::Shell,
    },
    /// Write man pages (meridian.1 and one per subcommand, e.g. meridian-serve.1) into a
    /// directory.
    Man {
        /// Directory to write the pages into (created if missing).
        #[arg(long, short, default_value = ".")]
        out: PathBuf,
    },
}

/// `meridian dnssec ...`.
#[derive(Debug, Subcommand)]
pub enum DnssecCommand {
    /// Write a key pair in BIND's format (`K<zone>+<alg>+<tag>.key` and `.private`) and
    /// print its file stem.
    Keygen {
        /// The zone the key is for, e.g. gslb.example.com.
        #[arg(long)]
        zone: String,
        /// Algorithm: ecdsap256 (13, the default) or ed25519 (15).
        #[arg(long, default_value = "ecdsap256")]
        algorithm: String,
        /// Make a key-signing key (SEP flag, DNSKEY flags 257); a lone KSK signs everything
        /// (a CSK).
        #[arg(long)]
        ksk: bool,
        /// Directory to write the files into.
        #[arg(long, default_value = ".")]
        dir: PathBuf,
    },
    /// Print the DS records (SHA-256) for the parent zone: of a signed zone's key-signing
    /// keys (every one configured, published yet or not), or of the given `.key` files.
    Ds {
        /// A zone origin (looked up in --zones), or `.key` files.
        #[arg(required = true)]
        zone: Vec<String>,
        /// Directory of zone files.
        #[arg(long, default_value = DEFAULT_ZONES_DIR)]
        zones: PathBuf,
    },
}

impl Command {
    /// The log format of a subcommand that logs (`serve`, `probe`, `lab-backend`); the others
    /// only print their result and errors.
    pub fn log_format(&self) -> Option<LogFormat> {
        match self {
            Self::Serve(args) => Some(args.log_format),
            Self::Probe(args) => Some(args.log_format),
            Self::LabBackend(_) => Some(LogFormat::Text),
            Self::CheckConfig(_)
            | Self::Ctl(_)
            | Self::Explain(_)
            | Self::Geoip { .. }
            | Self::Config { .. }
            | Self::Dnssec { .. }
            | Self::Completions { .. }
            | Self::Man { .. } => None,
        }
    }
}

/// `meridian geoip ...`.
#[derive(Debug, Subcommand)]
pub enum GeoipCommand {
    /// Build a MaxMind DB file from Meridian's text source format.
    Build {
        /// The text source (see geoip/README.md).
        src: PathBuf,
        /// Where to write the .mmdb file.
        #[arg(short, long)]
        out: PathBuf,
    },
}

/// `meridian explain`.
#[derive(Debug, clap::Args)]
pub struct ExplainArgs {
    /// The name to explain, e.g. www.gslb.example.test.
    pub name: String,
    /// The resolver's address (no ECS).
    #[arg(long, conflicts_with = "ecs")]
    pub client: Option<std::net::IpAddr>,
    /// An EDNS Client Subnet prefix, e.g. 2.2.3.0/24.
    #[arg(long)]
    pub ecs: Option<String>,
    /// Record type.
    #[arg(long = "type", default_value = "A")]
    pub qtype: String,
    /// Directory of zone files.
    #[arg(long, default_value = DEFAULT_ZONES_DIR)]
    pub zones: PathBuf,
    /// GeoIP database.
    #[arg(long, default_value = DEFAULT_GEOIP)]
    pub geoip: PathBuf,
    /// Print JSON instead of text.
    #[arg(long)]
    pub json: bool,
}

/// Log output format.
#[derive(Clone, Copy, Debug, Default, ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}

/// `meridian serve`.
#[derive(Debug, clap::Args)]
pub struct ServeArgs {
    /// Directory of zone files (`*.toml`).
    #[arg(long, default_value = DEFAULT_ZONES_DIR)]
    pub zones: PathBuf,
    /// Address for DNS over UDP and TCP (repeatable). IPv6 addresses are IPv6-only: list
    /// `0.0.0.0:53` beside `[::]:53` to serve both families.
    #[arg(long = "dns-listen", default_value = "127.0.0.1:5300")]
    pub dns_listen: Vec<SocketAddr>,
    /// Address for the HTTP API.
    #[arg(long = "api-listen", default_value = "127.0.0.1:5380")]
    pub api_listen: SocketAddr,
    /// GeoIP database: a MaxMind DB (.mmdb, GeoIP2/GeoLite2 or ip-location-db schema) or a
    /// Meridian text source (built in memory).
    #[arg(long, default_value = DEFAULT_GEOIP)]
    pub geoip: PathBuf,
    /// Log format.
    #[arg(long = "log-format", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
    /// Largest UDP response we send, bytes (512-65535).
    #[arg(long = "max-udp-size", default_value_t = DEFAULT_MAX_UDP_SIZE, value_parser = clap::value_parser!(u16).range(i64::from(CLASSIC_UDP_SIZE)..))]
    pub max_udp_size: u16,
    /// Seconds an idle TCP connection is kept open.
    #[arg(long = "tcp-idle-timeout", default_value_t = DEFAULT_TCP_IDLE_TIMEOUT.as_secs(), value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub tcp_idle_timeout: u64,
    /// Most TCP connections open at once.
    #[arg(long = "max-tcp-connections", default_value_t = DEFAULT_MAX_TCP_CONNECTIONS)]
    pub max_tcp_connections: usize,
    /// Most TCP connections open at once from one client host (IPv4 address, IPv6 /64); at
    /// the cap, the client's own longest-idle connection is closed for a new one.
    #[arg(long = "max-tcp-connections-per-client", default_value_t = DEFAULT_MAX_TCP_CONNECTIONS_PER_CLIENT as u64, value_parser = clap::value_parser!(u64).range(1..))]
    pub max_tcp_connections_per_client: u64,
    /// Seconds a TCP connection may stay open in total, however busy (0 = no limit, the
    /// default: busy connections stay open, as in NSD and Knot; idle ones are closed).
    #[arg(long = "tcp-session-timeout", default_value_t = 0, value_parser = clap::value_parser!(u64).range(0..=86_400))]
    pub tcp_session_timeout: u64,
    /// Most queries answered on one TCP connection before it is closed (0 = no cap, the
    /// default, as in NSD and Knot).
    #[arg(long = "max-tcp-queries", default_value_t = 0)]
    pub max_tcp_queries: u64,
    /// UDP worker threads per listening address, each with its own socket (SO_REUSEPORT)
    /// taking batches of datagrams (0 = one per CPU).
    #[arg(long = "udp-workers", default_value_t = 0)]
    pub udp_workers: usize,
    /// Response rate limiting: UDP responses per second per bucket (client /24 or /56,
    /// response class and name, as Knot's `rate-limit`), bursts of four seconds' worth; off
    /// unless given. TCP and the HTTP API are never limited.
    #[arg(long = "rrl-rate", value_parser = clap::value_parser!(u32).range(1..=i64::from(MAX_RRL_RATE)))]
    pub rrl_rate: Option<u32>,
    /// Every Nth rate-limited response is sent truncated (TC=1) so real clients retry over
    /// TCP; 0 drops them all.
    #[arg(long = "rrl-slip", default_value_t = DEFAULT_RRL_SLIP, value_parser = clap::value_parser!(u32).range(0..=i64::from(MAX_RRL_SLIP)))]
    pub rrl_slip: u32,
    /// Buckets in the RRL table (fixed memory: 8 bytes each).
    #[arg(long = "rrl-table-size", default_value_t = DEFAULT_RRL_TABLE_SIZE as u64, value_parser = clap::value_parser!(u64).range(1..=100_000_000))]
    pub rrl_table_size: u64,
    /// Serve the HTTP API over TLS with this PEM certificate chain (needs --api-tls-key).
    #[arg(long = "api-tls-cert", requires = "api_tls_key")]
    pub api_tls_cert: Option<PathBuf>,
    /// The PEM private key of --api-tls-cert.
    #[arg(long = "api-tls-key", requires = "api_tls_cert")]
    pub api_tls_key: Option<PathBuf>,
    /// Answer CH TXT id.server / hostname.bind with this text (default: REFUSED).
    #[arg(long = "server-id")]
    pub server_id: Option<String>,
    /// Answer CH TXT version.bind / version.server with this text (default: REFUSED).
    #[arg(long = "server-version")]
    pub server_version: Option<String>,
    /// Allow zone transfers (AXFR/IXFR over TCP) from this prefix (repeatable; default none).
    #[arg(long = "allow-transfer")]
    pub allow_transfer: Vec<ipnet::IpNet>,
    /// Do not run the embedded prober (dedicated probers report instead).
    #[arg(long = "no-local-probe")]
    pub no_local_probe: bool,
    /// A directory whose programs the embedded prober's exec checks may run (repeatable);
    /// without it, zones with exec checks leave the embedded prober on its previous targets.
    #[arg(long = "allow-exec", value_name = "DIR")]
    pub allow_exec: Vec<PathBuf>,
    /// Prober keys accepted on POST /v1/reports (lines `key_id prober_id secret_hex`).
    #[arg(long = "keys")]
    pub keys: Option<PathBuf>,
    /// File holding the admin token for /v1/overrides and /v1/reload.
    #[arg(long = "admin-token-file")]
    pub admin_token_file: Option<PathBuf>,
    /// Seconds an endpoint keeps its last known state when no prober reports on it.
    #[arg(long = "health-grace", default_value_t = DEFAULT_GRACE.as_secs())]
    pub health_grace: u64,
    /// UNIX socket for `meridian ctl` (created mode 0600; off unless given).
    #[arg(long = "control-socket")]
    pub control_socket: Option<PathBuf>,
    /// Do not reload when a zone file, records file, the GeoIP database or the key file
    /// changes on disk.
    #[arg(long = "no-watch")]
    pub no_watch: bool,
    /// How `meridian_service_answers_total` is broken down: `service` (one series per service,
    /// region and outcome) or `zone` (summed over each zone's services, `service=""`), for
    /// catalogues of hundreds of thousands of services.
    #[arg(long = "answer-metrics", value_enum, default_value_t = AnswersBy::Service)]
    pub answer_metrics: AnswersBy,
    /// How endpoint health is broken down: `endpoint` (`meridian_endpoint_{up,serving,weight}`
    /// and every prober's vote, per endpoint) or `service` (`meridian_service_endpoints`:
    /// endpoints up, down and serving per service and region), for catalogues of hundreds of
    /// thousands of endpoints.
    #[arg(long = "endpoint-metrics", value_enum, default_value_t = crate::health::export::EndpointSeries::Endpoint)]
    pub endpoint_metrics: crate::health::export::EndpointSeries,
    /// Leave zero-valued series out of `meridian_zone_queries_total` and
    /// `meridian_service_answers_total` (by default every zone and service has all of its
    /// series from the start).
    #[arg(long = "metrics-skip-zero")]
    pub metrics_skip_zero: bool,
    /// Milliseconds between samples of the status page's charts (`/v1/history`; default
    /// 10 s). Hidden: for the integration tests, which cannot wait 10 s per sample.
    #[arg(long = "history-interval-ms", hide = true, value_parser = clap::value_parser!(u64).range(100..))]
    pub history_interval_ms: Option<u64>,
    /// TEST ONLY, never in production: flip one octet of every DNSSEC signature (DNSKEY
    /// RRsets excepted), so validating resolvers must reject the answers (SERVFAIL). Hidden,
    /// and only in debug builds (the tests'): a release binary does not have it.
    #[cfg(debug_assertions)]
    #[arg(long = "dnssec-corrupt-signatures-for-tests", hide = true)]
    pub dnssec_corrupt_signatures_for_tests: bool,
    /// On SIGTERM/SIGINT, seconds to finish TCP queries and API requests in flight before
    /// exiting.
    #[arg(long = "drain-timeout", default_value_t = DEFAULT_DRAIN_TIMEOUT.as_secs(), value_parser = clap::value_parser!(u64).range(0..=3600))]
    pub drain_timeout: u64,
    /// POST a JSON event to this URL on every endpoint health change (repeatable).
    #[arg(long = "notify-url")]
    pub notify_url: Vec<String>,
    /// DNS over TLS, HTTPS and QUIC.
    #[command(flatten)]
    pub encrypted: EncryptedArgs,
    /// Distributed mode: zones and prober votes come from etcd (`--zones` is not read).
    #[command(flatten)]
    pub etcd: EtcdArgs,
    /// Directory for state kept across restarts: with --etcd, the last configuration
    /// revision that loaded without error, served when etcd is unreachable at start-up.
    #[arg(long = "state-dir")]
    pub state_dir: Option<PathBuf>,
    /// Send only webhook events at least this urgent: P1 (a service answers from its
    /// fallback), P2 (a region has no serving endpoint), P3 (an endpoint down), P4 (all,
    /// recoveries and completed drains too).
    #[arg(long = "webhook-min-severity", default_value = "P4")]
    pub webhook_min_severity: crate::health::aggregate::Severity,
}

/// `meridian serve`'s encrypted transports (`dns::encrypted`).
#[derive(Debug, Clone, clap::Args)]
pub struct EncryptedArgs {
    /// Serve DNS over TLS (RFC 7858) on this address (repeatable; port 853 unless given).
    /// Needs --tls-cert and --tls-key.
    #[arg(long = "dot-listen", value_parser = parse_dot_listen)]
    pub dot_listen: Vec<SocketAddr>,
    /// Serve DNS over HTTPS (RFC 8484: GET and POST on /dns-query, HTTP/2 and HTTP/1.1) on
    /// this address (repeatable; port 443 unless given). Needs --tls-cert and --tls-key.
    #[arg(long = "doh-listen", value_parser = parse_doh_listen)]
    pub doh_listen: Vec<SocketAddr>,
    /// Serve DNS over QUIC (RFC 9250) on this UDP address (repeatable; port 853 unless
    /// given). Needs --tls-cert and --tls-key.
    #[arg(long = "doq-listen", value_parser = parse_dot_listen)]
    pub doq_listen: Vec<SocketAddr>,
    /// PEM certificate chain of the DoT/DoH/DoQ listeners, re-read on every reload (a bad
    /// one keeps the previous certificate serving).
    #[arg(long = "tls-cert", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// The PEM private key of --tls-cert, re-read with it.
    #[arg(long = "tls-key", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// Seconds an encrypted connection with nothing in flight is kept open.
    #[arg(long = "tls-idle-timeout", default_value_t = DEFAULT_TLS_IDLE_TIMEOUT.as_secs(), value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub tls_idle_timeout: u64,
    /// Most connections open at once on each DoT, DoH or DoQ listener.
    #[arg(long = "max-tls-connections", default_value_t = DEFAULT_MAX_TLS_CONNECTIONS as u64, value_parser = clap::value_parser!(u64).range(1..))]
    pub max_tls_connections: u64,
    /// Most connections open at once on each DoT, DoH or DoQ listener from one client host
    /// (IPv4 address, IPv6 /64); more are refused.
    #[arg(long = "max-tls-connections-per-client", default_value_t = DEFAULT_MAX_TLS_CONNECTIONS_PER_CLIENT as u64, value_parser = clap::value_parser!(u64).range(1..))]
    pub max_tls_connections_per_client: u64,
}

impl EncryptedArgs {
    /// The listeners' configuration.
    pub fn to_config(&self) -> crate::dns::encrypted::EncryptedConfig {
        crate::dns::encrypted::EncryptedConfig {
            dot: self.dot_listen.clone(),
            doh: self.doh_listen.clone(),
            doq: self.doq_listen.clone(),
            cert: self.tls_cert.clone(),
            key: self.tls_key.clone(),
            limits: crate::dns::encrypted::Limits {
                idle_timeout: std::time::Duration::from_secs(self.tls_idle_timeout),
                max_connections: usize::try_from(self.max_tls_connections).unwrap_or(usize::MAX),
                max_connections_per_client: usize::try_from(self.max_tls_connections_per_client)
                    .unwrap_or(usize::MAX),
                ..Default::default()
            },
        }
    }
}

fn parse_dot_listen(s: &str) -> Result<SocketAddr, String> {
    parse_listen(s, DEFAULT_DOT_PORT)
}

fn parse_doh_listen(s: &str) -> Result<SocketAddr, String> {
    parse_listen(s, DEFAULT_DOH_PORT)
}

/// How to reach etcd (distributed mode; README "Running at scale").
#[derive(Clone, Debug, Default, clap::Args)]
pub struct EtcdArgs {
    /// etcd client URLs, comma-separated or repeated (e.g. http://10.0.0.1:2379); off
    /// unless given.
    #[arg(long = "etcd", value_delimiter = ',')]
    pub etcd: Vec<String>,
    /// Key prefix of this Meridian deployment in etcd.
    #[arg(long = "etcd-prefix", default_value = crate::etcd::DEFAULT_PREFIX)]
    pub etcd_prefix: String,
    /// PEM CA bundle that signed etcd's server certificates (default: the system roots).
    #[arg(long = "etcd-cacert")]
    pub etcd_cacert: Option<PathBuf>,
    /// PEM client certificate for etcd (with --etcd-key).
    #[arg(long = "etcd-cert", requires = "etcd_key")]
    pub etcd_cert: Option<PathBuf>,
    /// The PEM private key of --etcd-cert.
    #[arg(long = "etcd-key", requires = "etcd_cert")]
    pub etcd_key: Option<PathBuf>,
    /// etcd user (its password from --etcd-password-file or MERIDIAN_ETCD_PASSWORD).
    #[arg(long = "etcd-user")]
    pub etcd_user: Option<String>,
    /// File holding the etcd user's password.
    #[arg(long = "etcd-password-file", requires = "etcd_user")]
    pub etcd_password_file: Option<PathBuf>,
}

impl EtcdArgs {
    /// From the flags; `None` when `--etcd` is not given (distributed mode is off).
    pub fn options(&self) -> Result<Option<(EtcdOptions, Layout)>, OptionsError> {
        let args = self;
        if args.etcd.is_empty() {
            return Ok(None);
        }
        let layout = Layout::new(&args.etcd_prefix)?;
        let password = match (&args.etcd_user, &args.etcd_password_file) {
            (None, _) => None,
            (Some(_), Some(path)) => Some(
                std::fs::read_to_string(path)
                    .map_err(|source| OptionsError::Password {
                        path: path.clone(),
                        source,
                    })?
                    .trim_end_matches(['\r', '\n'])
                    .to_string(),
            ),
            (Some(_), None) => Some(
                std::env::var(crate::etcd::PASSWORD_ENV).map_err(|_| OptionsError::NoPassword)?,
            ),
        };
        Ok(Some((
            EtcdOptions {
                endpoints: args.etcd.clone(),
                prefix: layout.prefix().to_string(),
                ca_file: args.etcd_cacert.clone(),
                cert_file: args.etcd_cert.clone(),
                key_file: args.etcd_key.clone(),
                user: args.etcd_user.clone(),
                password,
            },
            layout,
        )))
    }
}

/// `meridian config ...`.
#[derive(Debug, Subcommand)]
pub enum ConfigCommand {
    /// Validate a zone directory as `serve` would load it and write it to etcd in one
    /// transaction; prints what changed. Refused if someone else pushed meanwhile.
    Push(ConfigPushArgs),
    /// Write the zones stored in etcd to a directory.
    Pull(ConfigPullArgs),
}

/// `meridian config push`.
#[derive(Debug, clap::Args)]
pub struct ConfigPushArgs {
    /// Directory of zone files (every non-hidden file under it is pushed).
    #[arg(long, default_value = DEFAULT_ZONES_DIR)]
    pub zones: PathBuf,
    /// GeoIP database the zones are compiled against to validate them.
    #[arg(long, default_value = DEFAULT_GEOIP)]
    pub geoip: PathBuf,
    /// Only push if the configuration in etcd is still at this revision (as printed by
    /// the last push or pull, or shown in /v1/status).
    #[arg(long = "if-revision")]
    pub if_revision: Option<i64>,
    /// Validate and print what would change; write nothing.
    #[arg(long = "dry-run")]
    pub dry_run: bool,
    /// Where etcd is.
    #[command(flatten)]
    pub etcd: EtcdArgs,
}

/// `meridian config pull`.
#[derive(Debug, clap::Args)]
pub struct ConfigPullArgs {
    /// Directory to write the zone files into (created if missing).
    #[arg(long)]
    pub out: PathBuf,
    /// Where etcd is.
    #[command(flatten)]
    pub etcd: EtcdArgs,
}

/// `meridian probe`.
#[derive(Debug, clap::Args)]
pub struct ProbeArgs {
    /// Directory of zone files (the same as the nameservers'); default `zones`. With --etcd
    /// and no --zones, the zones come from etcd and are followed like `serve` follows them.
    #[arg(long)]
    pub zones: Option<PathBuf>,
    /// This prober's region (any name; votes are grouped by it).
    #[arg(long)]
    pub region: String,
    /// This prober's id; must match its key in the key file.
    #[arg(long)]
    pub id: String,
    /// Nameserver report URL, e.g. http://192.0.2.53:5380/v1/reports (repeatable; needed
    /// unless --etcd is given; both may be).
    #[arg(long = "publish", required_unless_present = "etcd")]
    pub publish: Vec<String>,
    /// Key file (lines `key_id prober_id secret_hex`); the last key for --id signs.
    #[arg(long = "key-file")]
    pub key_file: PathBuf,
    /// Check only the endpoints in this region.
    #[arg(long = "only-region")]
    pub only_region: Option<String>,
    /// Most checks in flight at once; a due check waits for one to finish.
    #[arg(
        long = "max-in-flight",
        visible_alias = "max-concurrent-checks",
        default_value_t = DEFAULT_MAX_IN_FLIGHT
    )]
    pub max_in_flight: usize,
    /// A directory whose programs exec checks may run (repeatable); exec checks naming any
    /// other program are a configuration error here and never run.
    #[arg(long = "allow-exec", value_name = "DIR")]
    pub allow_exec: Vec<PathBuf>,
    /// Serve this prober's metrics (`GET /metrics`: checks made, check durations, checks in
    /// flight) on this address, e.g. 127.0.0.1:9101. Off when not given.
    #[arg(long = "metrics-listen", value_name = "ADDR")]
    pub metrics_listen: Option<SocketAddr>,
    /// Log format.
    #[arg(long = "log-format", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
    /// Also (or only) publish the votes to etcd, under a lease, and (without --zones) take
    /// the zones to check from etcd (distributed mode).
    #[command(flatten)]
    pub etcd: EtcdArgs,
    /// Directory for state kept across restarts: with --etcd and no --zones, the last
    /// configuration revision that loaded without error, checked when etcd is unreachable at
    /// start-up.
    #[arg(long = "state-dir")]
    pub state_dir: Option<PathBuf>,
}

/// `meridian lab-backend` (hidden).
#[derive(Debug, clap::Args)]
pub struct LabBackendArgs {
    /// Address to listen on.
    #[arg(long, default_value = "0.0.0.0:8080")]
    pub listen: SocketAddr,
    /// Text every response carries.
    #[arg(long, default_value = "backend")]
    pub name: String,
}

/// `meridian check-config`.
#[derive(Debug, clap::Args)]
pub struct CheckConfigArgs {
    /// Directory of zone files (`*.toml`).
    #[arg(long, default_value = DEFAULT_ZONES_DIR)]
    pub zones: PathBuf,
    /// GeoIP database, as given to `serve`.
    #[arg(long, default_value = DEFAULT_GEOIP)]
    pub geoip: PathBuf,
    /// Prober key file, as given to `serve --keys`.
    #[arg(long)]
    pub keys: Option<PathBuf>,
    /// Also print the compiled decisions of every service (stable, diff-friendly).
    #[arg(long)]
    pub print: bool,
    /// Treat warnings (an MX, NS or SRV target that is a CNAME, RFC 2181 §10.3) as errors.
    #[arg(long)]
    pub strict: bool,
}

/// `meridian ctl`.
#[derive(Debug, clap::Args)]
pub struct CtlArgs {
    /// The server's control socket (`serve --control-socket`).
    #[arg(long, short = 's', env = "MERIDIAN_CONTROL_SOCKET")]
    pub socket: PathBuf,
    /// Print the server's JSON response instead of text.
    #[arg(long)]
    pub json: bool,
    /// What to do.
    #[command(subcommand)]
    pub command: CtlCommand,
}

/// `meridian ctl ...`.
#[derive(Debug, Subcommand)]
pub enum CtlCommand {
    /// Reload zones, GeoIP and keys; exit 1 if any file was rejected.
    Reload,
    /// Table generation, zones, endpoints down, overrides and the last reload.
    Status,
    /// Operator overrides.
    Override {
        /// What to do.
        #[command(subcommand)]
        command: OverrideCommand,
    },
}

/// `meridian ctl override ...`.
#[derive(Debug, Subcommand)]
pub enum OverrideCommand {
    /// List active overrides.
    List,
    /// Force an endpoint, a region of a service or a whole service up, down or drained.
    Add {
        /// Zone origin.
        #[arg(long)]
        zone: String,
        /// Service name (relative to the zone).
        #[arg(long)]
        service: String,
        /// Only this region's endpoints.
        #[arg(long)]
        region: Option<String>,
        /// Only this endpoint.
        #[arg(long)]
        address: Option<std::net::IpAddr>,
        /// up, down or drain.
        #[arg(long)]
        state: String,
        /// Seconds until it expires.
        #[arg(long = "expires-in", default_value_t = DEFAULT_OVERRIDE_SECONDS)]
        expires_in: u64,
        /// Why (kept in the audit log).
        #[arg(long)]
        reason: String,
    },
    /// Remove an override by id.
    Remove {
        /// The id `list` shows.
        id: u64,
    },
}
