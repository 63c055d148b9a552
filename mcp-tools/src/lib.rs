//! mcp-tools: the MCP server that runs inside each sandbox and gives an
//! LLM agent file, search and process tools over streamable HTTP.
//!
//! The binary is thin: [`config::Cli`] parses flags, [`server::Server`]
//! binds and serves, `tools::Tools` handles MCP. File tools go through
//! `workspace::Workspace`, which confines every path to the workspace.
//! Only what the binary and the tests use is public; the tools' arguments
//! and results are public in `mcp-tools-contract`.

pub mod account;
mod auth;
pub mod config;
mod error;
pub mod health_check;
mod jsonrpc;
pub mod orphan_reaper;
mod output;
mod patch;
mod process;
mod pty;
pub mod server;
mod sessions;
mod text;
mod tools;
mod workspace;
