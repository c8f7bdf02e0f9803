//! Secrets (tokens, passwords, signing keys, private keys) come from a file
//! or an environment variable, never from the configuration itself, and
//! never show up in logs: [`Secret`] has no `Display` and a redacted
//! `Debug`, and errors name where a secret was looked for, not its value.

use std::fmt;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// Where to read a secret. In TOML: `token = { file = "/etc/enforcer/hec.token" }`
/// or `token = { env = "HEC_TOKEN" }`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum SecretSource {
    /// The file's contents, without a trailing line break.
    File(PathBuf),
    /// The variable's value.
    Env(String),
}

#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    #[error("cannot read secret file `{path}`: {source}")]
    File {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("secret environment variable `{0}` is not set or not UTF-8")]
    Env(String),
    #[error("secret from {0} is empty")]
    Empty(String),
}

impl SecretSource {
    /// Reads the secret now.
    pub fn load(&self) -> Result<Secret, SecretError> {
        let mut value = match self {
            SecretSource::File(path) => {
                std::fs::read_to_string(path).map_err(|source| SecretError::File {
                    path: path.clone(),
                    source,
                })?
            }
            SecretSource::Env(name) => {
                std::env::var(name).map_err(|_| SecretError::Env(name.clone()))?
            }
        };
        while value.ends_with('\n') || value.ends_with('\r') {
            value.pop();
        }
        if value.is_empty() {
            return Err(SecretError::Empty(self.describe()));
        }
        Ok(Secret(value))
    }

    /// Where the secret comes from, for messages (`file /x`, `env X`).
    pub fn describe(&self) -> String {
        match self {
            SecretSource::File(p) => format!("file `{}`", p.display()),
            SecretSource::Env(n) => format!("environment variable `{n}`"),
        }
    }
}

/// A secret value. `Debug` prints `Secret(<redacted>)`; there is no
/// `Display`. Use [`Secret::expose`] only where the value is sent.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_files_and_env_without_the_line_break() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("token");
        std::fs::write(&path, "s3cr3t\n").unwrap();
        let s = SecretSource::File(path.clone()).load().unwrap();
        assert_eq!(s.expose(), "s3cr3t");
        assert_eq!(format!("{s:?}"), "Secret(<redacted>)");

        std::fs::write(&path, "\n").unwrap();
        let err = SecretSource::File(path).load().unwrap_err().to_string();
        assert!(err.contains("is empty"), "{err}");

        let err = SecretSource::Env("SIEM_EXPORT_TEST_SURELY_UNSET".into())
            .load()
            .unwrap_err();
        assert!(err.to_string().contains("SIEM_EXPORT_TEST_SURELY_UNSET"));
        let var = std::env::vars().next().map(|(k, _)| k);
        if let Some(k) = var {
            let _ = SecretSource::Env(k).load();
        }
    }

    #[test]
    fn config_form() {
        let s: SecretSource = serde_json::from_str(r#"{"env":"HEC_TOKEN"}"#).unwrap();
        assert_eq!(s, SecretSource::Env("HEC_TOKEN".into()));
        let s: SecretSource = serde_json::from_str(r#"{"file":"/etc/t"}"#).unwrap();
        assert_eq!(s, SecretSource::File("/etc/t".into()));
        assert!(serde_json::from_str::<SecretSource>(r#""plain""#).is_err());
    }

    #[test]
    fn errors_never_contain_the_value() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("nope");
        let err = SecretSource::File(missing).load().unwrap_err().to_string();
        assert!(err.contains("nope"));
    }
}
