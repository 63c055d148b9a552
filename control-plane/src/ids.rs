//! Names of sandboxes: the control plane's own ([`SandboxId`]) and the
//! provider's ([`ProviderId`]); and of local templates ([`TemplateName`]).
//! Each is parsed once, where they enter (an
//! HTTP request, a database row, a provider's answer), so everything past
//! that point may put them in paths and URLs without checking again.

use std::fmt;

/// Longest id accepted: ours are 19 bytes, E2B's about 20.
const MAX_ID_LEN: usize = 64;

/// True for 1 to [`MAX_ID_LEN`] ASCII letters, digits and `-`: nothing that
/// could change the meaning of a path (`/`, `..`) or a URL (`?`, `#`, `%`).
fn is_plain_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= MAX_ID_LEN
        && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
}

/// The control plane's id of a sandbox, e.g. `sb-0123456789abcdef`.
///
/// Made by [`SandboxId::generate`] at create, or by [`SandboxId::parse`]
/// from a request or a database row: a path component and a URL segment as
/// it is.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SandboxId(String);

impl SandboxId {
    /// A new random id: `sb-` and 16 hex digits (64 random bits).
    ///
    /// Errors when the system has no randomness to give.
    pub fn generate() -> Result<Self, getrandom::Error> {
        Ok(SandboxId(format!("sb-{}", crate::random::hex(8)?)))
    }

    /// `s` if it is 1 to 64 ASCII letters, digits and `-`; `None` otherwise.
    pub fn parse(s: &str) -> Option<Self> {
        is_plain_name(s).then(|| SandboxId(s.to_string()))
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for SandboxId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(&self.0)
    }
}

/// A provider's own name for a sandbox (for `local` the [`SandboxId`]
/// itself, for `e2b` E2B's `sandboxID`), with the same alphabet as
/// [`SandboxId`], so it is safe in an API path or a host name.
#[derive(Debug, Clone, PartialEq, Eq, Hash, serde::Deserialize)]
#[serde(try_from = "String")]
pub struct ProviderId(String);

impl TryFrom<String> for ProviderId {
    type Error = String;

    fn try_from(s: String) -> Result<Self, String> {
        ProviderId::parse(&s).ok_or_else(|| format!("{s:?} is not a valid sandbox id"))
    }
}

impl ProviderId {
    /// `s` if it is 1 to 64 ASCII letters, digits and `-`; `None` otherwise.
    pub fn parse(s: &str) -> Option<Self> {
        is_plain_name(s).then(|| ProviderId(s.to_string()))
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl From<&SandboxId> for ProviderId {
    fn from(id: &SandboxId) -> Self {
        ProviderId(id.0.clone())
    }
}

impl fmt::Display for ProviderId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(&self.0)
    }
}

/// The name of a local template, e.g. `default` or `py-node.2`: 1 to 64
/// lowercase ASCII letters, digits, `-`, `_` and `.`, starting with a letter
/// or a digit (so never `.`, `..` or a hidden folder), and not `none`
/// (which means "no template" in the configuration). A path component as it is.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TemplateName(String);

impl TemplateName {
    /// `s` as a template name, or an error saying what a name may be.
    pub fn parse(s: &str) -> Result<Self, String> {
        let valid = s.len() <= MAX_ID_LEN
            && s.as_bytes()
                .first()
                .is_some_and(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
            && s.bytes().all(|b| {
                b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'-' | b'_' | b'.')
            })
            && s != "none";
        if valid {
            Ok(TemplateName(s.to_string()))
        } else {
            Err(format!(
                "{s:?} is not a template name: use 1 to {MAX_ID_LEN} lowercase letters, digits, \
                 '-', '_' and '.', starting with a letter or a digit (and not \"none\")"
            ))
        }
    }

    /// The name as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::str::FromStr for TemplateName {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        TemplateName::parse(s)
    }
}

impl fmt::Display for TemplateName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_cannot_change_a_path_or_a_url() {
        for bad in [
            "",
            "..",
            "a/b",
            "a b",
            "a?b",
            "a%2f",
            "a#b",
            "é",
            &"a".repeat(65),
        ] {
            assert!(SandboxId::parse(bad).is_none(), "{bad:?}");
            assert!(ProviderId::parse(bad).is_none(), "{bad:?}");
        }
        assert_eq!(SandboxId::parse("sb-00ff").unwrap().as_str(), "sb-00ff");
        assert_eq!(ProviderId::parse("i5x7q2").unwrap().as_str(), "i5x7q2");
    }

    #[test]
    fn template_names_are_plain_path_components() {
        for bad in [
            "",
            ".",
            "..",
            ".hidden",
            "a/b",
            "A",
            "a b",
            "none",
            "-x",
            &"a".repeat(65),
        ] {
            assert!(TemplateName::parse(bad).is_err(), "{bad:?}");
        }
        for good in ["default", "py-node.2", "0_x", &"a".repeat(64)] {
            assert_eq!(TemplateName::parse(good).unwrap().as_str(), good);
        }
    }

    #[test]
    fn generated_ids_parse() {
        let id = SandboxId::generate().unwrap();
        assert_eq!(id.as_str().len(), 19, "{id}");
        assert!(id.as_str().starts_with("sb-"));
        assert_eq!(SandboxId::parse(id.as_str()), Some(id));
    }
}
