//! Authentication: who is connecting.
//!
//! A client is authenticated once per Socket.IO namespace handshake and on
//! every HTTP request. The credential is taken from the first place that
//! holds one — `auth.token`, then `Authorization: Bearer`, then the cookie —
//! and an invalid credential is a failure, never a reason to try the next
//! place. A credential is a static API token (compared in constant time) or a
//! JWT ([`jwt`]).

pub mod http;
pub mod jwt;
pub mod socket;
pub mod socket_token;

use std::fmt;

use ::http::HeaderMap;
use secrecy::ExposeSecret;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::config::AuthConfig;
pub use jwt::JwtKeys;

/// A user id: a JWT's `sub`, or the user of a static API token.
#[derive(Debug, Clone, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(transparent)]
pub struct UserId(String);

/// The longest user id accepted, in bytes.
pub const MAX_USER_ID_BYTES: usize = 256;

impl UserId {
    /// Wraps an id the server already trusts (its own rows, its own names).
    pub fn new(id: impl Into<String>) -> Self {
        Self(id.into())
    }

    /// Checks an id that comes from outside (a JWT's `sub`, a setting):
    /// 1 to [`MAX_USER_ID_BYTES`] bytes, no control characters or line
    /// separators, which would let an id forge log lines.
    pub fn parse(id: &str) -> Result<Self, &'static str> {
        if id.is_empty() {
            return Err("a user id must not be empty");
        }
        if id.len() > MAX_USER_ID_BYTES {
            return Err("a user id must be at most 256 bytes");
        }
        if id
            .chars()
            .any(|c| c.is_control() || matches!(c, '\u{2028}' | '\u{2029}'))
        {
            return Err("a user id must not contain control characters or line breaks");
        }
        Ok(Self(id.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for UserId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    User,
    /// May see and act on every session.
    Admin,
}

/// How a client proved who it is; logged with every handshake.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Method {
    Token,
    Jwt,
    Cookie,
    Disabled,
    /// No credential was presented.
    None,
}

impl Method {
    pub fn as_str(self) -> &'static str {
        match self {
            Method::Token => "token",
            Method::Jwt => "jwt",
            Method::Cookie => "cookie",
            Method::Disabled => "disabled",
            Method::None => "none",
        }
    }
}

/// An authenticated client. Stored in each socket's extensions.
#[derive(Debug, Clone)]
pub struct Identity {
    pub user_id: UserId,
    pub role: Role,
    pub method: Method,
}

impl Identity {
    pub fn is_admin(&self) -> bool {
        self.role == Role::Admin
    }

    /// The room every socket of this user joins, in each namespace.
    pub fn room(&self) -> String {
        user_room(&self.user_id)
    }
}

pub fn user_room(user: &UserId) -> String {
    format!("user:{user}")
}

/// Why a credential was refused; the wire name follows `unauthorized: `.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Failure {
    #[error("missing_credentials")]
    MissingCredentials,
    #[error("invalid_token")]
    InvalidToken,
    #[error("expired_token")]
    ExpiredToken,
    #[error("wrong_audience")]
    WrongAudience,
    #[error("wrong_issuer")]
    WrongIssuer,
}

/// Where the credential is used: socket tokens (`aud` = `socket`) are
/// accepted at Socket.IO handshakes only.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Context {
    Handshake,
    Http,
}

/// A credential as presented, before it is checked.
#[derive(Debug, Clone)]
pub enum Presented<'a> {
    /// `auth.token` or `Authorization: Bearer`: a static token or a JWT.
    Token(&'a str),
    /// The session cookie: a JWT.
    Cookie(String),
}

/// The outcome of one authentication attempt, for the log line.
#[derive(Debug)]
pub struct Attempt {
    pub method: Method,
    pub result: Result<Identity, Failure>,
}

/// Checks credentials against the configured methods.
pub struct Authenticator {
    /// SHA-256 of each static token, so comparisons take the same time
    /// whatever the lengths.
    tokens: Vec<(UserId, [u8; 32])>,
    jwt: Option<JwtKeys>,
    cookie_name: String,
    disabled: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    #[error("cannot read SWITCHBOARD_JWT_PUBLIC_KEY {path}: {source}")]
    ReadKey {
        path: std::path::PathBuf,
        source: std::io::Error,
    },
    #[error("SWITCHBOARD_JWT_PUBLIC_KEY {path} is not a PEM RSA, EC (P-256) or Ed25519 public key")]
    BadKey { path: std::path::PathBuf },
}

impl Authenticator {
    pub fn from_config(config: &AuthConfig) -> Result<Self, SetupError> {
        let tokens = config
            .api_tokens
            .iter()
            .map(|t| (UserId::new(&t.user_id), digest(t.token.expose_secret())))
            .collect();
        let jwt = JwtKeys::from_config(config)?;
        Ok(Self {
            tokens,
            jwt,
            cookie_name: config.cookie_name.clone(),
            disabled: config.disabled,
        })
    }

    pub fn jwt(&self) -> Option<&JwtKeys> {
        self.jwt.as_ref()
    }

    pub fn cookie_name(&self) -> &str {
        &self.cookie_name
    }

    /// Authenticates a handshake or request. `auth_token` is the
    /// handshake's `auth.token` (`Some(Err)` when present but not a string).
    pub fn authenticate(
        &self,
        auth_token: Option<Result<&str, ()>>,
        headers: &HeaderMap,
        context: Context,
    ) -> Attempt {
        if self.disabled {
            return Attempt {
                method: Method::Disabled,
                result: Ok(Identity {
                    user_id: UserId::new("anonymous"),
                    role: Role::User,
                    method: Method::Disabled,
                }),
            };
        }
        match presented(auth_token, headers, &self.cookie_name) {
            Ok(Some(credential)) => self.check(credential, context),
            Ok(None) => Attempt {
                method: Method::None,
                result: Err(Failure::MissingCredentials),
            },
            Err(failure) => Attempt {
                method: Method::Token,
                result: Err(failure),
            },
        }
    }

    fn check(&self, credential: Presented<'_>, context: Context) -> Attempt {
        match credential {
            Presented::Token(token) => {
                if let Some(user_id) = self.static_token_user(token) {
                    return Attempt {
                        method: Method::Token,
                        result: Ok(Identity {
                            user_id,
                            role: Role::User,
                            method: Method::Token,
                        }),
                    };
                }
                match (&self.jwt, jwt::looks_like_jwt(token)) {
                    (Some(keys), true) => Attempt {
                        method: Method::Jwt,
                        result: keys.verify(token, context).map(|c| c.identity(Method::Jwt)),
                    },
                    (_, looks_like_jwt) => Attempt {
                        method: if looks_like_jwt {
                            Method::Jwt
                        } else {
                            Method::Token
                        },
                        result: Err(Failure::InvalidToken),
                    },
                }
            }
            Presented::Cookie(token) => Attempt {
                method: Method::Cookie,
                result: match &self.jwt {
                    Some(keys) => keys
                        .verify(&token, context)
                        .map(|c| c.identity(Method::Cookie)),
                    None => Err(Failure::InvalidToken),
                },
            },
        }
    }

    /// Compares against every configured token without stopping early.
    fn static_token_user(&self, token: &str) -> Option<UserId> {
        let presented = digest(token);
        let mut found = None;
        for (user, expected) in &self.tokens {
            if bool::from(expected.ct_eq(&presented)) && found.is_none() {
                found = Some(user.clone());
            }
        }
        found
    }
}

fn digest(text: &str) -> [u8; 32] {
    Sha256::digest(text.as_bytes()).into()
}

/// Picks the credential by precedence. `Ok(None)`: nothing was presented.
fn presented<'a>(
    auth_token: Option<Result<&'a str, ()>>,
    headers: &'a HeaderMap,
    cookie_name: &str,
) -> Result<Option<Presented<'a>>, Failure> {
    match auth_token {
        Some(Ok(token)) if !token.is_empty() => return Ok(Some(Presented::Token(token))),
        Some(_) => return Err(Failure::InvalidToken),
        None => {}
    }
    if let Some(value) = headers.get(::http::header::AUTHORIZATION) {
        let value = value.to_str().map_err(|_| Failure::InvalidToken)?;
        let (scheme, token) = value.split_once(' ').ok_or(Failure::InvalidToken)?;
        let token = token.trim();
        if !scheme.eq_ignore_ascii_case("bearer") || token.is_empty() {
            return Err(Failure::InvalidToken);
        }
        return Ok(Some(Presented::Token(token)));
    }
    Ok(cookie_value(headers, cookie_name).map(Presented::Cookie))
}

/// The value of the named cookie, from any `Cookie` header.
pub fn cookie_value(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(::http::header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(cookie::Cookie::split_parse)
        .filter_map(Result::ok)
        .find(|c| c.name() == name)
        .map(|c| c.value_trimmed().to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use ::http::HeaderValue;

    #[test]
    fn auth_token_wins_over_header_and_cookie() {
        let mut headers = HeaderMap::new();
        headers.insert("authorization", HeaderValue::from_static("Bearer h"));
        headers.insert("cookie", HeaderValue::from_static("sb_session=c"));
        assert!(matches!(
            presented(Some(Ok("a")), &headers, "sb_session"),
            Ok(Some(Presented::Token("a")))
        ));
        assert!(matches!(
            presented(None, &headers, "sb_session"),
            Ok(Some(Presented::Token("h")))
        ));
        headers.remove("authorization");
        assert!(matches!(
            presented(None, &headers, "sb_session"),
            Ok(Some(Presented::Cookie(c))) if c == "c"
        ));
    }

    #[test]
    fn a_malformed_credential_does_not_fall_through() {
        let mut headers = HeaderMap::new();
        headers.insert("cookie", HeaderValue::from_static("sb_session=c"));
        assert_eq!(
            presented(Some(Err(())), &headers, "sb_session").unwrap_err(),
            Failure::InvalidToken
        );
        headers.insert("authorization", HeaderValue::from_static("Basic xyz"));
        assert_eq!(
            presented(None, &headers, "sb_session").unwrap_err(),
            Failure::InvalidToken
        );
    }

    #[test]
    fn user_ids_that_could_forge_log_lines_are_refused() {
        assert!(UserId::parse("alice@example.com").is_ok());
        assert!(UserId::parse("émilie").is_ok());
        for bad in [
            "",
            "alice\n INFO fake",
            "a\rb",
            "a\u{1b}[31m",
            "a\u{2028}b",
            "a\0",
        ] {
            assert!(UserId::parse(bad).is_err(), "{bad:?}");
        }
        assert!(UserId::parse(&"x".repeat(MAX_USER_ID_BYTES)).is_ok());
        assert!(UserId::parse(&"x".repeat(MAX_USER_ID_BYTES + 1)).is_err());
    }

    #[test]
    fn cookies_are_found_among_others() {
        let mut headers = HeaderMap::new();
        headers.insert(
            "cookie",
            HeaderValue::from_static("a=1; sb_session=tok; b=2"),
        );
        assert_eq!(cookie_value(&headers, "sb_session").as_deref(), Some("tok"));
        assert_eq!(cookie_value(&headers, "missing"), None);
    }
}
