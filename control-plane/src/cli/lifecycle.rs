//! `control-plane pause`, `resume`, `connect`, `timeout` and `delete`: a
//! sandbox's life after `create`.

use super::CliError;
use super::output::{seconds_until, with_spinner};
use crate::client::Client;

/// Stops the sandbox, keeping its files.
pub(super) async fn pause(client: &Client, id: &str) -> Result<(), CliError> {
    with_spinner("pausing", client.pause(id)).await?;
    println!("paused {id}");
    Ok(())
}

/// Starts a paused sandbox again and prints its MCP URL.
pub(super) async fn resume(client: &Client, id: &str) -> Result<(), CliError> {
    let r = with_spinner("resuming", client.resume(id)).await?;
    println!("resumed {id}: {}", r.sandbox.mcp_url);
    Ok(())
}

/// Resumes the sandbox if paused and pushes its expiry forward.
pub(super) async fn connect(client: &Client, id: &str) -> Result<(), CliError> {
    let r = with_spinner("connecting", client.connect(id)).await?;
    println!("{id} is {}: {}", r.sandbox.status, r.sandbox.mcp_url);
    Ok(())
}

/// Sets the inactivity timeout to `seconds` from now.
pub(super) async fn timeout(client: &Client, id: &str, seconds: u64) -> Result<(), CliError> {
    let s = client.set_timeout(id, seconds).await?;
    println!("{id} expires in {}s", seconds_until(s.expires_at));
    Ok(())
}

/// Deletes the sandbox and its files.
pub(super) async fn delete(client: &Client, id: &str) -> Result<(), CliError> {
    client.delete(id).await?;
    println!("deleted {id}");
    Ok(())
}
