//! `control-plane read` and `control-plane write`: files of a sandbox's
//! workspace.

use std::io::Read;

use super::CliError;
use crate::client::Client;

/// Prints the text of `path` in the workspace.
pub(super) async fn read(client: &Client, id: &str, path: &str) -> Result<(), CliError> {
    let content = client.read_file(id, path).await?;
    print!("{content}");
    Ok(())
}

/// Writes `path` in the workspace from the local file `source`, or stdin
/// when it is `-`.
pub(super) async fn write(
    client: &Client,
    id: &str,
    path: &str,
    source: &str,
) -> Result<(), CliError> {
    let content = if source == "-" {
        let mut s = String::new();
        std::io::stdin()
            .read_to_string(&mut s)
            .map_err(|e| CliError::Usage(format!("reading stdin: {e}")))?;
        s
    } else {
        std::fs::read_to_string(source)
            .map_err(|e| CliError::Usage(format!("reading {source}: {e}")))?
    };
    client.write_file(id, path, &content).await?;
    eprintln!("wrote {} bytes to {path}", content.len());
    Ok(())
}
