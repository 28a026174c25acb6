//! Versions of the CNI specification this crate reads and writes.

use std::fmt;

use super::error::{Error, ErrorCode};

/// A spec version a result or configuration can be in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Version {
    V0_4_0,
    V1_0_0,
    V1_1_0,
}

/// Every version plugins of this crate accept, oldest first (the VERSION command's answer).
pub const SUPPORTED_VERSIONS: [Version; 3] = [Version::V0_4_0, Version::V1_0_0, Version::V1_1_0];

impl Version {
    pub const LATEST: Version = Version::V1_1_0;

    pub fn as_str(self) -> &'static str {
        match self {
            Version::V0_4_0 => "0.4.0",
            Version::V1_0_0 => "1.0.0",
            Version::V1_1_0 => "1.1.0",
        }
    }

    /// Parses a `cniVersion`; a version this crate does not speak is error code 1.
    pub fn parse(s: &str) -> Result<Version, Error> {
        match s {
            "0.4.0" => Ok(Version::V0_4_0),
            "1.0.0" => Ok(Version::V1_0_0),
            "1.1.0" => Ok(Version::V1_1_0),
            "" => Err(Error::new(ErrorCode::IncompatibleVersion, "cniVersion is missing or empty")),
            other => Err(Error::new(
                ErrorCode::IncompatibleVersion,
                format!("incompatible CNI versions: config is {other:?}, plugin supports [\"0.4.0\" \"1.0.0\" \"1.1.0\"]"),
            )),
        }
    }

    /// Whether results in this version describe IPs with a `version` field (0.x) rather than
    /// by their address alone (1.x).
    pub fn is_legacy(self) -> bool {
        self < Version::V1_0_0
    }
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The VERSION command's stdout: `cniVersion` answers in the version the runtime asked in
/// (or the latest), `supportedVersions` lists all.
pub fn version_reply(asked: Option<Version>) -> serde_json::Value {
    let versions: Vec<&str> = SUPPORTED_VERSIONS.iter().map(|v| v.as_str()).collect();
    serde_json::json!({
        "cniVersion": asked.unwrap_or(Version::LATEST).as_str(),
        "supportedVersions": versions,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_supported_and_refuses_others_with_code_1() {
        assert_eq!(Version::parse("1.1.0").unwrap(), Version::V1_1_0);
        assert_eq!(Version::parse("0.4.0").unwrap(), Version::V0_4_0);
        let err = Version::parse("0.3.1").unwrap_err();
        assert_eq!(err.code, ErrorCode::IncompatibleVersion);
        assert!(err.msg.contains("0.3.1"), "{}", err.msg);
        assert_eq!(Version::parse("").unwrap_err().code, ErrorCode::IncompatibleVersion);
    }

    #[test]
    fn version_reply_lists_all() {
        let v = version_reply(Some(Version::V1_0_0));
        assert_eq!(v["cniVersion"], "1.0.0");
        assert_eq!(v["supportedVersions"], serde_json::json!(["0.4.0", "1.0.0", "1.1.0"]));
    }
}
