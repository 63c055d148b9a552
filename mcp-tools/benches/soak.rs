//! Soak and abuse benchmark: minutes of mixed tool calls, then clients that
//! misbehave, against the mcp-tools of this build and, in the same run, a
//! reference binary (e.g. a build of an earlier commit).
//!
//!     cargo bench -p mcp-tools --bench soak -- [--minutes 3] [--concurrency 16]
//!         [--reference [LABEL=]/path/to/other/mcp-tools]... [--slow-clients 1100]
//!
//! `--reference` may be given more than once (e.g. `old=...` and
//! `musl=target/x86_64-unknown-linux-musl/release/mcp-tools`); the first
//! is the one ratios are taken against. Binaries whose `--help` lists the
//! session and job caps get `--max-sessions 5000` and `--max-jobs 200`, so
//! every binary faces the same floods.
//!
//! Every request gives up after a timeout and every phase has a deadline,
//! so a server that stops answering shows as errors and failed opens, not
//! as a hung benchmark.
//!
//! Phases, each server in turn, started with a soft open-files limit of 1024
//! (a common default; the hard limit is left as it is):
//! - **soak**: workers with a session each loop over read_file, write_file,
//!   grep, run_command and list_directory; calls/s, errors, and the server's
//!   RSS and open descriptors sampled every few seconds;
//! - **slow clients**: connections that send half a request head and then
//!   nothing, held while /health and 20 authenticated calls are tried;
//! - **session flood**: three rounds of 2,000 sessions opened then closed,
//!   RSS at each round's peak and after it;
//! - **jobs**: 200 `sleep 30` background jobs started; how many started, the
//!   descriptors they hold, and the size of process_list's answer.
//!
//! Figures of this build are printed as ratios to the reference's.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

mod support;

use support::{Session, TOKEN};

/// The longest a single call or session open may take in the floods.
const CALL_TIMEOUT: Duration = Duration::from_secs(10);
/// The longest one round of the session flood may take.
const FLOOD_ROUND_DEADLINE: Duration = Duration::from_secs(90);

struct Args {
    minutes: f64,
    concurrency: usize,
    /// Labelled reference binaries, in the order given.
    references: Vec<(String, PathBuf)>,
    slow_clients: usize,
}

fn args() -> Args {
    let args: Vec<String> = std::env::args().collect();
    let flag = |name: &str| {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1).cloned())
    };
    let references = args
        .windows(2)
        .filter(|w| w[0] == "--reference")
        .map(|w| match w[1].split_once('=') {
            Some((label, path)) => (label.to_owned(), from_workspace(path)),
            None => ("reference".to_owned(), from_workspace(&w[1])),
        })
        .collect();
    Args {
        minutes: flag("--minutes").map_or(3.0, |s| s.parse().expect("--minutes")),
        concurrency: flag("--concurrency").map_or(16, |s| s.parse().expect("--concurrency")),
        references,
        slow_clients: flag("--slow-clients").map_or(1100, |s| s.parse().expect("--slow-clients")),
    }
}

/// What one server did in every phase.
#[derive(Debug, Default, Clone)]
struct Report {
    calls_per_s: f64,
    errors: u64,
    rss_mib: Vec<f64>,
    fds: Vec<usize>,
    slow_health_ok: bool,
    slow_calls_ok: usize,
    flood_opened: Vec<usize>,
    flood_peak_mib: Vec<f64>,
    flood_after_mib: Vec<f64>,
    jobs_started: usize,
    jobs_fds: usize,
    list_bytes: usize,
}

fn main() {
    let args = args();
    raise_own_open_files_limit();
    let mut servers = args.references.clone();
    servers.push((
        "this build".to_owned(),
        PathBuf::from(env!("CARGO_BIN_EXE_mcp-tools")),
    ));
    let rt = tokio::runtime::Runtime::new().unwrap();
    let mut reports = Vec::new();
    for (name, binary) in &servers {
        println!("== {name}: {}", binary.display());
        reports.push((name.as_str(), rt.block_on(run_all(binary, &args))));
    }
    print_summary(&reports, &args);
}

async fn run_all(binary: &Path, args: &Args) -> Report {
    let mut report = Report::default();
    let tmp = tempfile::tempdir().unwrap();
    let server = Server::start(binary, tmp.path(), &["--max-sessions", "5000"]);
    soak(&server, args, &mut report).await;
    slow_clients(&server, args.slow_clients, &mut report).await;
    session_flood(&server, &mut report).await;
    drop(server);
    let server = Server::start(binary, tmp.path(), &["--max-jobs", "200"]);
    jobs(&server, &mut report).await;
    report
}

/// A server process with a soft open-files limit of 1024.
struct Server {
    child: Child,
    addr: String,
    url: Arc<str>,
}

impl Server {
    fn start(binary: &Path, scratch: &Path, extra: &[&str]) -> Server {
        use std::os::unix::process::CommandExt;
        let run = scratch.join(format!("run-{}", std::process::id() ^ rand_suffix()));
        let workspace = run.join("ws");
        std::fs::create_dir_all(&workspace).unwrap();
        std::fs::write(workspace.join("hello.txt"), "hello, world\n".repeat(8)).unwrap();
        for i in 0..50 {
            std::fs::write(
                workspace.join(format!("src{i}.rs")),
                "fn main() { println!(\"needle\"); }\n".repeat(20),
            )
            .unwrap();
        }
        let addr_file = run.join("addr");
        let mut cmd = Command::new(binary);
        cmd.args(["--port", "0", "--host", "127.0.0.1", "--token", TOKEN])
            .args(["--log-level", "error"])
            .arg("--workspace")
            .arg(&workspace)
            .arg("--state-dir")
            .arg(run.join("state"))
            .arg("--addr-file")
            .arg(&addr_file)
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        // Flags an older build may not know are only passed to builds that do.
        if knows_caps(binary) {
            cmd.args(extra);
        }
        // SAFETY: getrlimit/setrlimit are async-signal-safe.
        unsafe {
            cmd.pre_exec(|| {
                let mut limit = libc::rlimit {
                    rlim_cur: 0,
                    rlim_max: 0,
                };
                libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit);
                limit.rlim_cur = 1024.min(limit.rlim_max);
                libc::setrlimit(libc::RLIMIT_NOFILE, &limit);
                Ok(())
            });
        }
        let child = cmd.spawn().expect("start the server");
        let addr = support::wait_for(&addr_file);
        let url: Arc<str> = format!("http://{addr}/mcp").into();
        Server { child, addr, url }
    }

    fn rss_mib(&self) -> f64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .unwrap_or_default();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
            .map_or(0.0, |kib| kib / 1024.0)
    }

    fn fds(&self) -> usize {
        std::fs::read_dir(format!("/proc/{}/fd", self.child.id()))
            .map(|d| d.count())
            .unwrap_or(0)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `path` as given on the command line: cargo runs benchmarks in the
/// package's folder, so a relative path is taken from the workspace root.
fn from_workspace(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(path)
}

/// Whether `binary` has the session and job caps (`--max-sessions`).
fn knows_caps(binary: &Path) -> bool {
    Command::new(binary)
        .arg("--help")
        .output()
        .is_ok_and(|out| String::from_utf8_lossy(&out.stdout).contains("--max-sessions"))
}

fn rand_suffix() -> u32 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos())
}

async fn soak(server: &Server, args: &Args, report: &mut Report) {
    let time = Duration::from_secs_f64(args.minutes * 60.0);
    let calls = Arc::new(AtomicU64::new(0));
    let errors = Arc::new(AtomicU64::new(0));
    let deadline = Instant::now() + time;
    let mut workers = Vec::new();
    for w in 0..args.concurrency {
        let url = server.url.clone();
        let (calls, errors) = (calls.clone(), errors.clone());
        workers.push(tokio::spawn(async move {
            let Some(session) = open_within(&url).await else {
                errors.fetch_add(1, Ordering::Relaxed);
                return;
            };
            let mut id = 10u64;
            while Instant::now() < deadline {
                id += 1;
                let (tool, arguments) = match id % 5 {
                    0 => ("read_file", r#"{"path":"hello.txt"}"#.to_owned()),
                    1 => (
                        "write_file",
                        format!(r#"{{"path":"out{w}.txt","content":"call {id}\n"}}"#),
                    ),
                    2 => ("grep", r#"{"pattern":"needle","path":"."}"#.to_owned()),
                    3 => ("run_command", r#"{"command":"echo hi"}"#.to_owned()),
                    _ => ("list_directory", r#"{"path":"."}"#.to_owned()),
                };
                match call_within(&session, id, tool, &arguments).await {
                    Some(text) if !text.contains("\"isError\":true") => {
                        calls.fetch_add(1, Ordering::Relaxed);
                    }
                    _ => {
                        errors.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
        }));
    }
    let started = Instant::now();
    let every = (time / 6).max(Duration::from_secs(1));
    println!(
        "  soak: {} workers for {:.1} min",
        args.concurrency, args.minutes
    );
    while Instant::now() < deadline {
        tokio::time::sleep(every.min(deadline.saturating_duration_since(Instant::now()))).await;
        let (rss, fds) = (server.rss_mib(), server.fds());
        println!(
            "    t={:>5.0}s calls={:>8} errors={} rss={rss:.1} MiB fds={fds}",
            started.elapsed().as_secs_f64(),
            calls.load(Ordering::Relaxed),
            errors.load(Ordering::Relaxed)
        );
        report.rss_mib.push(rss);
        report.fds.push(fds);
    }
    for w in workers {
        let _ = w.await;
    }
    report.calls_per_s = calls.load(Ordering::Relaxed) as f64 / started.elapsed().as_secs_f64();
    report.errors = errors.load(Ordering::Relaxed);
}

async fn slow_clients(server: &Server, count: usize, report: &mut Report) {
    use tokio::io::AsyncWriteExt;
    let mut held = Vec::new();
    for _ in 0..count {
        let Ok(Ok(mut stream)) = tokio::time::timeout(
            Duration::from_secs(2),
            tokio::net::TcpStream::connect(&server.addr),
        )
        .await
        else {
            break;
        };
        let _ = stream
            .write_all(b"POST /mcp HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: appl")
            .await;
        held.push(stream);
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap();
    report.slow_health_ok = http
        .get(format!("http://{}/health", server.addr))
        .send()
        .await
        .is_ok_and(|r| r.status().is_success());
    for id in 0..20 {
        let call = tokio::time::timeout(Duration::from_secs(5), async {
            let session = Session::try_open(&server.url).await?;
            session
                .try_call(id, "read_file", r#"{"path":"hello.txt"}"#)
                .await
        })
        .await;
        // Count the calls that answered, not the time the others took.
        if matches!(call, Ok(Some(text)) if text.contains("hello, world")) {
            report.slow_calls_ok += 1;
        }
    }
    println!(
        "  slow clients: {} half-sent requests held; /health {}; {} of 20 calls answered",
        held.len(),
        if report.slow_health_ok {
            "ok"
        } else {
            "FAILED"
        },
        report.slow_calls_ok
    );
    drop(held);
    tokio::time::sleep(Duration::from_secs(1)).await;
}

async fn session_flood(server: &Server, report: &mut Report) {
    let http = support::client();
    for round in 0..3 {
        let deadline = Instant::now() + FLOOD_ROUND_DEADLINE;
        let mut sessions = Vec::new();
        for _ in 0..20 {
            if Instant::now() > deadline {
                println!("  session flood round {round}: deadline passed while opening");
                break;
            }
            let mut opening = tokio::task::JoinSet::new();
            for _ in 0..100 {
                let url = server.url.clone();
                opening.spawn(async move { open_within(&url).await });
            }
            while let Some(opened) = opening.join_next().await {
                if let Ok(Some(session)) = opened {
                    sessions.push(session);
                }
            }
        }
        let peak = server.rss_mib();
        let opened = sessions.len();
        for wave in sessions.chunks(100) {
            let mut closing = tokio::task::JoinSet::new();
            for session in wave {
                let (http, url, id) = (http.clone(), server.url.clone(), session.id().to_owned());
                closing.spawn(async move {
                    let _ = http
                        .delete(&*url)
                        .header("authorization", format!("Bearer {TOKEN}"))
                        .header("mcp-session-id", id)
                        .timeout(CALL_TIMEOUT)
                        .send()
                        .await;
                });
            }
            while closing.join_next().await.is_some() {}
        }
        // Sessions that could not be closed go with their connections.
        drop(sessions);
        tokio::time::sleep(Duration::from_secs(2)).await;
        let after = server.rss_mib();
        println!(
            "  session flood round {round}: {opened} opened, RSS {peak:.1} MiB at peak, {after:.1} MiB after closing"
        );
        report.flood_opened.push(opened);
        report.flood_peak_mib.push(peak);
        report.flood_after_mib.push(after);
    }
}

/// Opens a session, giving up after [`CALL_TIMEOUT`].
async fn open_within(url: &Arc<str>) -> Option<Session> {
    tokio::time::timeout(CALL_TIMEOUT, Session::try_open(url))
        .await
        .ok()
        .flatten()
}

/// Calls a tool, giving up after [`CALL_TIMEOUT`].
async fn call_within(session: &Session, id: u64, tool: &str, arguments: &str) -> Option<String> {
    tokio::time::timeout(CALL_TIMEOUT, session.try_call(id, tool, arguments))
        .await
        .ok()
        .flatten()
}

async fn jobs(server: &Server, report: &mut Report) {
    let url = server.url.clone();
    let Some(session) = open_within(&url).await else {
        println!("  jobs: no session could be opened");
        return;
    };
    let before = server.fds();
    for id in 0..200 {
        let text = call_within(
            &session,
            id,
            "run_command",
            r#"{"command":"sleep 30","background":true}"#,
        )
        .await
        .unwrap_or_default();
        if text.contains("Started background process") {
            report.jobs_started += 1;
        }
    }
    report.jobs_fds = server.fds().saturating_sub(before);
    report.list_bytes = call_within(&session, 1000, "process_list", "{}")
        .await
        .unwrap_or_default()
        .len();
    println!(
        "  jobs: {} of 200 started, {} descriptors held, process_list answer {} bytes",
        report.jobs_started, report.jobs_fds, report.list_bytes
    );
}

fn print_summary(reports: &[(&str, Report)], args: &Args) {
    println!();
    println!(
        "mixed calls at concurrency {} for {:.1} min; slow clients: {}",
        args.concurrency, args.minutes, args.slow_clients
    );
    type Row = (&'static str, fn(&Report) -> f64);
    let rows: Vec<Row> = vec![
        ("calls/s", (|r: &Report| r.calls_per_s)),
        ("errors", (|r: &Report| r.errors as f64)),
        ("soak RSS max MiB", (|r: &Report| max(&r.rss_mib))),
        (
            "soak RSS end MiB",
            (|r: &Report| r.rss_mib.last().copied().unwrap_or(0.0)),
        ),
        (
            "soak fds max",
            (|r: &Report| r.fds.iter().copied().max().unwrap_or(0) as f64),
        ),
        (
            "slow: /health ok",
            (|r: &Report| f64::from(u8::from(r.slow_health_ok))),
        ),
        (
            "slow: calls ok of 20",
            (|r: &Report| r.slow_calls_ok as f64),
        ),
        (
            "flood opened of 6000",
            (|r: &Report| r.flood_opened.iter().sum::<usize>() as f64),
        ),
        ("flood RSS peak MiB", (|r: &Report| max(&r.flood_peak_mib))),
        (
            "flood RSS after MiB",
            (|r: &Report| r.flood_after_mib.last().copied().unwrap_or(0.0)),
        ),
        ("jobs started of 200", (|r: &Report| r.jobs_started as f64)),
        ("fds held by jobs", (|r: &Report| r.jobs_fds as f64)),
        ("process_list bytes", (|r: &Report| r.list_bytes as f64)),
    ];
    // Values, then each binary's ratio to the first one given.
    print!("{:<22}", "");
    for (name, _) in reports {
        print!("{name:>14}");
    }
    for (name, _) in reports.iter().skip(1) {
        print!("{:>14}", format!("{name}/1st"));
    }
    println!();
    for (label, value) in &rows {
        print!("{label:<22}");
        for (_, r) in reports {
            print!("{:>14.1}", value(r));
        }
        let first = reports.first().map_or(0.0, |(_, r)| value(r));
        for (_, r) in reports.iter().skip(1) {
            if first > 0.0 {
                print!("{:>13.2}x", value(r) / first);
            } else {
                print!("{:>14}", "-");
            }
        }
        println!();
    }
}

fn max(values: &[f64]) -> f64 {
    values.iter().copied().fold(0.0, f64::max)
}

/// The benchmark itself holds a thousand connections open.
fn raise_own_open_files_limit() {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: plain system calls on a struct we own.
    unsafe {
        libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit);
        limit.rlim_cur = limit.rlim_max;
        libc::setrlimit(libc::RLIMIT_NOFILE, &limit);
    }
}
