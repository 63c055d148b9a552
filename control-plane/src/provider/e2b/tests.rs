//! Settings, URLs and errors of the e2b provider, without E2B.

use super::*;
use crate::config::ServeConfig;
use clap::Parser;
use serde_json::json;

#[derive(Parser)]
struct Serve {
    #[command(flatten)]
    config: ServeConfig,
}

/// Parses `serve` flags as the binary would, but with every environment
/// fallback removed: a developer's `E2B_API_KEY` (or any other variable)
/// cannot change what these tests see, so they never need to skip.
fn parse(args: &[&str]) -> ServeConfig {
    use clap::{CommandFactory, FromArgMatches};
    let mut argv = vec!["serve"];
    argv.extend_from_slice(args);
    let matches = Serve::command()
        .mut_args(|a| a.env(None))
        .try_get_matches_from(argv)
        .unwrap();
    Serve::from_arg_matches(&matches).unwrap().config
}

fn provider(args: &[&str]) -> Result<E2bProvider, StartError> {
    let mut argv = vec!["--provider", "e2b"];
    argv.extend_from_slice(args);
    let config = parse(&argv);
    E2bProvider::new(&config.e2b, config.max_timeout_secs)
}

/// What a record gives the provider.
struct Record {
    id: SandboxId,
    provider_id: ProviderId,
    data: Value,
}

impl Record {
    fn sandbox(&self) -> SandboxRef<'_> {
        SandboxRef {
            id: &self.id,
            provider_id: Some(&self.provider_id),
            state: SandboxState::Running,
            token: "t",
            timeout_secs: 60,
            provider_data: &self.data,
        }
    }
}

fn record(provider_id: &str, data: Value) -> Record {
    Record {
        id: SandboxId::parse("sb-1").unwrap(),
        provider_id: ProviderId::parse(provider_id).unwrap(),
        data,
    }
}

fn status(e: &Error) -> axum::http::StatusCode {
    crate::api::error::status_and_code(e).0
}

#[test]
fn sandbox_ports_are_reached_through_e2b_domains() {
    let p = provider(&["--e2b-api-key", "e2b_k"]).unwrap();
    assert_eq!(
        p.api.url("/sandboxes").as_str(),
        "https://api.e2b.app/sandboxes"
    );
    let data = Data {
        domain: String::new(),
        envd_access_token: Some("envd".into()),
        traffic_access_token: Some("traffic".into()),
    };
    let started = p.running(&ProviderId::parse("isb1").unwrap(), data);
    assert_eq!(started.endpoint.url, "https://6060-isb1.e2b.app/mcp");
    assert_eq!(started.endpoint.headers[TRAFFIC_HEADER], "traffic");
    let r = record("isb1", started.provider_data.clone());
    assert_eq!(
        p.port_url(r.sandbox(), 3000).unwrap(),
        "https://3000-isb1.e2b.app"
    );
    // No code-server unless configured.
    assert!(!p.has_editor(r.sandbox()));

    // The domain E2B answers with wins over the configured one.
    let r = record("isb2", json!({ "domain": "eu.e2b.dev" }));
    assert_eq!(
        p.port_url(r.sandbox(), 6060).unwrap(),
        "https://6060-isb2.eu.e2b.dev"
    );

    let p = provider(&[
        "--e2b-api-key",
        "k",
        "--e2b-domain",
        "e2b.dev",
        "--e2b-code-server",
    ])
    .unwrap();
    assert_eq!(
        p.api.url("/v2/sandboxes").as_str(),
        "https://api.e2b.dev/v2/sandboxes"
    );
    let r = record("x1", Value::Null);
    assert!(p.has_editor(r.sandbox()));
    assert_eq!(
        p.port_url(r.sandbox(), crate::provider::VSCODE_PORT)
            .unwrap(),
        "https://9000-x1.e2b.dev"
    );

    let p = provider(&["--e2b-api-key", "k", "--e2b-debug"]).unwrap();
    assert_eq!(
        p.port_url(record("x1", Value::Null).sandbox(), 8080)
            .unwrap(),
        "http://localhost:8080"
    );
}

#[test]
fn bad_settings_are_refused_at_start() {
    let message = |args: &[&str]| match provider(args) {
        Ok(_) => panic!("{args:?} was accepted"),
        Err(e) => e.to_string(),
    };
    assert!(message(&[]).contains("E2B_API_KEY"));
    assert!(message(&["--e2b-api-key", "k", "--e2b-api-url", "ftp://x"]).contains("E2B_API_URL"));
    assert!(message(&["--e2b-api-key", "k", "--e2b-token-file", "rel"]).contains("absolute"));
    // The key never goes in clear, except to a local stand-in in debug mode.
    assert!(
        message(&["--e2b-api-key", "k", "--e2b-api-url", "http://api.e2b.app"])
            .contains("not https")
    );
    provider(&[
        "--e2b-api-key",
        "k",
        "--e2b-api-url",
        "http://127.0.0.1:3000",
        "--e2b-debug",
    ])
    .unwrap();
    provider(&["--e2b-api-key", "k", "--e2b-api-url", "https://api.e2b.dev"]).unwrap();
    // A key is never part of what the settings print.
    let shown = format!("{:?}", parse(&["--e2b-api-key", "e2b_secret_value"]));
    assert!(!shown.contains("e2b_secret_value"), "{shown}");
}

#[test]
fn e2b_errors_become_plain_answers() {
    let p = provider(&["--e2b-api-key", "e2b_secret_value"]).unwrap();
    let answer = |status: u16, body: &str| api::Answer {
        status: StatusCode::from_u16(status).unwrap(),
        headers: Default::default(),
        body: body.as_bytes().to_vec(),
    };
    let e = p
        .api
        .error("create", &answer(429, r#"{"code":429,"message":"limit"}"#));
    assert_eq!(status(&e), axum::http::StatusCode::CONFLICT);
    assert!(e.to_string().contains("concurrent sandboxes"), "{e}");
    let e = p.api.error(
        "create",
        &answer(401, r#"{"code":401,"message":"bad key e2b_secret_value"}"#),
    );
    assert_eq!(status(&e), axum::http::StatusCode::BAD_GATEWAY);
    assert!(e.to_string().contains("E2B_API_KEY"), "{e}");
    assert!(!e.to_string().contains("e2b_secret_value"), "{e}");
    let e = p
        .api
        .error("pause", &answer(404, r#"{"code":404,"message":"nope"}"#));
    assert_eq!(status(&e), axum::http::StatusCode::GONE);
    let e = p
        .api
        .error("pause", &answer(409, r#"{"code":409,"message":"busy"}"#));
    assert_eq!(status(&e), axum::http::StatusCode::CONFLICT);
    let e = p.api.error("list", &answer(503, "upstream down"));
    assert_eq!(status(&e), axum::http::StatusCode::BAD_GATEWAY);
    assert!(e.to_string().contains("upstream down"), "{e}");
}

/// A redirect from the API is not followed, so the key does not go with
/// it to another host: the call fails instead.
#[tokio::test]
async fn the_api_key_does_not_follow_a_redirect() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    async fn listen(app: axum::Router) -> std::net::SocketAddr {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(l, app).await });
        addr
    }
    let reached = Arc::new(AtomicUsize::new(0));
    let r = reached.clone();
    let elsewhere = listen(axum::Router::new().fallback(move || {
        r.fetch_add(1, Ordering::SeqCst);
        async { "{}" }
    }))
    .await;
    let api = listen(axum::Router::new().fallback(move || async move {
        (
            axum::http::StatusCode::TEMPORARY_REDIRECT,
            [("location", format!("http://{elsewhere}/stolen"))],
        )
    }))
    .await;
    let p = provider(&[
        "--e2b-api-key",
        "e2b_secret_value",
        "--e2b-api-url",
        &format!("http://{api}"),
        "--e2b-debug",
    ])
    .unwrap();
    let Err(e) = p.api.detail(&ProviderId::parse("isb1").unwrap()).await else {
        panic!("a redirect was taken for an answer");
    };
    assert_eq!(status(&e), axum::http::StatusCode::BAD_GATEWAY, "{e}");
    assert!(e.to_string().contains("307"), "{e}");
    assert_eq!(
        reached.load(Ordering::SeqCst),
        0,
        "the redirect was followed"
    );
}
