//! The client library against a running control plane: create a sandbox,
//! run a command, write and read a file, delete it.
//!
//! ```sh
//! control-plane serve                      # in another terminal
//! cargo run -p control-plane --example client
//! ```
//!
//! It reads `CONTROL_PLANE_URL` (default `http://127.0.0.1:8080`) and
//! `CONTROL_PLANE_API_KEY` (when the control plane has keys). The tests run
//! it against a real control plane (tests/client_example.rs).

use control_plane_client::client::{Client, ClientError};
use control_plane_client::model::CreateSandboxRequest;

/// The walk-through itself, against the control plane at `url`.
pub async fn walk_through(url: &str, api_key: Option<String>) -> Result<(), ClientError> {
    let mut client = Client::new(url)?;
    if let Some(key) = api_key {
        client = client.with_api_key(key);
    }
    let sandbox = client
        .create(&CreateSandboxRequest {
            user_id: Some("alice".into()),
            ..Default::default()
        })
        .await?;
    println!("MCP endpoint: {}", sandbox.mcp_url);

    let run = client
        .run_command(&sandbox.sandbox_id, "echo hello", false)
        .await?;
    assert_eq!(run.exit_code, Some(0));
    assert_eq!(run.stdout, "hello\n");

    client
        .write_file(&sandbox.sandbox_id, "hello.txt", "hi")
        .await?;
    assert_eq!(
        client.read_file(&sandbox.sandbox_id, "hello.txt").await?,
        "hi"
    );
    client.delete(&sandbox.sandbox_id).await?;
    println!("created, used and deleted {}", sandbox.sandbox_id);
    Ok(())
}

#[tokio::main]
async fn main() -> Result<(), ClientError> {
    let url = std::env::var("CONTROL_PLANE_URL").unwrap_or_else(|_| "http://127.0.0.1:8080".into());
    walk_through(&url, std::env::var("CONTROL_PLANE_API_KEY").ok()).await
}
