//! Finding the programs the local provider runs: the mcp-tools binary,
//! the statically linked one bound into sandboxes on a template, and
//! helpers such as setsid(1) on `$PATH`.

use std::path::{Path, PathBuf};

use crate::config::LocalConfig;
use crate::error::StartError;

/// The mcp-tools binary: the configured one, else next to this binary, else on $PATH.
pub(super) fn find_mcp_tools(configured: Option<&Path>) -> Result<PathBuf, StartError> {
    if let Some(p) = configured {
        return p
            .canonicalize()
            .map_err(|e| StartError::Config(format!("--mcp-tools-bin {}: {e}", p.display())));
    }
    if let Ok(exe) = std::env::current_exe()
        && let Some(dir) = exe.parent()
    {
        let candidate = dir.join("mcp-tools");
        if candidate.is_file() {
            return Ok(candidate);
        }
    }
    if let Some(paths) = std::env::var_os("PATH") {
        for dir in std::env::split_paths(&paths) {
            let candidate = dir.join("mcp-tools");
            if candidate.is_file() {
                return Ok(candidate);
            }
        }
    }
    Err(StartError::Config(
        "cannot find the mcp-tools binary next to control-plane or on PATH; \
         build it (cargo build -p mcp-tools) or pass --mcp-tools-bin / MCP_TOOLS_BIN"
            .into(),
    ))
}

/// The statically linked mcp-tools for sandboxes on a template: the
/// configured one, else `mcp_tools` if it is static, else the musl release
/// build in this binary's target folder; `Err` says why there is none.
pub(super) fn find_static_mcp_tools(
    config: &LocalConfig,
    mcp_tools: &Path,
) -> std::result::Result<PathBuf, String> {
    let musl = "x86_64-unknown-linux-musl/release/mcp-tools";
    let candidate = match &config.template_mcp_tools_bin {
        Some(p) => p.clone(),
        None if is_static(mcp_tools) => return Ok(mcp_tools.to_path_buf()),
        None => match std::env::current_exe()
            .ok()
            .and_then(|exe| Some(exe.parent()?.parent()?.join(musl)))
        {
            Some(p) if p.is_file() => p,
            _ => {
                return Err(format!(
                    "{} is dynamically linked and no static build was found; build one \
                     (rustup target add x86_64-unknown-linux-musl; cargo build --release \
                     --target x86_64-unknown-linux-musl -p mcp-tools) and pass \
                     --template-mcp-tools-bin",
                    mcp_tools.display()
                ));
            }
        },
    };
    let candidate = candidate
        .canonicalize()
        .map_err(|e| format!("--template-mcp-tools-bin {}: {e}", candidate.display()))?;
    if !is_static(&candidate) {
        return Err(format!(
            "{} is not statically linked: a template has its own libc",
            candidate.display()
        ));
    }
    Ok(candidate)
}

/// True for an ELF executable with no program interpreter (`PT_INTERP`):
/// one that needs no dynamic loader and no libc from its root.
fn is_static(path: &Path) -> bool {
    use std::io::Read;
    let mut head = [0u8; 4096];
    let Ok(n) = std::fs::File::open(path).and_then(|mut f| f.read(&mut head)) else {
        return false;
    };
    let head = &head[..n];
    // ELF, 64-bit, little-endian (the only kind built here).
    if head.len() < 64 || &head[..4] != b"\x7fELF" || head[4] != 2 || head[5] != 1 {
        return false;
    }
    let u16_at = |o: usize| u16::from_le_bytes([head[o], head[o + 1]]) as usize;
    let phoff = u64::from_le_bytes(head[0x20..0x28].try_into().unwrap_or_default()) as usize;
    let (phentsize, phnum) = (u16_at(0x36), u16_at(0x38));
    const PT_INTERP: u32 = 3;
    (0..phnum).all(|i| {
        let at = phoff + i * phentsize;
        head.get(at..at + 4)
            .and_then(|b| b.try_into().ok())
            .is_some_and(|b| u32::from_le_bytes(b) != PT_INTERP)
    })
}

/// The program `name` in a folder of $PATH.
pub(super) fn find_on_path(name: &str) -> Option<PathBuf> {
    let paths = std::env::var_os("PATH")?;
    std::env::split_paths(&paths)
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}
