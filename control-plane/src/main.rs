//! The control plane: creates, tracks and deletes sandboxes. Not built yet.

fn main() {
    eprintln!("control-plane: not implemented yet");
    std::process::exit(2);
}
