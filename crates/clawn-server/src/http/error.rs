//! The one place where errors become HTTP answers: `{code, message, hint}` with a status.
//! Internal failures are logged with their cause and answered with a generic 500; no SQL
//! error or stack ever reaches a client.

use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::StatusCode;
use axum::http::request::Parts;
use axum::response::{IntoResponse, Response};
use clawn_proto::api::{ApiError, ErrorCode};
use serde::de::DeserializeOwned;

use crate::store::StoreError;
use crate::store::devices::DeviceError;

/// An API error answer.
#[derive(Debug, Clone)]
pub struct ApiErr {
    /// HTTP status.
    pub status: StatusCode,
    /// Stable code.
    pub code: ErrorCode,
    /// Human message.
    pub message: String,
    /// What to do.
    pub hint: Option<String>,
    /// Seconds to wait (429).
    pub retry_after: Option<u64>,
}

impl ApiErr {
    /// A new error.
    pub fn new(status: StatusCode, code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
            hint: None,
            retry_after: None,
        }
    }
    /// Adds a hint.
    pub fn hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }
    /// 400 with a code.
    pub fn bad_request(code: ErrorCode, message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, code, message)
    }
    /// 404 for `what`.
    pub fn not_found(what: &str) -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            ErrorCode::NotFound,
            format!("{what} not found"),
        )
    }
    /// 401.
    pub fn unauthenticated() -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            ErrorCode::Unauthenticated,
            "sign in first",
        )
        .hint("send `Authorization: Bearer <token>` or sign in to get a session cookie")
    }
    /// 403 for non-admins on admin routes.
    pub fn forbidden() -> Self {
        Self::new(
            StatusCode::FORBIDDEN,
            ErrorCode::Forbidden,
            "this needs an admin account",
        )
    }
    /// 409.
    pub fn conflict(code: ErrorCode, message: impl Into<String>) -> Self {
        Self::new(StatusCode::CONFLICT, code, message)
    }
    /// 500, logging the cause.
    pub fn internal(cause: &dyn std::fmt::Display) -> Self {
        tracing::error!(error = %cause, "internal error");
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            ErrorCode::Internal,
            "internal error; the server log has details",
        )
    }
}

impl IntoResponse for ApiErr {
    fn into_response(self) -> Response {
        let body = ApiError {
            code: self.code,
            message: self.message,
            hint: self.hint,
        };
        let mut resp = (self.status, axum::Json(body)).into_response();
        if let Some(s) = self.retry_after
            && let Ok(v) = s.to_string().parse()
        {
            resp.headers_mut()
                .insert(axum::http::header::RETRY_AFTER, v);
        }
        resp
    }
}

impl From<StoreError> for ApiErr {
    fn from(e: StoreError) -> Self {
        Self::internal(&e)
    }
}

impl From<DeviceError> for ApiErr {
    fn from(e: DeviceError) -> Self {
        match e {
            DeviceError::NotFound => Self::not_found("device"),
            DeviceError::RegionNotFound => {
                Self::not_found("region").hint("list regions with GET /api/v1/regions")
            }
            DeviceError::SlotsExhausted { slots } => Self::conflict(
                ErrorCode::SlotsExhausted,
                format!("all {slots} of your device slots are in use"),
            )
            .hint("revoke a device you no longer use, or ask an admin for more slots"),
            DeviceError::NoCapacity(region) => Self::new(
                StatusCode::SERVICE_UNAVAILABLE,
                ErrorCode::NoCapacity,
                format!("no node in region {region} can take a new device right now"),
            )
            .hint("try another region or try again later"),
            DeviceError::PoolExhausted => Self::new(
                StatusCode::SERVICE_UNAVAILABLE,
                ErrorCode::PoolExhausted,
                "the node's tunnel address pool is exhausted",
            )
            .hint("an admin can add a node to the region"),
            DeviceError::KeyInUse => {
                Self::conflict(ErrorCode::KeyInUse, "this public key is already registered")
                    .hint("generate a new key pair for every device and every rotation")
            }
            DeviceError::AlreadyRevoked => {
                Self::conflict(ErrorCode::DeviceRevoked, "the device is revoked")
            }
            DeviceError::Store(e) => Self::internal(&e),
        }
    }
}

impl From<crate::store::routing::ReassignError> for ApiErr {
    fn from(e: crate::store::routing::ReassignError) -> Self {
        use crate::store::routing::ReassignError as R;
        match e {
            R::Quarantined => Self::conflict(
                ErrorCode::DeviceQuarantined,
                "this device is quarantined: region moves are blocked",
            )
            .hint("an admin reviews quarantined devices; ask yours to release it"),
            R::SameRegion(r) => Self::conflict(
                ErrorCode::SameRegion,
                format!("the device is already in region {r}"),
            ),
            R::RateLimited {
                limit,
                retry_after_secs,
            } => {
                let mut err = Self::new(
                    StatusCode::TOO_MANY_REQUESTS,
                    ErrorCode::ReassignRateLimited,
                    format!("a device may move region at most {limit} times per hour"),
                )
                .hint(format!("try again in {retry_after_secs} s"));
                err.retry_after = Some(retry_after_secs);
                err
            }
            R::Device(d) => d.into(),
        }
    }
}

/// `Json<T>` whose rejections are API errors.
#[derive(Debug, Clone, Copy, Default)]
pub struct ApiJson<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for ApiJson<T> {
    type Rejection = ApiErr;
    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let is_json = req
            .headers()
            .get(axum::http::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| {
                let v = v.to_ascii_lowercase();
                v.starts_with("application/json")
                    || (v.starts_with("application/") && v.contains("+json"))
            });
        if !is_json {
            return Err(ApiErr::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                ErrorCode::UnsupportedMediaType,
                "send the body as JSON",
            )
            .hint("set `Content-Type: application/json`"));
        }
        let bytes = axum::body::Bytes::from_request(req, state)
            .await
            .map_err(|e| {
                if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
                    ApiErr::new(
                        StatusCode::PAYLOAD_TOO_LARGE,
                        ErrorCode::BodyTooLarge,
                        "the request body is too large",
                    )
                } else {
                    ApiErr::bad_request(ErrorCode::InvalidBody, e.body_text())
                }
            })?;
        // JSON can only carry NUL as the escape \u0000; no text field of ours may hold one
        // (PostgreSQL TEXT cannot), so refuse it here for every body at once.
        if bytes.windows(6).any(|w| w == b"\\u0000") {
            return Err(ApiErr::bad_request(
                ErrorCode::InvalidBody,
                "text may not contain NUL characters",
            ));
        }
        match axum::Json::<T>::from_bytes(&bytes) {
            Ok(axum::Json(v)) => Ok(Self(v)),
            Err(e) => Err(ApiErr::bad_request(
                ErrorCode::InvalidBody,
                clean_serde_message(&e.body_text()),
            )),
        }
    }
}

fn clean_serde_message(s: &str) -> String {
    // axum prefixes "Failed to deserialize the JSON body into the target type: ".
    s.split_once(": ")
        .map(|(_, rest)| rest.to_string())
        .unwrap_or_else(|| s.to_string())
}

/// `Path<T>` whose rejections are API errors.
#[derive(Debug, Clone, Copy)]
pub struct ApiPath<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned + Send> FromRequestParts<S> for ApiPath<T> {
    type Rejection = ApiErr;
    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        match axum::extract::Path::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Path(v)) => Ok(Self(v)),
            Err(PathRejection::FailedToDeserializePathParams(e)) => {
                Err(ApiErr::bad_request(ErrorCode::InvalidPath, e.body_text()))
            }
            Err(e) => Err(ApiErr::bad_request(ErrorCode::InvalidPath, e.body_text())),
        }
    }
}

/// `Query<T>` whose rejections are API errors.
#[derive(Debug, Clone)]
pub struct ApiQuery<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequestParts<S> for ApiQuery<T> {
    type Rejection = ApiErr;
    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        match axum::extract::Query::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Query(v)) => Ok(Self(v)),
            Err(e @ QueryRejection::FailedToDeserializeQueryString(_)) => Err(ApiErr::bad_request(
                ErrorCode::InvalidQuery,
                clean_serde_message(&e.body_text()),
            )),
            Err(e) => Err(ApiErr::bad_request(ErrorCode::InvalidQuery, e.body_text())),
        }
    }
}

/// Result of handlers.
pub type ApiResult<T> = Result<T, ApiErr>;
