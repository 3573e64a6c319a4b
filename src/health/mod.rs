//! Endpoint health as the nameserver sees it: authenticated probe reports in, a decided
//! up/down view out.
//!
//! Owns: the report wire format and its signature check ([`report`]) and the vote bookkeeping
//! that turns many probers' reports into one decision per endpoint ([`aggregate`]).
//!
//! Never: runs checks itself (that is `probe`), touches the routing table (the caller hands the
//! [`aggregate::HealthView`] to `routing::publish`), or sits on the query path.

pub mod aggregate;
pub mod hub;
pub mod overrides;
pub mod report;
