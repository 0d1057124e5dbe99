//! JWT verification (HS256 with a shared secret; RS256, ES256 or EdDSA with a
//! PEM public key) and minting (HS256 only).
//!
//! `exp` and `sub` are required, `nbf` is checked when present, `iss` and
//! `aud` when configured. The algorithm comes from the token header but must
//! match a configured key; `none` is never accepted.

use std::time::Duration;

use chrono::{DateTime, Utc};
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use secrecy::ExposeSecret;
use serde::{Deserialize, Serialize};

use super::{Context, Failure, Identity, Method, Role, SetupError, UserId};
use crate::config::AuthConfig;

/// The audience of the short-lived tokens from `POST /v1/auth/socket-token`.
pub const SOCKET_AUDIENCE: &str = "socket";

/// Clock skew tolerated on `exp` and `nbf`, in seconds.
const LEEWAY_SECS: u64 = 30;

pub struct JwtKeys {
    secret: Option<(DecodingKey, EncodingKey)>,
    public: Option<(Vec<Algorithm>, DecodingKey)>,
    issuer: Option<String>,
    audience: Option<String>,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct Claims {
    pub sub: String,
    pub exp: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nbf: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iat: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iss: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub aud: Option<Audience>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<String>,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Audience {
    One(String),
    Many(Vec<String>),
}

impl Audience {
    fn contains(&self, name: &str) -> bool {
        match self {
            Audience::One(a) => a == name,
            Audience::Many(list) => list.iter().any(|a| a == name),
        }
    }
}

impl Claims {
    pub fn identity(&self, method: Method) -> Identity {
        Identity {
            user_id: UserId::new(&self.sub),
            role: if self.role.as_deref() == Some("admin") {
                Role::Admin
            } else {
                Role::User
            },
            method,
        }
    }
}

/// A freshly signed token.
pub struct Minted {
    pub token: String,
    pub expires_at: DateTime<Utc>,
}

#[derive(Debug, thiserror::Error)]
pub enum MintError {
    #[error("minting tokens needs SWITCHBOARD_JWT_SECRET (HS256)")]
    NoSecret,
    #[error("cannot sign token: {0}")]
    Sign(#[from] jsonwebtoken::errors::Error),
}

/// Three base64url segments separated by dots.
pub fn looks_like_jwt(token: &str) -> bool {
    let mut parts = token.split('.');
    let ok = |p: Option<&str>| {
        p.is_some_and(|p| {
            !p.is_empty()
                && p.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'=')
        })
    };
    ok(parts.next()) && ok(parts.next()) && ok(parts.next()) && parts.next().is_none()
}

impl JwtKeys {
    /// `None` when JWT authentication is not configured.
    pub fn from_config(config: &AuthConfig) -> Result<Option<Self>, SetupError> {
        let secret = config.jwt_secret.as_ref().map(|s| {
            let bytes = s.expose_secret().as_bytes();
            (
                DecodingKey::from_secret(bytes),
                EncodingKey::from_secret(bytes),
            )
        });
        let public = match &config.jwt_public_key {
            Some(path) => Some(read_public_key(path)?),
            None => None,
        };
        if secret.is_none() && public.is_none() {
            return Ok(None);
        }
        Ok(Some(Self {
            secret,
            public,
            issuer: config.jwt_issuer.clone(),
            audience: config.jwt_audience.clone(),
        }))
    }

    pub fn verify(&self, token: &str, context: Context) -> Result<Claims, Failure> {
        let header = jsonwebtoken::decode_header(token).map_err(|_| Failure::InvalidToken)?;
        let key = match (header.alg, &self.secret, &self.public) {
            (Algorithm::HS256, Some((key, _)), _) => key,
            (alg, _, Some((algs, key))) if algs.contains(&alg) => key,
            _ => return Err(Failure::InvalidToken),
        };
        let mut validation = Validation::new(header.alg);
        validation.leeway = LEEWAY_SECS;
        validation.validate_exp = true;
        validation.validate_nbf = true;
        // Audiences depend on the context; checked below.
        validation.validate_aud = false;
        validation.set_required_spec_claims(&["exp", "sub"]);
        if let Some(issuer) = &self.issuer {
            validation.set_issuer(&[issuer]);
        }
        let claims = jsonwebtoken::decode::<Claims>(token, key, &validation)
            .map_err(|e| match e.kind() {
                ErrorKind::ExpiredSignature => Failure::ExpiredToken,
                ErrorKind::InvalidIssuer => Failure::WrongIssuer,
                ErrorKind::MissingRequiredClaim(c) if c == "iss" => Failure::WrongIssuer,
                ErrorKind::InvalidAudience => Failure::WrongAudience,
                _ => Failure::InvalidToken,
            })?
            .claims;
        if UserId::parse(&claims.sub).is_err() {
            return Err(Failure::InvalidToken);
        }
        if self.issuer.is_some() && claims.iss.is_none() {
            return Err(Failure::WrongIssuer);
        }
        self.check_audience(claims.aud.as_ref(), context)?;
        Ok(claims)
    }

    fn check_audience(&self, aud: Option<&Audience>, context: Context) -> Result<(), Failure> {
        let configured = self.audience.as_deref();
        let accepted = |name: &str| match context {
            Context::Handshake => name == SOCKET_AUDIENCE || Some(name) == configured,
            Context::Http => Some(name) == configured && name != SOCKET_AUDIENCE,
        };
        match aud {
            None if configured.is_none() => Ok(()),
            None => Err(Failure::WrongAudience),
            Some(aud) if context == Context::Http && aud.contains(SOCKET_AUDIENCE) => {
                Err(Failure::WrongAudience)
            }
            Some(Audience::One(a)) if accepted(a) => Ok(()),
            Some(Audience::Many(list)) if list.iter().any(|a| accepted(a)) => Ok(()),
            Some(_) => Err(Failure::WrongAudience),
        }
    }

    /// Signs an HS256 token for `user`, valid for `ttl`. `audience` defaults
    /// to the configured one.
    pub fn mint(
        &self,
        user: &UserId,
        role: Role,
        ttl: Duration,
        audience: Option<&str>,
    ) -> Result<Minted, MintError> {
        let (_, key) = self.secret.as_ref().ok_or(MintError::NoSecret)?;
        let now = Utc::now();
        let expires_at = now + chrono::Duration::from_std(ttl).unwrap_or(chrono::Duration::MAX);
        let claims = Claims {
            sub: user.as_str().to_owned(),
            exp: expires_at.timestamp().max(0) as u64,
            nbf: None,
            iat: Some(now.timestamp().max(0) as u64),
            iss: self.issuer.clone(),
            aud: audience
                .map(str::to_owned)
                .or_else(|| self.audience.clone())
                .map(Audience::One),
            role: (role == Role::Admin).then(|| "admin".to_owned()),
        };
        let token = jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, key)?;
        Ok(Minted { token, expires_at })
    }
}

fn read_public_key(path: &std::path::Path) -> Result<(Vec<Algorithm>, DecodingKey), SetupError> {
    let pem = std::fs::read(path).map_err(|source| SetupError::ReadKey {
        path: path.to_owned(),
        source,
    })?;
    if let Ok(key) = DecodingKey::from_rsa_pem(&pem) {
        return Ok((vec![Algorithm::RS256], key));
    }
    if let Ok(key) = DecodingKey::from_ec_pem(&pem) {
        return Ok((vec![Algorithm::ES256], key));
    }
    if let Ok(key) = DecodingKey::from_ed_pem(&pem) {
        return Ok((vec![Algorithm::EdDSA], key));
    }
    Err(SetupError::BadKey {
        path: path.to_owned(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jwt_shape_is_three_base64url_segments() {
        assert!(looks_like_jwt("eyJh.eyJz.sig-_"));
        assert!(!looks_like_jwt("plain-api-token"));
        assert!(!looks_like_jwt("a.b"));
        assert!(!looks_like_jwt("a..c"));
        assert!(!looks_like_jwt("a.b.c.d"));
    }
}
