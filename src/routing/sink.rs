//! Where routing puts an answer: the one seam between deciding (routing) and encoding (dns).
//!
//! The lookup in `table.rs` and `select.rs` is generic over an [`AnswerSink`], so the query
//! path calls `dns::answer::Writer` directly (monomorphised: no indirection, no intermediate
//! result to copy), while routing itself never names dns: the dependency runs one way,
//! `dns -> routing`.

use crate::proto::{Owner, Rcode, Section};

/// Receives what the lookup decides: flags, RCODE and RRsets, in wire order per section.
pub trait AnswerSink {
    /// Sets the RCODE.
    fn set_rcode(&mut self, rcode: Rcode);

    /// Sets the AA bit.
    fn set_authoritative(&mut self, aa: bool);

    /// Number of records in the answer section so far.
    fn answer_count(&self) -> u16;

    /// Adds one RRset to `section`; records go in the order given.
    fn rrset<'r>(
        &mut self,
        section: Section,
        owner: Owner<'_>,
        rtype: u16,
        ttl: u32,
        rdatas: impl IntoIterator<Item = &'r [u8]>,
    );

    /// The QNAME is answered from a wildcard of the zone at `apex` (lowercase wire form):
    /// response rate limiting keys such answers on the zone, as Knot does, so a flood of
    /// random names under a wildcard shares one budget. Sinks that do not limit ignore it.
    #[inline]
    fn answered_from_wildcard(&mut self, apex: &[u8]) {
        let _ = apex;
    }
}
