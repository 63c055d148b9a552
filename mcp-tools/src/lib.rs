//! mcp-tools: the MCP server that runs inside each sandbox and gives an
//! LLM agent file, search and process tools over streamable HTTP.
//!
//! The binary is thin: [`config::Cli`] parses flags, [`server::Server`]
//! binds and serves, [`tools::Tools`] handles MCP. File tools go through
//! [`workspace::Workspace`], which confines every path to the workspace.

pub mod account;
pub mod auth;
pub mod config;
pub mod error;
pub mod health_check;
pub mod jsonrpc;
pub mod orphan_reaper;
pub mod output;
pub mod patch;
pub mod process;
pub mod pty;
pub mod server;
pub mod sessions;
pub mod text;
pub mod tools;
pub mod workspace;
