//! DNSSEC online signing: keys, signatures, denial of existence, and the signature cache.
//!
//! Owns: BIND-format key files and key generation (`key`), RRSIG and NSEC wire data (`sign`),
//! the time formats keys and zone files use (`time`). Never: signs anything the compiled
//! table already holds a signature for; reads files on the query path.

pub mod key;
mod keyfile;
pub mod sign;
pub mod time;

pub use key::{Algorithm, KeyError, KeyTiming, ZoneKey};
pub mod cache;
pub mod metrics;
pub mod zone;

pub use zone::{SigningPolicy, ZoneDnssec, ZoneSigner};
