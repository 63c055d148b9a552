//! The address clients reach the control plane at (`--public-url`), from
//! which the URLs it hands out are made: a sandbox's `mcp_url`
//! (`{base}/sandboxes/{id}/mcp`) and, for sandboxes reached through the
//! control plane, an exposed port's own origin (`{port}-{id}.{domain}`, E2B's
//! `{port}-{id}.e2b.app` scheme).
//!
//! Without `--public-url` it is the address the control plane listens on,
//! with `127.0.0.1` for an unspecified one (`0.0.0.0`, `::`), and ports are
//! served under `localhost` (RFC 6761: `*.localhost` is loopback).

use std::net::{IpAddr, SocketAddr};

/// Where clients reach the API: scheme, host, port and an optional path
/// prefix (a reverse proxy's), never a query or a fragment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublicUrl {
    /// `http://host:port[/prefix]`, without a trailing `/`.
    base: String,
    scheme: String,
    /// The domain exposed ports live under: the public host when it is a
    /// name, else `localhost`.
    port_domain: String,
    /// The port in the public URL, if it names one other than the scheme's.
    port: Option<u16>,
    /// The public host is an address other than loopback: the API is
    /// reached from elsewhere, exposed ports (under `localhost`) are not.
    ports_local_only: bool,
}

impl PublicUrl {
    /// Parses `--public-url`: an absolute `http` or `https` URL without user
    /// information, query or fragment, e.g. `https://sandboxes.example.com`
    /// or `http://203.0.113.7:8080/cp`.
    ///
    /// Errors: a message saying what is wrong with `text`.
    pub fn parse(text: &str) -> Result<PublicUrl, String> {
        let url = url::Url::parse(text).map_err(|e| format!("{text:?} is not a URL: {e}"))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(format!("{text:?}: the scheme must be http or https"));
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err(format!("{text:?}: no user or password in a public URL"));
        }
        if url.query().is_some() || url.fragment().is_some() {
            return Err(format!("{text:?}: no query or fragment in a public URL"));
        }
        // A name: exposed ports are its subdomains (a wildcard DNS record
        // `*.NAME` must lead to this control plane). An address has none.
        let (host, port_domain, ports_local_only) = match url.host() {
            Some(url::Host::Domain(name)) => {
                let name = name.to_ascii_lowercase();
                (name.clone(), name, false)
            }
            Some(url::Host::Ipv4(ip)) => (ip.to_string(), "localhost".into(), !ip.is_loopback()),
            Some(url::Host::Ipv6(ip)) => (format!("[{ip}]"), "localhost".into(), !ip.is_loopback()),
            None => return Err(format!("{text:?}: a public URL names a host")),
        };
        let port = url.port();
        let authority = match port {
            Some(p) => format!("{host}:{p}"),
            None => host,
        };
        let path = url.path().trim_end_matches('/');
        Ok(PublicUrl {
            base: format!("{}://{authority}{path}", url.scheme()),
            scheme: url.scheme().to_string(),
            port_domain,
            port,
            ports_local_only,
        })
    }

    /// The public URL of a control plane listening on `addr` and given no
    /// `--public-url`.
    pub fn of_listener(addr: SocketAddr) -> PublicUrl {
        let host = match addr.ip() {
            ip if ip.is_unspecified() => "127.0.0.1".to_string(),
            IpAddr::V6(v6) => format!("[{v6}]"),
            ip => ip.to_string(),
        };
        PublicUrl {
            base: format!("http://{host}:{}", addr.port()),
            scheme: "http".into(),
            port_domain: "localhost".into(),
            port: Some(addr.port()),
            ports_local_only: false,
        }
    }

    /// `http://host:port[/prefix]`, without a trailing `/`: API paths follow it.
    pub fn base(&self) -> &str {
        &self.base
    }

    /// The `mcp_url` of sandbox `id`: `{base}/sandboxes/{id}/mcp`.
    pub fn mcp_url(&self, id: &str) -> String {
        format!("{}/sandboxes/{id}/mcp", self.base)
    }

    /// The origin of `port` inside sandbox `id`:
    /// `{scheme}://{port}-{id}.{domain}[:{public port}]`.
    pub fn port_origin(&self, port: u16, id: &str) -> String {
        let mut url = format!("{}://{port}-{id}.{}", self.scheme, self.port_domain);
        if let Some(p) = self.port {
            url.push_str(&format!(":{p}"));
        }
        url
    }

    /// The domain exposed ports live under (`localhost` unless the public
    /// URL names a host).
    pub fn port_domain(&self) -> &str {
        &self.port_domain
    }

    /// True when exposed ports can only be reached from this machine
    /// (under `localhost`) although clients reach the API from elsewhere:
    /// the public URL names an address, which has no subdomains.
    pub fn ports_only_local(&self) -> bool {
        self.ports_local_only
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_come_from_the_public_address() {
        let p = PublicUrl::parse("https://Sandboxes.Example.com/").unwrap();
        assert_eq!(p.base(), "https://sandboxes.example.com");
        assert_eq!(
            p.mcp_url("sb-1"),
            "https://sandboxes.example.com/sandboxes/sb-1/mcp"
        );
        assert_eq!(
            p.port_origin(3000, "sb-1"),
            "https://3000-sb-1.sandboxes.example.com"
        );

        let p = PublicUrl::parse("http://203.0.113.7:8080/cp/").unwrap();
        assert_eq!(
            p.mcp_url("sb-1"),
            "http://203.0.113.7:8080/cp/sandboxes/sb-1/mcp"
        );
        assert_eq!(p.port_origin(80, "sb-1"), "http://80-sb-1.localhost:8080");
        assert!(p.ports_only_local());

        let p = PublicUrl::parse("http://[2001:db8::1]:9000").unwrap();
        assert_eq!(p.base(), "http://[2001:db8::1]:9000");
    }

    #[test]
    fn the_listener_stands_in_when_no_public_url_is_given() {
        let p = PublicUrl::of_listener("0.0.0.0:8080".parse().unwrap());
        assert_eq!(p.mcp_url("x"), "http://127.0.0.1:8080/sandboxes/x/mcp");
        assert_eq!(p.port_origin(3000, "x"), "http://3000-x.localhost:8080");
        assert!(!p.ports_only_local());
        let p = PublicUrl::of_listener("[::1]:80".parse().unwrap());
        assert_eq!(p.base(), "http://[::1]:80");
    }

    #[test]
    fn what_is_not_a_public_url_is_refused() {
        for bad in [
            "sandboxes.example.com",
            "ftp://example.com",
            "http://user:pw@example.com",
            "http://example.com/?a=1",
            "http://example.com/#top",
            "unix:/run/cp.sock",
        ] {
            assert!(PublicUrl::parse(bad).is_err(), "{bad} was accepted");
        }
    }
}
