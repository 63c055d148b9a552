//! The client side of the control plane: [`client::Client`], a typed client
//! of its HTTP API (what the `control-plane` CLI uses), and [`model`], the
//! API's JSON bodies.
//!
//! It depends on reqwest and serde only: no database, no server, no MCP.
//! `examples/client.rs` in the `control-plane` package walks through it.

pub mod client;
pub mod model;
