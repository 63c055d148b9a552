//! examples/client.rs, the client library's walk-through, run against a
//! real control plane so the documented example cannot rot.

mod common;

#[allow(dead_code)] // its `main` is for `cargo run --example client`
#[path = "../examples/client.rs"]
mod example;

use common::{KEY_ALICE, Options, Server};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_client_example_runs() {
    let s = Server::start_with(Options {
        api_keys: Some(format!("{KEY_ALICE}:alice")),
        ..Options::default()
    });
    example::walk_through(&s.url, Some(KEY_ALICE.to_string()))
        .await
        .expect("the example failed");
    // It cleans up after itself.
    let (_, list) = common::send(
        s.http
            .get(format!("{}/sandboxes", s.url))
            .bearer_auth(KEY_ALICE),
    )
    .await;
    assert_eq!(list["sandboxes"].as_array().unwrap().len(), 0, "{list}");
}
