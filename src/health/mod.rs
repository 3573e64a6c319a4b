//! Endpoint health as the nameserver sees it: authenticated probe reports in, a decided
//! up/down view out.
//!
//! Owns: the report wire format and its signature check ([`report`]) and the vote bookkeeping
//! that turns many probers' reports into one decision per endpoint ([`aggregate`]), and what
//! of both `/metrics` shows ([`export`]).
//!
//! Never: runs checks itself (that is `probe`), changes the routing table (the caller hands the
//! [`aggregate::HealthView`] to `routing::publish`; [`export`] only reads the table when
//! scraped), or sits on the query path.

pub mod aggregate;
pub mod export;
pub mod hub;
pub mod overrides;
pub mod report;
pub mod severity;
