//! The one error shape every command rejects with: `{ "code": string, "message": string }`.
//!
//! The codes are the core's stable codes ([`doppel_core::Error::code`]), the same that
//! `doppel --json` prints; the shell adds only `internal` (a background thread of the shell itself
//! failed), `open_failed` (the system could not open a source's file) and `notify_failed` (the
//! desktop could not show a notification).
//! `Serialize` is written by hand so that the shape cannot drift with a derive attribute; the
//! tests pin the exact JSON.

use std::borrow::Cow;

use serde::ser::{Serialize, SerializeStruct, Serializer};

/// A failed command, as the front end receives it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IpcError {
    /// A stable machine code.
    pub code: Cow<'static, str>,
    /// A message for the person.
    pub message: String,
}

impl IpcError {
    /// The shell itself failed (a background task panicked or was cancelled).
    pub fn internal(message: impl Into<String>) -> IpcError {
        IpcError { code: Cow::Borrowed("internal"), message: message.into() }
    }

    /// A request the shell refuses before it reaches the core.
    pub fn invalid_input(message: impl Into<String>) -> IpcError {
        IpcError::from(doppel_core::Error::InvalidInput(message.into()))
    }
}

impl From<&doppel_core::Error> for IpcError {
    fn from(e: &doppel_core::Error) -> IpcError {
        IpcError { code: Cow::Borrowed(e.code()), message: e.to_string() }
    }
}

impl From<doppel_core::Error> for IpcError {
    fn from(e: doppel_core::Error) -> IpcError {
        IpcError::from(&e)
    }
}

impl std::fmt::Display for IpcError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.code, self.message)
    }
}

impl Serialize for IpcError {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut s = serializer.serialize_struct("IpcError", 2)?;
        s.serialize_field("code", &self.code)?;
        s.serialize_field("message", &self.message)?;
        s.end()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use doppel_core::Error;

    fn json(e: impl Into<IpcError>) -> String {
        serde_json::to_string(&e.into()).unwrap()
    }

    #[test]
    fn the_error_shape_is_pinned() {
        assert_eq!(
            json(Error::NotFound { what: "source", id: "7".into() }),
            r#"{"code":"not_found","message":"source 7 not found"}"#
        );
        assert_eq!(
            json(Error::InvalidSetting { key: "top_k".into(), reason: "1 to 100".into() }),
            r#"{"code":"invalid_setting","message":"invalid value for top_k: 1 to 100"}"#
        );
        assert_eq!(
            json(Error::FileTooLarge { size: 100 * 1024 * 1024, limit: 50 * 1024 * 1024 }),
            r#"{"code":"file_too_large","message":"file too large (100 MB > limit of 50 MB)"}"#
        );
        assert_eq!(json(Error::Cancelled), r#"{"code":"cancelled","message":"cancelled"}"#);
        assert_eq!(
            json(Error::InvalidInput("the text is empty".into())),
            r#"{"code":"invalid_input","message":"the text is empty"}"#
        );
    }

    #[test]
    fn a_held_lock_names_its_holder() {
        let e = Error::AlreadyRunning { dir: "/data/doppel".into(), pid: Some(4242) };
        assert_eq!(
            json(e),
            r#"{"code":"already_running","message":"Doppel is already running on this data directory (pid 4242): /data/doppel"}"#
        );
    }

    #[test]
    fn keychain_and_quotes_are_escaped_not_broken() {
        let e = Error::Keychain { reason: "no \"Secret Service\"".into() };
        assert_eq!(
            json(e),
            r#"{"code":"keychain","message":"the OS keychain is unavailable: no \"Secret Service\""}"#
        );
    }

    #[test]
    fn the_shells_own_code_has_the_same_shape() {
        assert_eq!(
            json(IpcError::internal("task panicked")),
            r#"{"code":"internal","message":"task panicked"}"#
        );
    }
}
