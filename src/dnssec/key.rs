//! DNSSEC keys: BIND's `K<zone>+<alg>+<tag>.key` / `.private` files, generation, DNSKEY and
//! DS RDATA, key tags, and the raw signing operation.
//!
//! The files are exactly what `dnssec-keygen` writes (private-key format v1.3), so keys move
//! between Meridian, BIND, `ldns-keygen` and Knot's `keymgr import-bind`. Algorithms 13
//! (ECDSA P-256 with SHA-256, RFC 6605) and 15 (Ed25519, RFC 8080) are supported; both are
//! done by `ring`. Everything here is control-plane code except [`ZoneKey::sign`], which the
//! query path calls for answers that cannot be signed ahead of time.

use std::fmt;
use std::path::{Path, PathBuf};

use data_encoding::BASE64;
use hickory_proto::rr::Name;
use ring::rand::SystemRandom;
use ring::signature::{
    ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, Ed25519KeyPair, KeyPair as _,
};

use super::keyfile::{KeyPaths, parse_key_file, parse_private_file, stem};
use super::time;

/// DNSKEY flags bit 7: a zone key (RFC 4034 §2.1.1).
pub const FLAG_ZONE: u16 = 0x0100;
/// DNSKEY flags bit 15: Secure Entry Point, i.e. a key-signing key (RFC 3757).
pub const FLAG_SEP: u16 = 0x0001;
/// DS digest type SHA-256 (RFC 4509).
pub const DIGEST_SHA256: u8 = 2;

/// A signing algorithm Meridian supports.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Algorithm {
    /// 13: ECDSA P-256 with SHA-256 (RFC 6605), the default.
    EcdsaP256Sha256,
    /// 15: Ed25519 (RFC 8080).
    Ed25519,
}

impl Algorithm {
    /// The IANA number.
    pub fn number(self) -> u8 {
        match self {
            Algorithm::EcdsaP256Sha256 => 13,
            Algorithm::Ed25519 => 15,
        }
    }

    /// BIND's mnemonic, as in `.private` files.
    pub fn mnemonic(self) -> &'static str {
        match self {
            Algorithm::EcdsaP256Sha256 => "ECDSAP256SHA256",
            Algorithm::Ed25519 => "ED25519",
        }
    }

    /// The algorithm with IANA number `n`, if supported.
    pub fn from_number(n: u8) -> Option<Self> {
        match n {
            13 => Some(Algorithm::EcdsaP256Sha256),
            15 => Some(Algorithm::Ed25519),
            _ => None,
        }
    }

    /// From a command-line name: `ecdsap256` (or `ecdsap256sha256`, `13`), `ed25519` (`15`).
    pub fn from_name(s: &str) -> Option<Self> {
        match s.to_ascii_lowercase().as_str() {
            "ecdsap256" | "ecdsap256sha256" | "ecdsa" | "13" => Some(Algorithm::EcdsaP256Sha256),
            "ed25519" | "15" => Some(Algorithm::Ed25519),
            _ => None,
        }
    }

    /// Length of the DNSKEY public key field.
    fn public_len(self) -> usize {
        match self {
            Algorithm::EcdsaP256Sha256 => 64,
            Algorithm::Ed25519 => 32,
        }
    }
}

impl fmt::Display for Algorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.number(), self.mnemonic())
    }
}

/// When a key enters and leaves the zone (seconds since the epoch; None = no such event).
/// BIND's names are `Publish`, `Activate`, `Inactive` and `Delete`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct KeyTiming {
    /// Creation time (informational).
    pub created: Option<u64>,
    /// From then on the DNSKEY is published.
    pub publish: Option<u64>,
    /// From then on the key signs.
    pub activate: Option<u64>,
    /// From then on the key no longer signs (it stays published).
    pub retire: Option<u64>,
    /// From then on the DNSKEY is no longer published.
    pub remove: Option<u64>,
}

impl KeyTiming {
    /// Published at `now`: after `publish` (or `activate` when only that is given), before
    /// `remove`.
    pub fn is_published(&self, now: u64) -> bool {
        let from = self.publish.or(self.activate).unwrap_or(0);
        now >= from && self.remove.is_none_or(|r| now < r)
    }

    /// Signing at `now`: published, after `activate`, before `retire`.
    pub fn is_active(&self, now: u64) -> bool {
        self.is_published(now)
            && now >= self.activate.unwrap_or(0)
            && self.retire.is_none_or(|r| now < r)
    }

    /// The first timing event strictly after `now`, when the key's state changes next.
    pub fn next_event(&self, now: u64) -> Option<u64> {
        [self.publish, self.activate, self.retire, self.remove]
            .into_iter()
            .flatten()
            .filter(|&t| t > now)
            .min()
    }

    /// The last timing event at or before `now`, when the key last changed state.
    pub fn last_event(&self, now: u64) -> Option<u64> {
        [self.publish, self.activate, self.retire, self.remove]
            .into_iter()
            .flatten()
            .filter(|&t| t <= now)
            .max()
    }
}

/// Why a key file could not be used.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// A file could not be read or written.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// A file does not parse.
    #[error("{}: {message}", path.display())]
    Parse {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// The algorithm is not 13 or 15.
    #[error("{}: algorithm {algorithm} is not supported (use 13 ECDSAP256SHA256 or 15 ED25519)", path.display())]
    Unsupported {
        /// The file.
        path: PathBuf,
        /// The algorithm number.
        algorithm: u8,
    },
    /// The key belongs to another zone.
    #[error("{}: key is for {found}, not for zone {expected}", path.display())]
    WrongZone {
        /// The file.
        path: PathBuf,
        /// The zone that uses it.
        expected: String,
        /// The owner in the key file.
        found: String,
    },
}

enum Secret {
    Ecdsa(EcdsaKeyPair),
    Ed25519(Ed25519KeyPair),
}

/// A zone's key pair, loaded and ready to sign.
pub struct ZoneKey {
    /// The zone (lowercase).
    pub zone: Name,
    /// Algorithm.
    pub algorithm: Algorithm,
    /// DNSKEY flags (256 ZSK, 257 KSK).
    pub flags: u16,
    /// The DNSKEY public key field.
    pub public: Vec<u8>,
    /// Key tag (RFC 4034 Appendix B).
    pub tag: u16,
    /// Timing from the `.private` file (a zone's `[dnssec]` table may override it).
    pub timing: KeyTiming,
    /// The file name without extension (`.../Kexample.com.+013+12345`).
    pub base: PathBuf,
    secret: Secret,
    /// Private key bytes as stored in the `.private` file (scalar or seed).
    private: Vec<u8>,
}

impl fmt::Debug for ZoneKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ZoneKey")
            .field("zone", &self.zone)
            .field("algorithm", &self.algorithm)
            .field("flags", &self.flags)
            .field("tag", &self.tag)
            .finish_non_exhaustive()
    }
}

/// Key tag of DNSKEY RDATA (RFC 4034 Appendix B).
pub fn key_tag(rdata: &[u8]) -> u16 {
    let mut ac: u32 = 0;
    for (i, b) in rdata.iter().enumerate() {
        ac += if i & 1 == 1 {
            u32::from(*b)
        } else {
            u32::from(*b) << 8
        };
    }
    ac += (ac >> 16) & 0xFFFF;
    (ac & 0xFFFF) as u16
}

/// DS RDATA (SHA-256) of the DNSKEY RDATA `dnskey` at `zone`.
pub fn ds_rdata(zone: &Name, dnskey: &[u8]) -> Vec<u8> {
    let mut data = canonical_name(zone);
    data.extend_from_slice(dnskey);
    let digest = ring::digest::digest(&ring::digest::SHA256, &data);
    let mut out = Vec::with_capacity(4 + 32);
    out.extend_from_slice(&key_tag(dnskey).to_be_bytes());
    out.push(dnskey.get(3).copied().unwrap_or(0));
    out.push(DIGEST_SHA256);
    out.extend_from_slice(digest.as_ref());
    out
}

/// The DS record of `dnskey` at `zone` in presentation form (`dnssec-dsfromkey -2`).
pub fn ds_text(zone: &Name, dnskey: &[u8]) -> String {
    let ds = ds_rdata(zone, dnskey);
    format!(
        "{} IN DS {} {} {} {}",
        zone.to_lowercase(),
        key_tag(dnskey),
        dnskey.get(3).copied().unwrap_or(0),
        DIGEST_SHA256,
        data_encoding::HEXUPPER.encode(ds.get(4..).unwrap_or(&[]))
    )
}

/// DS RDATA from presentation form: `KEYTAG ALGORITHM DIGESTTYPE HEX` (the hex may be split
/// by blanks). Digest types 1 (SHA-1), 2 (SHA-256) and 4 (SHA-384) must have their length.
pub fn parse_ds(text: &str) -> Result<Vec<u8>, String> {
    let mut fields = text.split_whitespace();
    let mut number = |what: &str, max: u32| -> Result<u32, String> {
        let f = fields.next().ok_or(format!("missing {what}"))?;
        f.parse::<u32>()
            .ok()
            .filter(|n| *n <= max)
            .ok_or(format!("{what} `{f}` is not a number up to {max}"))
    };
    let tag = number("key tag", 65_535)?;
    let alg = number("algorithm", 255)?;
    let digest_type = number("digest type", 255)?;
    let hex: String = fields.collect();
    let digest = data_encoding::HEXUPPER_PERMISSIVE
        .decode(hex.as_bytes())
        .map_err(|e| format!("digest: {e}"))?;
    let want = match digest_type {
        1 => Some(20),
        2 => Some(32),
        4 => Some(48),
        _ => None,
    };
    if digest.is_empty() || want.is_some_and(|w| w != digest.len()) {
        return Err(format!(
            "digest of type {digest_type} has {} bytes{}",
            digest.len(),
            want.map_or(String::new(), |w| format!(", not {w}"))
        ));
    }
    let mut out = Vec::with_capacity(4 + digest.len());
    out.extend_from_slice(&u16::try_from(tag).unwrap_or(0).to_be_bytes());
    out.push(u8::try_from(alg).unwrap_or(0));
    out.push(u8::try_from(digest_type).unwrap_or(0));
    out.extend_from_slice(&digest);
    Ok(out)
}

/// The DS record of the DNSKEY in a `.key` file (no private key needed).
pub fn ds_of_key_file(path: &Path) -> Result<String, KeyError> {
    let text = std::fs::read_to_string(path).map_err(|source| KeyError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let public = parse_key_file(path, &text)?;
    let mut dnskey = public.flags.to_be_bytes().to_vec();
    dnskey.push(3);
    dnskey.push(public.algorithm);
    dnskey.extend_from_slice(&public.key);
    Ok(ds_text(&public.owner, &dnskey))
}

/// `name` lowercased in uncompressed wire form (RFC 4034 §6.2 canonical form).
pub fn canonical_name(name: &Name) -> Vec<u8> {
    let mut out = Vec::with_capacity(name.len() + 2);
    for label in name.to_lowercase().iter() {
        out.push(u8::try_from(label.len()).unwrap_or(63));
        out.extend_from_slice(label);
    }
    out.push(0);
    out
}

/// The first 32 bytes after `marker` in a PKCS#8 document `ring` produced.
fn after(doc: &[u8], marker: &[u8]) -> Option<Vec<u8>> {
    let at = doc.windows(marker.len()).position(|w| w == marker)? + marker.len();
    doc.get(at..at + 32).map(<[u8]>::to_vec)
}

impl ZoneKey {
    /// A new key pair for `zone` (a KSK when `ksk`), created `now`.
    pub fn generate(
        zone: &Name,
        algorithm: Algorithm,
        ksk: bool,
        now: u64,
    ) -> Result<Self, String> {
        let rng = SystemRandom::new();
        let (private, public) = match algorithm {
            Algorithm::EcdsaP256Sha256 => {
                let doc = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng)
                    .map_err(|_| "random source failed".to_string())?;
                let pair =
                    EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, doc.as_ref(), &rng)
                        .map_err(|e| e.to_string())?;
                // ECPrivateKey (RFC 5915): version 1, then the 32-byte scalar.
                let scalar = after(doc.as_ref(), &[0x02, 0x01, 0x01, 0x04, 0x20])
                    .ok_or("unexpected PKCS#8 layout")?;
                (
                    scalar,
                    pair.public_key().as_ref().get(1..).unwrap_or(&[]).to_vec(),
                )
            }
            Algorithm::Ed25519 => {
                let doc = Ed25519KeyPair::generate_pkcs8(&rng)
                    .map_err(|_| "random source failed".to_string())?;
                let pair = Ed25519KeyPair::from_pkcs8(doc.as_ref()).map_err(|e| e.to_string())?;
                // RFC 8410: OCTET STRING { OCTET STRING (32) seed }.
                let seed = after(doc.as_ref(), &[0x04, 0x22, 0x04, 0x20])
                    .ok_or("unexpected PKCS#8 layout")?;
                (seed, pair.public_key().as_ref().to_vec())
            }
        };
        let flags = FLAG_ZONE | if ksk { FLAG_SEP } else { 0 };
        let timing = KeyTiming {
            created: Some(now),
            publish: Some(now),
            activate: Some(now),
            retire: None,
            remove: None,
        };
        Self::from_parts(
            zone,
            algorithm,
            flags,
            public,
            private,
            timing,
            PathBuf::new(),
        )
        .map_err(|e| e.to_string())
    }

    fn from_parts(
        zone: &Name,
        algorithm: Algorithm,
        flags: u16,
        public: Vec<u8>,
        private: Vec<u8>,
        timing: KeyTiming,
        base: PathBuf,
    ) -> Result<Self, KeyError> {
        let bad = |message: &str| KeyError::Parse {
            path: base.with_extension_private(),
            message: message.to_string(),
        };
        if public.len() != algorithm.public_len() {
            return Err(bad("public key has the wrong length for its algorithm"));
        }
        let secret = match algorithm {
            Algorithm::EcdsaP256Sha256 => {
                let mut uncompressed = Vec::with_capacity(65);
                uncompressed.push(4);
                uncompressed.extend_from_slice(&public);
                Secret::Ecdsa(
                    EcdsaKeyPair::from_private_key_and_public_key(
                        &ECDSA_P256_SHA256_FIXED_SIGNING,
                        &private,
                        &uncompressed,
                        &SystemRandom::new(),
                    )
                    .map_err(|e| {
                        bad(&format!("private key does not match the public key ({e})"))
                    })?,
                )
            }
            Algorithm::Ed25519 => Secret::Ed25519(
                Ed25519KeyPair::from_seed_and_public_key(&private, &public).map_err(|e| {
                    bad(&format!("private key does not match the public key ({e})"))
                })?,
            ),
        };
        let mut key = ZoneKey {
            zone: zone.to_lowercase(),
            algorithm,
            flags,
            public,
            tag: 0,
            timing,
            base,
            secret,
            private,
        };
        key.tag = key_tag(&key.dnskey_rdata());
        Ok(key)
    }

    /// A key-signing key (SEP bit set).
    pub fn is_ksk(&self) -> bool {
        self.flags & FLAG_SEP != 0
    }

    /// DNSKEY RDATA: flags, protocol 3, algorithm, public key (RFC 4034 §2.1).
    pub fn dnskey_rdata(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(4 + self.public.len());
        out.extend_from_slice(&self.flags.to_be_bytes());
        out.push(3);
        out.push(self.algorithm.number());
        out.extend_from_slice(&self.public);
        out
    }

    /// DS RDATA with a SHA-256 digest (RFC 4034 §5.1, RFC 4509); also the CDS RDATA.
    pub fn ds_rdata(&self) -> Vec<u8> {
        ds_rdata(&self.zone, &self.dnskey_rdata())
    }

    /// The DS record in presentation form, as `dnssec-dsfromkey -2` prints it.
    pub fn ds_text(&self) -> String {
        ds_text(&self.zone, &self.dnskey_rdata())
    }

    /// Signs `data` (RFC 6605 r||s, or RFC 8080 Ed25519). Fails only when the system random
    /// source does (ECDSA needs a nonce).
    pub fn sign(&self, data: &[u8]) -> Option<Vec<u8>> {
        match &self.secret {
            Secret::Ecdsa(pair) => pair
                .sign(&SystemRandom::new(), data)
                .ok()
                .map(|s| s.as_ref().to_vec()),
            Secret::Ed25519(pair) => Some(pair.sign(data).as_ref().to_vec()),
        }
    }

    /// BIND's file name stem: `K<zone>+<alg>+<tag>` (the zone with its trailing dot).
    pub fn file_stem(&self) -> String {
        format!(
            "K{}+{:03}+{:05}",
            self.zone.to_ascii(),
            self.algorithm.number(),
            self.tag
        )
    }

    /// The `.key` file: comments and the DNSKEY record.
    pub fn key_file_text(&self) -> String {
        let kind = if self.is_ksk() {
            "key-signing"
        } else {
            "zone-signing"
        };
        let mut out = format!(
            "; This is a {kind} key, keyid {}, for {}\n",
            self.tag,
            self.zone.to_ascii()
        );
        if let Some(c) = self.timing.created {
            out.push_str(&format!("; Created: {}\n", time::format_compact(c)));
        }
        out.push_str(&format!(
            "{} IN DNSKEY {} 3 {} {}\n",
            self.zone.to_ascii(),
            self.flags,
            self.algorithm.number(),
            BASE64.encode(&self.public)
        ));
        out
    }

    /// The `.private` file (private-key format v1.3) with the timing fields that are set.
    pub fn private_file_text(&self) -> String {
        let mut out = format!(
            "Private-key-format: v1.3\nAlgorithm: {}\nPrivateKey: {}\n",
            self.algorithm,
            BASE64.encode(&self.private)
        );
        let t = &self.timing;
        for (label, value) in [
            ("Created", t.created),
            ("Publish", t.publish),
            ("Activate", t.activate),
            ("Inactive", t.retire),
            ("Delete", t.remove),
        ] {
            if let Some(v) = value {
                out.push_str(&format!("{label}: {}\n", time::format_compact(v)));
            }
        }
        out
    }

    /// Writes `<dir>/K...key` and `K...private` (mode 0600), refusing to overwrite; returns
    /// the stem path.
    pub fn write_files(&self, dir: &Path) -> Result<PathBuf, KeyError> {
        use std::io::Write;
        let base = dir.join(self.file_stem());
        for (path, text, private) in [
            (base.with_extension_key(), self.key_file_text(), false),
            (
                base.with_extension_private(),
                self.private_file_text(),
                true,
            ),
        ] {
            let mut opts = std::fs::OpenOptions::new();
            opts.write(true).create_new(true);
            #[cfg(unix)]
            if private {
                use std::os::unix::fs::OpenOptionsExt;
                opts.mode(0o600);
            }
            #[cfg(not(unix))]
            let _ = private;
            let io = |source| KeyError::Io {
                path: path.clone(),
                source,
            };
            let mut f = opts.open(&path).map_err(io)?;
            f.write_all(text.as_bytes()).map_err(io)?;
        }
        Ok(base)
    }

    /// Loads the pair at `path` (`K...+013+12345`, with or without `.key`/`.private`) for
    /// `zone`.
    pub fn load(path: &Path, zone: &Name) -> Result<Self, KeyError> {
        let base = stem(path);
        let key_path = base.with_extension_key();
        let private_path = base.with_extension_private();
        let read = |p: &Path| {
            std::fs::read_to_string(p).map_err(|source| KeyError::Io {
                path: p.to_path_buf(),
                source,
            })
        };
        let public = parse_key_file(&key_path, &read(&key_path)?)?;
        if public.owner.to_lowercase() != zone.to_lowercase() {
            return Err(KeyError::WrongZone {
                path: key_path,
                expected: zone.to_string(),
                found: public.owner.to_string(),
            });
        }
        let private = parse_private_file(&private_path, &read(&private_path)?)?;
        if private.algorithm != public.algorithm {
            return Err(KeyError::Parse {
                path: private_path,
                message: format!(
                    "algorithm {} does not match the .key file's {}",
                    private.algorithm, public.algorithm
                ),
            });
        }
        let algorithm =
            Algorithm::from_number(public.algorithm).ok_or_else(|| KeyError::Unsupported {
                path: key_path.clone(),
                algorithm: public.algorithm,
            })?;
        Self::from_parts(
            zone,
            algorithm,
            public.flags,
            public.key,
            private.key,
            private.timing,
            base,
        )
    }
}

#[cfg(test)]
#[path = "key_tests.rs"]
pub(crate) mod tests;
