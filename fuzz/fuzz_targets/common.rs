//! Shared by the fuzz targets: paths of the committed zones and GeoIP source, and the checks
//! every DNS response must pass.

use std::path::PathBuf;

use hickory_proto::op::{Message, MessageType};

/// The repository root (the fuzz crate lives in `fuzz/`).
pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(PathBuf::from)
        .unwrap_or_default()
}

/// Panics (= a fuzz finding) unless `response` is a well-formed DNS response of at most
/// `limit` bytes answering message id `id`.
pub fn check_response(response: &[u8], limit: usize, id: Option<u16>, what: &str) {
    assert!(
        response.len() <= limit,
        "{what}: response of {} bytes exceeds the limit {limit}",
        response.len()
    );
    let msg = Message::from_vec(response)
        .unwrap_or_else(|e| panic!("{what}: response does not parse: {e}\n{response:02x?}"));
    assert_eq!(
        msg.metadata.message_type,
        MessageType::Response,
        "{what}: QR not set"
    );
    if let Some(id) = id {
        assert_eq!(msg.metadata.id, id, "{what}: id not echoed");
    }
}
