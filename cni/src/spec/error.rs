//! The error a plugin reports on stdout (spec section "Error"), with the well-known codes.
//! Modules have their own error enums and map into this at the plugin's edge.

use std::fmt;

use serde::{Deserialize, Serialize};

/// Well-known error codes of the spec; plugin-specific codes are 100 and up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorCode {
    /// 1: incompatible CNI version
    IncompatibleVersion,
    /// 2: unsupported field in network configuration
    UnsupportedField,
    /// 3: container unknown or does not exist
    UnknownContainer,
    /// 4: invalid necessary environment variables
    InvalidEnvironment,
    /// 5: I/O failure
    Io,
    /// 6: failed to decode content
    Decode,
    /// 7: invalid network config
    InvalidNetworkConfig,
    /// 11: try again later
    TryAgainLater,
    /// 50: the plugin is not available (cannot serve ADD)
    NotAvailable,
    /// 51: not available, and existing containers may have limited connectivity
    NotAvailableLimited,
    /// 100 and up: plugin-specific (here: kernel and firewall failures)
    Plugin(u32),
}

/// Our plugin-specific code for a failed netlink, sysctl or firewall operation.
pub const CODE_KERNEL: u32 = 100;
/// Our plugin-specific code for an IPAM range with no free address.
pub const CODE_RANGE_FULL: u32 = 101;

impl ErrorCode {
    pub fn number(self) -> u32 {
        match self {
            ErrorCode::IncompatibleVersion => 1,
            ErrorCode::UnsupportedField => 2,
            ErrorCode::UnknownContainer => 3,
            ErrorCode::InvalidEnvironment => 4,
            ErrorCode::Io => 5,
            ErrorCode::Decode => 6,
            ErrorCode::InvalidNetworkConfig => 7,
            ErrorCode::TryAgainLater => 11,
            ErrorCode::NotAvailable => 50,
            ErrorCode::NotAvailableLimited => 51,
            ErrorCode::Plugin(n) => n,
        }
    }

    pub fn from_number(n: u32) -> ErrorCode {
        match n {
            1 => ErrorCode::IncompatibleVersion,
            2 => ErrorCode::UnsupportedField,
            3 => ErrorCode::UnknownContainer,
            4 => ErrorCode::InvalidEnvironment,
            5 => ErrorCode::Io,
            6 => ErrorCode::Decode,
            7 => ErrorCode::InvalidNetworkConfig,
            11 => ErrorCode::TryAgainLater,
            50 => ErrorCode::NotAvailable,
            51 => ErrorCode::NotAvailableLimited,
            n => ErrorCode::Plugin(n),
        }
    }
}

/// A CNI error: printed as JSON on stdout by a failing plugin, read back by the runtime.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Error {
    pub code: ErrorCode,
    pub msg: String,
    pub details: String,
}

impl Error {
    pub fn new(code: ErrorCode, msg: impl Into<String>) -> Error {
        Error { code, msg: msg.into(), details: String::new() }
    }

    pub fn with_details(mut self, details: impl Into<String>) -> Error {
        self.details = details.into();
        self
    }

    pub fn invalid_config(msg: impl Into<String>) -> Error {
        Error::new(ErrorCode::InvalidNetworkConfig, msg)
    }

    pub fn decode(msg: impl Into<String>) -> Error {
        Error::new(ErrorCode::Decode, msg)
    }

    pub fn kernel(msg: impl Into<String>) -> Error {
        Error::new(ErrorCode::Plugin(CODE_KERNEL), msg)
    }

    /// The JSON a plugin prints: `cniVersion` is the version of the request, or the latest
    /// when the request could not be read.
    pub fn to_json(&self, version: &str) -> serde_json::Value {
        let mut v = serde_json::json!({ "cniVersion": version, "code": self.code.number(), "msg": self.msg });
        if !self.details.is_empty() {
            v["details"] = serde_json::Value::String(self.details.clone());
        }
        v
    }

    /// Reads a plugin's error output; `None` when the bytes are not a CNI error.
    pub fn from_json(bytes: &[u8]) -> Option<Error> {
        #[derive(Deserialize, Serialize)]
        struct Wire {
            code: u32,
            #[serde(default)]
            msg: String,
            #[serde(default)]
            details: String,
        }
        let w: Wire = serde_json::from_slice(bytes).ok()?;
        Some(Error { code: ErrorCode::from_number(w.code), msg: w.msg, details: w.details })
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} (CNI error code {})", self.msg, self.code.number())?;
        if !self.details.is_empty() {
            write!(f, ": {}", self.details)?;
        }
        Ok(())
    }
}

impl std::error::Error for Error {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_through_json() {
        let e = Error::new(ErrorCode::InvalidNetworkConfig, "bad subnet").with_details("10.0.0.0/33");
        let json = e.to_json("1.1.0");
        assert_eq!(json["code"], 7);
        assert_eq!(json["cniVersion"], "1.1.0");
        let back = Error::from_json(json.to_string().as_bytes()).unwrap();
        assert_eq!(back, e);
        assert_eq!(ErrorCode::from_number(101), ErrorCode::Plugin(101));
        assert!(Error::from_json(b"not json").is_none());
    }
}
