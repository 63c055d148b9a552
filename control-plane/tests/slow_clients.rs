//! Clients that misbehave against `control-plane serve`: half-sent request
//! heads held open, idle kept-alive connections, bodies that stop arriving.
//! The control plane runs with a low open-files limit, soft and hard, so
//! raising it cannot help: the header timeout and the connection budget are
//! what keep it serving.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use common::{KEY_ADMIN, Options, Server};

fn server(open_files: u64, args: &[&str]) -> Server {
    Server::start_with(Options {
        api_keys: Some(KEY_ADMIN.to_owned()),
        open_files: Some(open_files),
        extra_args: args.iter().map(|a| (*a).to_owned()).collect(),
        ..Options::default()
    })
}

fn addr(server: &Server) -> &str {
    server.url.trim_start_matches("http://")
}

/// A connection that sent the start of a request head and then nothing.
fn half_sent(server: &Server) -> TcpStream {
    let mut stream = TcpStream::connect(addr(server)).expect("connect");
    stream
        .write_all(b"POST /sandboxes/create HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: appl")
        .expect("send half a request");
    stream
}

/// Waits (at most `limit`) for the server to close `stream`; how long that took.
fn time_to_close(stream: &mut TcpStream, limit: Duration) -> Option<Duration> {
    let started = Instant::now();
    stream.set_read_timeout(Some(limit)).unwrap();
    let mut buf = [0u8; 1024];
    loop {
        match stream.read(&mut buf) {
            Ok(0) => return Some(started.elapsed()),
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {
                return Some(started.elapsed());
            }
            Err(_) => return None,
        }
        if started.elapsed() > limit {
            return None;
        }
    }
}

/// 300 half-sent requests against a budget of 64 connections (128
/// descriptors) and a ten-minute header timeout: `/health` and an
/// authenticated call still answer, because the oldest idle connections are
/// closed to make room.
#[tokio::test]
async fn half_sent_requests_do_not_stop_health_or_calls() {
    let server = server(128, &["--header-timeout-secs", "600"]);
    let mut held: Vec<TcpStream> = (0..300).map(|_| half_sent(&server)).collect();

    let (status, body) = server.get("/health").await;
    assert_eq!(status, 200, "/health: {body}");
    let (status, body) = server.get("/sandboxes").await;
    assert_eq!(status, 200, "an authenticated call: {body}");
    let (status, _) = common::send(server.http.get(format!("{}/sandboxes", server.url))).await;
    assert_eq!(status, 401, "the key is still required");

    assert!(
        time_to_close(&mut held[0], Duration::from_secs(5)).is_some(),
        "the oldest half-sent request is still open"
    );
}

/// A half-sent request head, and a kept-alive connection with nothing more
/// to ask, are closed once the header timeout passes, not before.
#[test]
fn half_sent_and_idle_connections_are_closed_after_the_header_timeout() {
    let server = server(1024, &["--header-timeout-secs", "2"]);
    let mut half = half_sent(&server);
    let took = time_to_close(&mut half, Duration::from_secs(30)).expect("never closed");
    assert!(
        took >= Duration::from_millis(1500),
        "closed too early: {took:?}"
    );

    let mut idle = TcpStream::connect(addr(&server)).unwrap();
    idle.write_all(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        .unwrap();
    let mut answer = [0u8; 512];
    let n = idle.read(&mut answer).unwrap();
    assert!(
        String::from_utf8_lossy(&answer[..n]).starts_with("HTTP/1.1 200"),
        "{}",
        String::from_utf8_lossy(&answer[..n])
    );
    let took = time_to_close(&mut idle, Duration::from_secs(30))
        .expect("an idle kept-alive connection stayed open");
    assert!(
        took >= Duration::from_millis(1500),
        "closed too early: {took:?}"
    );
}

/// A request whose body stops arriving is answered with an error and closed
/// once the body timeout passes, instead of holding its connection forever.
#[test]
fn a_body_that_stops_arriving_is_cut_at_the_body_timeout() {
    let server = server(1024, &["--body-timeout-secs", "2"]);
    let mut stream = TcpStream::connect(addr(&server)).unwrap();
    let head = format!(
        "POST /sandboxes/create HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {KEY_ADMIN}\r\n\
         Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n{{\"user_id\":"
    );
    let started = Instant::now();
    stream.write_all(head.as_bytes()).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let mut answer = Vec::new();
    let _ = stream.read_to_end(&mut answer);
    let took = started.elapsed();
    let answer = String::from_utf8_lossy(&answer);
    assert!(
        answer.starts_with("HTTP/1.1 4"),
        "no error answer after {took:?}: {answer:?}"
    );
    assert!(
        took >= Duration::from_millis(1500),
        "cut too early: {took:?}"
    );
    assert!(took < Duration::from_secs(25), "cut only after {took:?}");
}
