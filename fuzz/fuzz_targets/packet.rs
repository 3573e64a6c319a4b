//! Raw bytes -> `Handler::handle` over UDP and TCP -> the response must parse, echo the id and
//! fit the transport's limit; the RRL slip (truncation) of it must parse too.

#![no_main]

use std::net::IpAddr;
use std::sync::{Arc, OnceLock};

use libfuzzer_sys::fuzz_target;
use meridian::dns::handler::{
    CLASSIC_UDP_SIZE, DEFAULT_MAX_UDP_SIZE, Handler, HandlerConfig, MAX_TCP_MESSAGE, txt_rdata,
};
use meridian::dns::{rrl, wire};
use meridian::metrics::{Metrics, Transport};
use meridian::routing::publish::Publisher;

#[path = "common.rs"]
mod common;

fn handler() -> &'static Handler {
    static HANDLER: OnceLock<Handler> = OnceLock::new();
    HANDLER.get_or_init(|| {
        let root = common::root();
        let metrics = Arc::new(Metrics::new());
        let publisher = Publisher::start(
            &root.join("fuzz/zones"),
            &root.join("geoip/meridian-sample.txt"),
            Arc::clone(&metrics),
        )
        .unwrap_or_else(|e| panic!("fuzz zones do not load: {e}"));
        Handler::new(
            Arc::new(publisher),
            metrics,
            HandlerConfig {
                identity: Some(txt_rdata("fuzz-1")),
                version: Some(txt_rdata(&"v".repeat(300))),
                ..HandlerConfig::default()
            },
        )
    })
}

fuzz_target!(|data: &[u8]| {
    let h = handler();
    // The first byte picks the source address, so GeoIP steering sees several clients.
    let source = IpAddr::from([data.first().copied().unwrap_or(1), 2, 3, 4]);
    let id = wire::header(data).map(|hd| hd.id);
    let has_edns = wire::parse(data).is_ok_and(|q| q.edns.is_some());
    let mut out = Vec::new();
    for transport in [Transport::Udp, Transport::Tcp] {
        if !h.handle(data, source, transport, &mut out) {
            continue;
        }
        let limit = match (transport, has_edns) {
            (Transport::Tcp, _) => MAX_TCP_MESSAGE,
            (Transport::Udp, false) => usize::from(CLASSIC_UDP_SIZE),
            (Transport::Udp, true) => usize::from(DEFAULT_MAX_UDP_SIZE),
        };
        common::check_response(&out, limit, id, transport.as_str());
        let mut slipped = out.clone();
        rrl::truncate(&mut slipped);
        common::check_response(&slipped, limit, id, "rrl slip");
        assert!(slipped.len() <= out.len(), "slip made the response longer");
    }
});
