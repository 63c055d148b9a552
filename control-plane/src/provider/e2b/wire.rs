//! E2B's JSON, with the names of E2B's OpenAPI spec (only the fields used
//! here), apart from the logic that uses it.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::ids::ProviderId;

/// `NewSandbox`, the body of `POST /sandboxes`.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct NewSandbox<'a> {
    /// The template's id or name.
    #[serde(rename = "templateID")]
    pub template_id: &'a str,
    /// Seconds until E2B stops the sandbox by itself.
    pub timeout: u64,
    /// At that timeout, pause (true) or kill (false).
    pub auto_pause: bool,
    /// Requests to envd need the sandbox's `X-Access-Token`.
    pub secure: bool,
    /// Who may reach the sandbox's ports.
    pub network: Network,
    /// Labels, by which E2B's list can be filtered.
    pub metadata: &'a BTreeMap<String, String>,
    /// Environment of processes started through envd.
    pub env_vars: BTreeMap<&'static str, &'a str>,
    /// Whether the sandbox reaches the internet; E2B's default (true) when absent.
    #[serde(
        rename = "allow_internet_access",
        skip_serializing_if = "Option::is_none"
    )]
    pub allow_internet_access: Option<bool>,
}

/// `SandboxNetworkConfig`.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Network {
    /// False: every request to a port needs `e2b-traffic-access-token`.
    pub allow_public_traffic: bool,
}

/// The body of `POST /sandboxes/{id}/timeout` and `/connect`.
#[derive(Debug, Serialize)]
pub struct Timeout {
    /// Seconds from now.
    pub timeout: u64,
}

/// `Sandbox`, E2B's answer to create and connect.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Sandbox {
    /// E2B's id of the sandbox.
    #[serde(rename = "sandboxID")]
    pub sandbox_id: ProviderId,
    /// Token for envd's API (`X-Access-Token`), for secure sandboxes.
    #[serde(default)]
    pub envd_access_token: Option<String>,
    /// Token every request to the sandbox's ports must carry.
    #[serde(default)]
    pub traffic_access_token: Option<String>,
    /// The domain its ports are reached under, when not the configured one.
    #[serde(default)]
    pub domain: Option<String>,
}

/// The fields of `SandboxDetail` and `ListedSandbox` used here.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ListedSandbox {
    /// E2B's id of the sandbox.
    #[serde(rename = "sandboxID")]
    pub sandbox_id: ProviderId,
    /// `running` or `paused`.
    pub state: String,
    /// When E2B stops it by itself (RFC 3339).
    #[serde(default)]
    pub end_at: Option<String>,
    /// Its labels.
    #[serde(default)]
    pub metadata: Option<BTreeMap<String, String>>,
}

impl ListedSandbox {
    /// True when it runs (as opposed to paused).
    pub fn is_running(&self) -> bool {
        self.state == "running"
    }

    /// True when it is paused.
    pub fn is_paused(&self) -> bool {
        self.state == "paused"
    }

    /// Unix seconds of `endAt`, if it is there and an RFC 3339 time.
    pub fn ends_at(&self) -> Option<i64> {
        self.end_at.as_deref().and_then(unix_seconds)
    }
}

/// `SandboxMetric`: one sample of a sandbox's use, taken by E2B every few
/// seconds (the answer to `GET /sandboxes/{sandboxID}/metrics` is a list of
/// them). Bytes and percent as the spec says.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SandboxMetric {
    /// When it was taken, in Unix seconds.
    pub timestamp_unix: i64,
    /// The VM's CPU cores.
    pub cpu_count: u32,
    /// CPU use in percent.
    pub cpu_used_pct: f64,
    /// Memory in use, in bytes.
    pub mem_used: u64,
    /// The VM's memory, in bytes.
    pub mem_total: u64,
    /// Disk in use, in bytes.
    pub disk_used: u64,
    /// The VM's disk, in bytes.
    pub disk_total: u64,
}

/// `Error`: `{code, message}`.
#[derive(Debug, Deserialize)]
pub struct ErrorBody {
    /// What E2B says went wrong.
    #[serde(default)]
    pub message: Option<String>,
}

/// Unix seconds of an RFC 3339 time such as `2025-03-01T12:00:00.123Z` or
/// `...+02:00`; `None` if it is not one.
pub fn unix_seconds(s: &str) -> Option<i64> {
    chrono::DateTime::parse_from_rfc3339(s.trim())
        .ok()
        .map(|t| t.timestamp())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_times_parse_to_unix_seconds() {
        assert_eq!(unix_seconds("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(unix_seconds("2025-03-01T12:00:00Z"), Some(1_740_830_400));
        assert_eq!(
            unix_seconds("2025-03-01T12:00:00.987654Z"),
            Some(1_740_830_400)
        );
        assert_eq!(
            unix_seconds("2025-03-01T14:00:00+02:00"),
            Some(1_740_830_400)
        );
        assert_eq!(unix_seconds("2025-03-01"), None);
        assert_eq!(unix_seconds("not a time"), None);
    }

    #[test]
    fn a_new_sandbox_has_e2bs_field_names() {
        let metadata = BTreeMap::from([("k".to_string(), "v".to_string())]);
        let body = NewSandbox {
            template_id: "t",
            timeout: 60,
            auto_pause: true,
            secure: true,
            network: Network {
                allow_public_traffic: false,
            },
            metadata: &metadata,
            env_vars: BTreeMap::from([("A", "b")]),
            allow_internet_access: None,
        };
        assert_eq!(
            serde_json::to_value(&body).unwrap(),
            serde_json::json!({
                "templateID": "t", "timeout": 60, "autoPause": true, "secure": true,
                "network": { "allowPublicTraffic": false },
                "metadata": { "k": "v" }, "envVars": { "A": "b" },
            })
        );
        let body = NewSandbox {
            allow_internet_access: Some(false),
            ..body
        };
        assert_eq!(
            serde_json::to_value(&body).unwrap()["allow_internet_access"],
            false
        );
    }
}
