//! The control plane: creates, tracks, pauses, resumes and deletes sandboxes
//! for AI agents, and runs commands and file operations in them through each
//! sandbox's own MCP endpoint.
//!
//! - [`serve()`] runs the HTTP service (`control-plane serve`).
//! - [`client::Client`] is the typed Rust client of that service.
//! - [`sandboxes::Sandboxes`] is the lifecycle: what each request does.
//! - [`provider::Provider`] is the seam where new places to run sandboxes plug in.

pub mod api;
pub mod cli;
pub mod config;
pub mod error;
pub mod ids;
pub mod mcp;
pub mod provider;
pub mod public_url;
mod random;
pub mod sandboxes;
pub mod serve;
pub mod store;
pub mod tools;

pub use control_plane_client::{client, model};
pub use serve::serve;
