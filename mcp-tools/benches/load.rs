//! Load generator: read_file over MCP streamable HTTP, one session per
//! worker, against mcp-tools and, in the same run, a bare rmcp server whose
//! only tool returns a constant (the floor the transport sets).
//!
//!     cargo bench -p mcp-tools --bench load -- [--seconds 5] [--concurrency 1,16]
//!
//! Prints p50/p99 latency and calls/s for each server and concurrency, and
//! mcp-tools' figures as a ratio of the bare server's.

use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::serve::ListenerExt;
use rmcp::handler::server::router::tool::ToolRouter;
use rmcp::handler::server::wrapper::Parameters;
use rmcp::model::{CallToolResult, ContentBlock};
use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
use rmcp::transport::streamable_http_server::{StreamableHttpServerConfig, StreamableHttpService};
use rmcp::{ServerHandler, tool, tool_handler, tool_router};

mod support;

use support::Session;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("--bare-server") {
        bare_server(args.get(2).expect("address file"));
        return;
    }
    let flag = |name: &str| {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1).cloned())
    };
    let seconds: u64 = flag("--seconds").map_or(5, |s| s.parse().expect("--seconds"));
    let levels: Vec<usize> = flag("--concurrency")
        .unwrap_or_else(|| "1,16".into())
        .split(',')
        .map(|c| c.parse().expect("--concurrency"))
        .collect();

    let tmp = tempfile::tempdir().unwrap();
    let workspace = tmp.path().join("ws");
    std::fs::create_dir(&workspace).unwrap();
    std::fs::write(workspace.join("hello.txt"), "hello, world\n".repeat(8)).unwrap();
    let (tools, tools_addr) = support::start_mcp_tools(&workspace, tmp.path());
    let bare_file = tmp.path().join("bare.addr");
    let bare = Command::new(std::env::current_exe().unwrap())
        .arg("--bare-server")
        .arg(&bare_file)
        .stdout(Stdio::null())
        .spawn()
        .expect("start the bare server");
    let _guard = support::Kill(vec![tools, bare]);
    let bare_addr = support::wait_for(&bare_file);

    let rt = tokio::runtime::Runtime::new().unwrap();
    println!("read_file of a 104-byte file, {seconds} s per row, one MCP session per worker");
    println!(
        "{:<12} {:>5} {:>10} {:>10} {:>10} {:>14}",
        "server", "conc", "p50 ms", "p99 ms", "calls/s", "vs bare (c/s)"
    );
    for &conc in &levels {
        let bare = rt.block_on(run(&bare_addr, conc, Duration::from_secs(seconds)));
        let ours = rt.block_on(run(&tools_addr, conc, Duration::from_secs(seconds)));
        for (name, r) in [("bare rmcp", &bare), ("mcp-tools", &ours)] {
            println!(
                "{:<12} {:>5} {:>10.3} {:>10.3} {:>10.0} {:>14}",
                name,
                conc,
                r.p50,
                r.p99,
                r.rate,
                if name == "mcp-tools" {
                    format!("{:.2}x", r.rate / bare.rate)
                } else {
                    "1.00x".into()
                }
            );
        }
    }
}

struct Figures {
    p50: f64,
    p99: f64,
    rate: f64,
}

/// `conc` workers, each with its own session, call read_file until `time` passes.
async fn run(addr: &str, conc: usize, time: Duration) -> Figures {
    let url: Arc<str> = format!("http://{addr}/mcp").into();
    let deadline = Instant::now() + time;
    let started = Instant::now();
    let workers: Vec<_> = (0..conc)
        .map(|_| {
            let url = url.clone();
            tokio::spawn(async move {
                let session = Session::open(&url).await;
                let mut latencies = Vec::new();
                let mut id = 10u64;
                while Instant::now() < deadline {
                    id += 1;
                    let t = Instant::now();
                    session.read_file(id).await;
                    latencies.push(t.elapsed().as_secs_f64() * 1000.0);
                }
                latencies
            })
        })
        .collect();
    let mut all = Vec::new();
    for w in workers {
        all.extend(w.await.expect("worker"));
    }
    let elapsed = started.elapsed().as_secs_f64();
    all.sort_by(f64::total_cmp);
    let pct = |p: f64| all[((all.len() as f64 * p) as usize).min(all.len() - 1)];
    Figures {
        p50: pct(0.50),
        p99: pct(0.99),
        rate: all.len() as f64 / elapsed,
    }
}

/// The reference: an rmcp server with the same transport settings and one
/// tool that returns a constant.
#[derive(Clone)]
struct Bare {
    tool_router: ToolRouter<Bare>,
}

#[derive(serde::Deserialize, schemars::JsonSchema)]
struct PathArg {
    #[allow(dead_code)]
    path: String,
}

#[tool_router]
impl Bare {
    #[tool(description = "Returns a constant")]
    fn read_file(&self, Parameters(_): Parameters<PathArg>) -> CallToolResult {
        CallToolResult::success(vec![ContentBlock::text("hello, world\n".repeat(8))])
    }
}

#[tool_handler(router = self.tool_router)]
impl ServerHandler for Bare {}

fn bare_server(addr_file: &str) {
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let service = StreamableHttpService::new(
            || {
                Ok(Bare {
                    tool_router: Bare::tool_router(),
                })
            },
            Arc::new(LocalSessionManager::default()),
            StreamableHttpServerConfig::default(),
        );
        let app = axum::Router::new().nest_service("/mcp", service);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        std::fs::write(addr_file, listener.local_addr().unwrap().to_string()).unwrap();
        let listener = listener.tap_io(|tcp| {
            let _ = tcp.set_nodelay(true);
        });
        axum::serve(listener, app).await.unwrap();
    });
}
