//! Reading BIND's key files: `K<zone>+<alg>+<tag>.key` (one DNSKEY record, possibly spread over
//! lines in parentheses) and `.private` (private-key format v1.3 with its timing fields), for
//! [`super::key::ZoneKey`]. Control plane only; every error names the file.

use std::path::{Path, PathBuf};

use data_encoding::BASE64;
use hickory_proto::rr::Name;

use super::key::{Algorithm, FLAG_ZONE, KeyError, KeyTiming};
use super::time;

/// `path` without a `.key` or `.private` extension.
pub(super) fn stem(path: &Path) -> PathBuf {
    match path.extension().and_then(|e| e.to_str()) {
        Some("key" | "private") => path.with_extension(""),
        _ => path.to_path_buf(),
    }
}

pub(super) trait KeyPaths {
    /// `stem.key`.
    fn with_extension_key(&self) -> PathBuf;
    /// `stem.private`.
    fn with_extension_private(&self) -> PathBuf;
}

impl KeyPaths for PathBuf {
    // `with_extension` would cut the stem at its last dot (`K...+013+12345` has none after
    // the zone's, but `Kexample.com.` does); append instead.
    fn with_extension_key(&self) -> PathBuf {
        let mut s = self.clone().into_os_string();
        s.push(".key");
        s.into()
    }
    fn with_extension_private(&self) -> PathBuf {
        let mut s = self.clone().into_os_string();
        s.push(".private");
        s.into()
    }
}

pub(super) struct PublicPart {
    pub(super) owner: Name,
    pub(super) flags: u16,
    pub(super) algorithm: u8,
    pub(super) key: Vec<u8>,
}

pub(super) fn parse_key_file(path: &Path, text: &str) -> Result<PublicPart, KeyError> {
    let bad = |message: String| KeyError::Parse {
        path: path.to_path_buf(),
        message,
    };
    // One record, possibly spread over lines in parentheses (as RFCs print keys).
    let joined: String = text
        .lines()
        .map(|l| l.split(';').next().unwrap_or(""))
        .collect::<Vec<_>>()
        .join(" ")
        .replace(['(', ')'], " ");
    let tokens: Vec<&str> = joined.split_whitespace().collect();
    if !tokens.is_empty() {
        let Some(at) = tokens.iter().position(|t| t.eq_ignore_ascii_case("DNSKEY")) else {
            return Err(bad("not a DNSKEY record".to_string()));
        };
        let field = |i: usize| tokens.get(at + i).copied().unwrap_or("");
        let owner = Name::from_ascii(tokens.first().copied().unwrap_or(""))
            .map_err(|e| bad(format!("owner: {e}")))?;
        let flags: u16 = field(1)
            .parse()
            .map_err(|_| bad(format!("flags `{}`", field(1))))?;
        if field(2) != "3" {
            return Err(bad("protocol must be 3".to_string()));
        }
        let algorithm: u8 = field(3)
            .parse()
            .map_err(|_| bad(format!("algorithm `{}`", field(3))))?;
        let b64: String = tokens.get(at + 4..).unwrap_or(&[]).concat();
        let key = BASE64
            .decode(b64.as_bytes())
            .map_err(|e| bad(format!("public key: {e}")))?;
        if flags & FLAG_ZONE == 0 {
            return Err(bad(format!("flags {flags} lack the zone-key bit (256)")));
        }
        return Ok(PublicPart {
            owner,
            flags,
            algorithm,
            key,
        });
    }
    Err(bad("no DNSKEY record".to_string()))
}

pub(super) struct PrivatePart {
    pub(super) algorithm: u8,
    pub(super) key: Vec<u8>,
    pub(super) timing: KeyTiming,
}

pub(super) fn parse_private_file(path: &Path, text: &str) -> Result<PrivatePart, KeyError> {
    let bad = |message: String| KeyError::Parse {
        path: path.to_path_buf(),
        message,
    };
    let (mut algorithm, mut key) = (None, None);
    let mut timing = KeyTiming::default();
    for line in text.lines() {
        let Some((field, value)) = line.split_once(':') else {
            continue;
        };
        let value = value.trim();
        let when = || {
            time::parse_compact(value)
                .ok_or_else(|| bad(format!("{field}: `{value}` is not YYYYMMDDHHMMSS")))
        };
        match field.trim() {
            "Algorithm" => {
                let n = value.split_whitespace().next().unwrap_or("");
                algorithm = Some(
                    n.parse::<u8>()
                        .map_err(|_| bad(format!("Algorithm: `{value}`")))?,
                );
            }
            "PrivateKey" => {
                key = Some(
                    BASE64
                        .decode(value.replace(' ', "").as_bytes())
                        .map_err(|e| bad(format!("PrivateKey: {e}")))?,
                );
            }
            "Created" => timing.created = Some(when()?),
            "Publish" => timing.publish = Some(when()?),
            "Activate" => timing.activate = Some(when()?),
            "Inactive" => timing.retire = Some(when()?),
            "Delete" => timing.remove = Some(when()?),
            _ => {}
        }
    }
    let algorithm = algorithm.ok_or_else(|| bad("no Algorithm field".to_string()))?;
    if Algorithm::from_number(algorithm).is_none() {
        return Err(KeyError::Unsupported {
            path: path.to_path_buf(),
            algorithm,
        });
    }
    Ok(PrivatePart {
        algorithm,
        key: key.ok_or_else(|| bad("no PrivateKey field".to_string()))?,
        timing,
    })
}
