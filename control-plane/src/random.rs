//! Randomness from the operating system: ids, tokens, retry jitter.

/// `bytes` random bytes as lowercase hex (twice as many characters).
///
/// Errors when the system has no randomness to give (never on Linux after
/// boot).
pub fn hex(bytes: usize) -> Result<String, getrandom::Error> {
    let mut buf = vec![0u8; bytes];
    getrandom::fill(&mut buf)?;
    Ok(buf.iter().map(|b| format!("{b:02x}")).collect())
}

/// A number in `[0, 1]`, or 0.5 when the system has no randomness to give:
/// good enough to spread retries, not for secrets.
pub fn fraction() -> f64 {
    let mut b = [0u8; 2];
    match getrandom::fill(&mut b) {
        Ok(()) => f64::from(u16::from_le_bytes(b)) / f64::from(u16::MAX),
        Err(_) => 0.5,
    }
}
