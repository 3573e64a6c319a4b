//! Distributed mode (issue 15): etcd as the configuration store and the health bus.
//!
//! Meridian talks to etcd through its v3 JSON gRPC gateway (`/v3/kv/range`, `/v3/kv/txn`,
//! `/v3/watch`, `/v3/lease/*`, `/v3/auth/authenticate`) with the HTTP client it already has
//! (reqwest): no `protoc`, no C library and no Cargo feature, so the mode is always built and
//! the quick start still needs only the Rust toolchain (docs/architecture.md says why).
//!
//! - [`client`]: the gateway client (endpoints with failover, TLS, user/password tokens).
//! - [`Layout`] (here): where everything lives under the prefix.
//! - [`config`]: `meridian config push` / `pull`: read, validate, diff, one transaction.
//! - [`zones`]: the nameserver's zone source: snapshot, watch, materialise, state dir.
//! - [`votes`]: probers' vote keys under leases, and the nameservers' intake.
//!
//! Owns: everything that knows etcd exists. Never: sits on the query path, or lets etcd being
//! unreachable change what serves (the last good table keeps serving; see [`zones`]).

pub mod client;
pub mod config;
pub mod metrics;
pub mod votes;
pub mod zones;

use std::path::PathBuf;
use std::time::Duration;

/// The key prefix unless told (`--etcd-prefix`).
pub const DEFAULT_PREFIX: &str = "/meridian/";

/// Where to reach etcd and as whom (the `--etcd*` flags).
#[derive(Clone, Debug, Default)]
pub struct EtcdOptions {
    /// Client URLs, tried in order (`http://` or `https://`).
    pub endpoints: Vec<String>,
    /// Key prefix (normalised by [`Layout::new`]).
    pub prefix: String,
    /// CA bundle verifying the servers (PEM); the system roots when absent.
    pub ca_file: Option<PathBuf>,
    /// Client certificate (PEM), for etcd's `--client-cert-auth`.
    pub cert_file: Option<PathBuf>,
    /// The client certificate's key (PEM).
    pub key_file: Option<PathBuf>,
    /// User for etcd's authentication.
    pub user: Option<String>,
    /// That user's password.
    pub password: Option<String>,
}

/// Why the `--etcd*` flags cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum OptionsError {
    /// The prefix is unusable.
    #[error(transparent)]
    Prefix(#[from] PrefixError),
    /// The password file cannot be read.
    #[error("--etcd-password-file {}: {source}", path.display())]
    Password {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// A user without a password.
    #[error("--etcd-user needs --etcd-password-file or MERIDIAN_ETCD_PASSWORD")]
    NoPassword,
}

/// The environment variable holding the etcd user's password (instead of a file).
pub const PASSWORD_ENV: &str = "MERIDIAN_ETCD_PASSWORD";

/// Where everything lives under the prefix. Everything an operator pushes is under
/// `config/` (what nameservers read), votes under `votes/` (one key per prober), so etcd
/// roles can be granted per subtree (README, "Running at scale").
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Layout {
    prefix: String,
}

/// Why a prefix is unusable.
#[derive(Debug, thiserror::Error)]
#[error("--etcd-prefix `{0}`: must start with `/` and contain no whitespace")]
pub struct PrefixError(String);

impl Layout {
    /// A layout under `prefix` (a missing trailing `/` is added).
    pub fn new(prefix: &str) -> Result<Self, PrefixError> {
        if !prefix.starts_with('/') || prefix.chars().any(char::is_whitespace) {
            return Err(PrefixError(prefix.to_string()));
        }
        let mut prefix = prefix.to_string();
        if !prefix.ends_with('/') {
            prefix.push('/');
        }
        Ok(Self { prefix })
    }

    /// The prefix, ending in `/`.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// Everything `config push` writes: zone files and the push record.
    pub fn config(&self) -> String {
        format!("{}config/", self.prefix)
    }

    /// The zone files: `config/zones/<path relative to the pushed directory>`.
    pub fn zones(&self) -> String {
        format!("{}config/zones/", self.prefix)
    }

    /// The key of one zone file.
    pub fn zone_key(&self, relative: &str) -> String {
        format!("{}{relative}", self.zones())
    }

    /// The push record: rewritten by every push, so two pushes always conflict.
    pub fn meta_key(&self) -> String {
        format!("{}config/meta", self.prefix)
    }

    /// The file a zone key names, relative to the zone directory (`None` outside it).
    pub fn relative_zone<'a>(&self, key: &'a str) -> Option<&'a str> {
        key.strip_prefix(self.zones().as_str())
            .filter(|rest| !rest.is_empty())
    }

    /// Every prober's vote key.
    pub fn votes(&self) -> String {
        format!("{}votes/", self.prefix)
    }

    /// The vote key of one prober.
    pub fn vote_key(&self, prober: &str) -> String {
        format!("{}{prober}", self.votes())
    }
}

/// The end of the key range holding every key that starts with `prefix` (etcd's
/// `range_end`: the prefix with its last byte below 0xff incremented; `\0` means "to the
/// end of the keyspace").
pub fn range_end(prefix: &[u8]) -> Vec<u8> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    vec![0]
}

/// Reconnect waits: doubling from [`Backoff::FIRST`] to [`Backoff::MAX`], with up to 25 %
/// taken off at random so nameservers that lost etcd together do not return together.
#[derive(Clone, Debug)]
pub struct Backoff {
    failures: u32,
}

impl Backoff {
    /// The first wait.
    pub const FIRST: Duration = Duration::from_millis(200);
    /// The longest wait: short, so a nameserver is back within about two seconds of etcd
    /// (the bound after a partition heals); a retry is one small request.
    pub const MAX: Duration = Duration::from_secs(1);

    /// No failure yet.
    pub fn new() -> Self {
        Self { failures: 0 }
    }

    /// The wait before the next attempt, before jitter; counts a failure.
    pub fn base_wait(&mut self) -> Duration {
        let wait = Self::FIRST
            .saturating_mul(1u32 << self.failures.min(16))
            .min(Self::MAX);
        self.failures = self.failures.saturating_add(1);
        wait
    }

    /// The wait before the next attempt, jitter applied; counts a failure.
    pub fn wait(&mut self) -> Duration {
        let base = self.base_wait();
        base.mul_f64(1.0 - rand::random_range(0.0..0.25))
    }

    /// A success: the next failure waits [`Backoff::FIRST`] again.
    pub fn reset(&mut self) {
        self.failures = 0;
    }
}

impl Default for Backoff {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout_keys() {
        let l = Layout::new("/m").unwrap();
        assert_eq!(l.prefix(), "/m/");
        assert_eq!(l.zones(), "/m/config/zones/");
        assert_eq!(l.zone_key("a/b.toml"), "/m/config/zones/a/b.toml");
        assert_eq!(l.meta_key(), "/m/config/meta");
        assert_eq!(l.vote_key("p1"), "/m/votes/p1");
        assert_eq!(l.relative_zone("/m/config/zones/x.toml"), Some("x.toml"));
        assert_eq!(l.relative_zone("/m/config/zones/"), None);
        assert_eq!(l.relative_zone("/m/config/meta"), None);
        assert!(Layout::new("m/").is_err());
        assert!(Layout::new("/a b/").is_err());
        assert_eq!(Layout::new(DEFAULT_PREFIX).unwrap().prefix(), "/meridian/");
    }

    #[test]
    fn range_end_increments_the_last_byte_below_ff() {
        assert_eq!(range_end(b"/m/"), b"/m0".to_vec());
        assert_eq!(range_end(b"a\xff"), b"b".to_vec());
        assert_eq!(range_end(b"\xff\xff"), vec![0]);
        assert_eq!(range_end(b""), vec![0]);
    }

    #[test]
    fn backoff_doubles_to_its_cap_and_resets() {
        let mut b = Backoff::new();
        let waits: Vec<u128> = (0..7).map(|_| b.base_wait().as_millis()).collect();
        assert_eq!(waits, [200, 400, 800, 1000, 1000, 1000, 1000]);
        b.reset();
        assert_eq!(b.base_wait(), Backoff::FIRST);
        for _ in 0..100 {
            let w = b.wait();
            assert!(
                w <= Backoff::MAX && w > Backoff::FIRST.mul_f64(0.7),
                "{w:?}"
            );
        }
    }
}
