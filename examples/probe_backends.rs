//! Many tiny HTTP backends on loopback addresses, for `bench/probe_load.sh`.
#![allow(clippy::indexing_slicing)] // a bench tool: every slice is bounded by what was read
//!
//!     probe_backends COUNT PORT SINK_ADDR
//!
//! Listens on 127.1.0.1:PORT, 127.1.0.2:PORT, ... (COUNT addresses, 250 per /24: the n-th is
//! 127.1.(n / 250).(n % 250 + 1)); each answers every request with a 200 and a small JSON body
//! and closes the connection (the prober never reuses one). SINK_ADDR takes the prober's
//! reports (`POST`, any path, answered 204 and thrown away). Prints `ready` once listening,
//! then one line a second: `requests N min_100ms A max_100ms B reports R report_bytes S`
//! (requests that second, the fewest and most in one 100 ms slice of it, reports that second,
//! the largest report body so far). One thread (a current-thread runtime, no cross-thread
//! wake-ups) unless PROBE_BACKENDS_THREADS says otherwise; `bench/probe_load.sh` pins it to
//! a CPU of its own. Each listener answers its connections one after another in its own task
//! (the prober never has two checks of one endpoint open at once), so a request costs no
//! task spawn.

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const REPLY: &[u8] = b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 26\r\nconnection: close\r\n\r\n{\"status\":\"ok\",\"load\":0.1}";

/// The n-th backend address (n from 0).
fn address(n: u32) -> Ipv4Addr {
    Ipv4Addr::new(
        127,
        1,
        u8::try_from(n / 250).unwrap_or(255),
        (n % 250 + 1) as u8,
    )
}

#[derive(Default)]
struct Counts {
    requests: AtomicU64,
    reports: AtomicU64,
    report_bytes: AtomicU64,
}

fn main() -> std::io::Result<()> {
    // PROBE_BACKENDS_THREADS (default 1): worker threads; 1 keeps it off the prober's core.
    let threads: usize = std::env::var("PROBE_BACKENDS_THREADS")
        .ok()
        .and_then(|t| t.parse().ok())
        .unwrap_or(1);
    let runtime = if threads <= 1 {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(threads)
            .enable_all()
            .build()?
    };
    runtime.block_on(serve())
}

async fn serve() -> std::io::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let [_, count, port, sink] = args.as_slice() else {
        eprintln!("usage: probe_backends COUNT PORT SINK_ADDR");
        std::process::exit(2);
    };
    let count: u32 = count.parse().map_err(std::io::Error::other)?;
    let port: u16 = port.parse().map_err(std::io::Error::other)?;
    let sink: SocketAddr = sink.parse().map_err(std::io::Error::other)?;
    let counts = Arc::new(Counts::default());
    for n in 0..count {
        let listener = TcpListener::bind((address(n), port)).await?;
        let counts = Arc::clone(&counts);
        tokio::spawn(async move {
            loop {
                if let Ok((stream, _)) = listener.accept().await {
                    if answer(stream).await.is_ok() {
                        counts.requests.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
        });
    }
    let sink = TcpListener::bind(sink).await?;
    let sink_counts = Arc::clone(&counts);
    tokio::spawn(async move {
        loop {
            if let Ok((stream, _)) = sink.accept().await {
                tokio::spawn(take_reports(stream, Arc::clone(&sink_counts)));
            }
        }
    });
    println!("ready");
    // Requests per 100 ms slice: the fewest and most of each second show whether the checks
    // are spread over the second or come in bursts.
    let mut tick = tokio::time::interval(Duration::from_millis(100));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut slices = Vec::with_capacity(10);
    tick.tick().await;
    loop {
        tick.tick().await;
        slices.push(counts.requests.swap(0, Ordering::Relaxed));
        if slices.len() == 10 {
            println!(
                "requests {} min_100ms {} max_100ms {} reports {} report_bytes {}",
                slices.iter().sum::<u64>(),
                slices.iter().min().unwrap_or(&0),
                slices.iter().max().unwrap_or(&0),
                counts.reports.swap(0, Ordering::Relaxed),
                counts.report_bytes.load(Ordering::Relaxed)
            );
            slices.clear();
        }
    }
}

/// Reads one request head and answers it.
async fn answer(mut stream: TcpStream) -> std::io::Result<()> {
    let mut buf = [0u8; 2048];
    let mut len = 0;
    while !buf[..len].windows(4).any(|w| w == b"\r\n\r\n") {
        let n = stream.read(&mut buf[len..]).await?;
        if n == 0 || len + n == buf.len() {
            return Err(std::io::ErrorKind::InvalidData.into());
        }
        len += n;
    }
    stream.write_all(REPLY).await
}

/// Answers every report on a kept-alive connection with a 204, recording the body sizes.
async fn take_reports(mut stream: TcpStream, counts: Arc<Counts>) -> std::io::Result<()> {
    let mut buf: Vec<u8> = Vec::new();
    let mut chunk = vec![0u8; 64 * 1024];
    loop {
        let head_end = loop {
            if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break i + 4;
            }
            let n = stream.read(&mut chunk).await?;
            if n == 0 {
                return Ok(());
            }
            buf.extend_from_slice(&chunk[..n]);
        };
        let head = String::from_utf8_lossy(&buf[..head_end]).to_ascii_lowercase();
        let body_len: usize = head
            .lines()
            .find_map(|l| l.strip_prefix("content-length:"))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0);
        while buf.len() < head_end + body_len {
            let n = stream.read(&mut chunk).await?;
            if n == 0 {
                return Ok(());
            }
            buf.extend_from_slice(&chunk[..n]);
        }
        buf.drain(..head_end + body_len);
        counts.reports.fetch_add(1, Ordering::Relaxed);
        counts
            .report_bytes
            .fetch_max(body_len as u64, Ordering::Relaxed);
        stream
            .write_all(b"HTTP/1.1 204 No Content\r\ncontent-length: 0\r\n\r\n")
            .await?;
    }
}
