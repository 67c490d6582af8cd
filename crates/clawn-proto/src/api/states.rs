//! The closed sets of values the API sends as strings: error codes, device and node states,
//! audit actions. Each is an enum whose wire spelling is written once, next to its variant,
//! and pinned by a JSON-literal test below.
//!
//! Forward compatibility: every enum here has a last variant `Unknown`, which is what a
//! spelling this build does not know (one a newer server added) deserialises to, instead of
//! failing the whole answer. Clients treat it like the generic case (the CLI prints the
//! message and hint of an unknown error code, and `unknown` for an unknown state); this
//! server never sends it, so the OpenAPI document lists only the known spellings.

use serde::{Deserialize, Serialize};

/// Defines a wire enum: the variants with their spellings, the `Unknown` fallback,
/// `ALL`, `as_str`, `parse`, `Display` and (with the `openapi` feature) a schema listing the
/// known spellings.
macro_rules! wire_enum {
    (
        $(#[doc = $doc:literal])*
        pub enum $name:ident {
            $( $(#[doc = $vdoc:literal])* $variant:ident = $wire:literal, )+
        }
    ) => {
        $(#[doc = $doc])*
        ///
        /// A spelling this build does not know reads as `Unknown` (see the module docs).
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
        pub enum $name {
            $( $(#[doc = $vdoc])* #[serde(rename = $wire)] $variant, )+
            /// A spelling this build does not know (from a newer server); never sent.
            #[serde(rename = "unknown", other)]
            Unknown,
        }

        impl $name {
            /// Every known value (not `Unknown`), in declaration order.
            pub const ALL: &'static [Self] = &[$(Self::$variant),+];

            /// The wire (and stored) spelling; `unknown` for [`Self::Unknown`].
            pub fn as_str(self) -> &'static str {
                match self {
                    $(Self::$variant => $wire,)+
                    Self::Unknown => "unknown",
                }
            }

            /// Parses a wire (or stored) spelling; anything else is [`Self::Unknown`].
            pub fn parse(s: &str) -> Self {
                match s {
                    $($wire => Self::$variant,)+
                    _ => Self::Unknown,
                }
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }

        #[cfg(feature = "openapi")]
        impl utoipa::PartialSchema for $name {
            fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
                let description = [$($doc),*]
                    .iter()
                    .map(|l| l.trim())
                    .collect::<Vec<_>>()
                    .join("\n");
                utoipa::openapi::schema::ObjectBuilder::new()
                    .schema_type(utoipa::openapi::schema::Type::String)
                    .description(Some(description))
                    .enum_values(Some([$($wire),+]))
                    .into()
            }
        }

        #[cfg(feature = "openapi")]
        impl utoipa::ToSchema for $name {}
    };
}

wire_enum! {
    /// The stable machine-readable `code` of an `ApiError`.
    pub enum ErrorCode {
        /// The account is disabled.
        AccountDisabled = "account_disabled",
        /// The priority token is already revoked.
        AlreadyRevoked = "already_revoked",
        /// The first admin exists already.
        AlreadySetUp = "already_set_up",
        /// A 400 that no handler described (the catch-all for non-JSON error answers).
        BadRequest = "bad_request",
        /// The request body is too large.
        BodyTooLarge = "body_too_large",
        /// The CSRF token is missing or wrong.
        CsrfFailed = "csrf_failed",
        /// The server was built without the dashboard.
        DashboardNotBuilt = "dashboard_not_built",
        /// The database cannot be reached.
        DatabaseUnavailable = "database_unavailable",
        /// The device is quarantined: region moves are blocked.
        DeviceQuarantined = "device_quarantined",
        /// The device is revoked.
        DeviceRevoked = "device_revoked",
        /// The email address is taken.
        EmailTaken = "email_taken",
        /// A 4xx that no handler described (the catch-all for non-JSON error answers).
        Error = "error",
        /// This needs an admin account.
        Forbidden = "forbidden",
        /// The node's identity proof has expired.
        IdentityProofExpired = "identity_proof_expired",
        /// The node must prove its identity key.
        IdentityProofRequired = "identity_proof_required",
        /// Internal error; the server log has the cause.
        Internal = "internal",
        /// Malformed JSON body, unknown field or bad value.
        InvalidBody = "invalid_body",
        /// Bad node capabilities.
        InvalidCapabilities = "invalid_capabilities",
        /// Capacity out of range.
        InvalidCapacity = "invalid_capacity",
        /// Bad tunnel pool.
        InvalidCidr = "invalid_cidr",
        /// Wrong email or password.
        InvalidCredentials = "invalid_credentials",
        /// Bad page cursor.
        InvalidCursor = "invalid_cursor",
        /// Bad DNS server.
        InvalidDns = "invalid_dns",
        /// Bad email address.
        InvalidEmail = "invalid_email",
        /// Bad node endpoint.
        InvalidEndpoint = "invalid_endpoint",
        /// Lifetime out of range.
        InvalidExpiry = "invalid_expiry",
        /// Bad node identity key.
        InvalidIdentityKey = "invalid_identity_key",
        /// The node's identity proof does not verify.
        InvalidIdentityProof = "invalid_identity_proof",
        /// The node join token is not valid.
        InvalidJoinToken = "invalid_join_token",
        /// Node link capacity out of range.
        InvalidLinkMbps = "invalid_link_mbps",
        /// Bad WireGuard listen port.
        InvalidListenPort = "invalid_listen_port",
        /// Name out of range.
        InvalidName = "invalid_name",
        /// The node credential is not valid.
        InvalidNodeCredential = "invalid_node_credential",
        /// Node prefix out of range.
        InvalidNodePrefix = "invalid_node_prefix",
        /// Priority token note too long.
        InvalidNote = "invalid_note",
        /// Malformed path parameter.
        InvalidPath = "invalid_path",
        /// Malformed query string.
        InvalidQuery = "invalid_query",
        /// Bad region code.
        InvalidRegionCode = "invalid_region_code",
        /// Wrong setup token.
        InvalidSetupToken = "invalid_setup_token",
        /// Device slots out of range.
        InvalidSlots = "invalid_slots",
        /// A node state that cannot be set.
        InvalidState = "invalid_state",
        /// Priority grant without exactly one of `user_id` and `email`.
        InvalidUser = "invalid_user",
        /// Priority token window empty, past or too long.
        InvalidWindow = "invalid_window",
        /// The node join token has expired.
        JoinTokenExpired = "join_token_expired",
        /// The node join token was used already.
        JoinTokenUsed = "join_token_used",
        /// The public key is registered already.
        KeyInUse = "key_in_use",
        /// The route has no such method.
        MethodNotAllowed = "method_not_allowed",
        /// A device name that is a WireGuard key (a pasted private key?).
        NameLooksLikeKey = "name_looks_like_key",
        /// No node of the region can take a new device now.
        NoCapacity = "no_capacity",
        /// The node still has peers.
        NodeHasPeers = "node_has_peers",
        /// The node's WireGuard key is registered already.
        NodeKeyInUse = "node_key_in_use",
        /// Missing, or someone else's (indistinguishable by design).
        NotFound = "not_found",
        /// The device is not quarantined.
        NotQuarantined = "not_quarantined",
        /// The node's tunnel address pool is exhausted.
        PoolExhausted = "pool_exhausted",
        /// Too many sign-in attempts; `Retry-After` says when to try again.
        RateLimited = "rate_limited",
        /// Too many region moves of one device; `Retry-After` says when to try again.
        ReassignRateLimited = "reassign_rate_limited",
        /// The region code is taken.
        RegionExists = "region_exists",
        /// The region still has nodes.
        RegionHasNodes = "region_has_nodes",
        /// The region's pool has no room for another node.
        RegionPoolFull = "region_pool_full",
        /// Self-registration is off.
        RegistrationClosed = "registration_closed",
        /// The device is in that region already.
        SameRegion = "same_region",
        /// An admin cannot disable or demote themselves.
        SelfLockout = "self_lockout",
        /// All device slots of the user are in use.
        SlotsExhausted = "slots_exhausted",
        /// Too many API tokens.
        TooManyTokens = "too_many_tokens",
        /// No valid session or token.
        Unauthenticated = "unauthenticated",
        /// The body is not `application/json`.
        UnsupportedMediaType = "unsupported_media_type",
        /// The node agent is too old for this server.
        UpgradeRequired = "upgrade_required",
        /// The password is too short.
        WeakPassword = "weak_password",
    }
}

wire_enum! {
    /// What an audit event records (`AuditEventView.action`): `<target>.<verb>`.
    pub enum AuditAction {
        /// An API token was created.
        ApiTokenCreate = "api_token.create",
        /// An API token was revoked.
        ApiTokenRevoke = "api_token.revoke",
        /// A device was registered.
        DeviceCreate = "device.create",
        /// A device moved off a draining node.
        DeviceDrain = "device.drain",
        /// A device moved off an offline node.
        DeviceFailover = "device.failover",
        /// A device without a peer was placed on a node.
        DevicePlace = "device.place",
        /// A device was quarantined.
        DeviceQuarantine = "device.quarantine",
        /// A device moved to another region.
        DeviceReassign = "device.reassign",
        /// A device was released from quarantine.
        DeviceRelease = "device.release",
        /// A device was renamed.
        DeviceRename = "device.rename",
        /// A device was revoked.
        DeviceRevoke = "device.revoke",
        /// A device's key was rotated.
        DeviceRotate = "device.rotate",
        /// A device waits for capacity.
        DeviceWaiting = "device.waiting",
        /// A node became degraded.
        NodeDegraded = "node.degraded",
        /// A node enrolled.
        NodeEnroll = "node.enroll",
        /// A node went offline.
        NodeOffline = "node.offline",
        /// A node came online.
        NodeOnline = "node.online",
        /// A degraded node recovered.
        NodeRecovered = "node.recovered",
        /// A node was removed.
        NodeRemove = "node.remove",
        /// An admin changed a node.
        NodeUpdate = "node.update",
        /// A node join token was created.
        NodeTokenCreate = "node_token.create",
        /// A peer was flagged idle.
        PeerIdleFlagged = "peer.idle_flagged",
        /// An idle peer was removed.
        PeerIdleRemoved = "peer.idle_removed",
        /// A priority token was granted.
        PriorityTokenGrant = "priority_token.grant",
        /// A priority token was revoked.
        PriorityTokenRevoke = "priority_token.revoke",
        /// A region was created.
        RegionCreate = "region.create",
        /// A region was changed.
        RegionUpdate = "region.update",
        /// All sessions of a user were ended.
        SessionEndAll = "session.end_all",
        /// The first admin was created.
        UserBootstrap = "user.bootstrap",
        /// An admin created a user.
        UserCreate = "user.create",
        /// A user registered.
        UserRegister = "user.register",
        /// An admin reset a user's password.
        UserResetPassword = "user.reset_password",
        /// An admin changed a user.
        UserUpdate = "user.update",
    }
}

wire_enum! {
    /// Whether the owning node confirmed a change (`NodeAck.status`).
    pub enum AckStatus {
        /// The node applied the version.
        Acknowledged = "acknowledged",
        /// Connected, but no ack in time; it applies the change when it catches up.
        Timeout = "timeout",
        /// The node is not connected; it applies the change when it reconnects.
        Offline = "offline",
        /// Pushed to a connected node, not waited for (device creation answers at once).
        Pending = "pending",
        /// No node was involved.
        None = "none",
    }
}

wire_enum! {
    /// Where a device's peer stands (`DeviceView.placement`).
    pub enum Placement {
        /// A live peer on a node.
        Assigned = "assigned",
        /// Its node failed or drains and no node of the region has room; it stays where it is meanwhile.
        WaitingForCapacity = "waiting_for_capacity",
        /// No peer; fetching the config places it again.
        Unassigned = "unassigned",
    }
}

wire_enum! {
    /// A device's service class (`DeviceView.class`).
    pub enum DeviceClass {
        /// Ordinary routing.
        Standard = "standard",
        /// The owner holds a valid priority token for the region.
        Priority = "priority",
    }
}

wire_enum! {
    /// Live tunnel status of a device (`TunnelStatus.status`).
    pub enum TunnelState {
        /// A handshake within the last 3 minutes.
        Active = "active",
        /// No recent handshake.
        Inactive = "inactive",
    }
}

wire_enum! {
    /// How a region is doing (`RegionHealth.status`).
    pub enum RegionStatus {
        /// All nodes can take new devices.
        Healthy = "healthy",
        /// Some nodes cannot take new devices.
        Degraded = "degraded",
        /// No node can take a new device.
        Unavailable = "unavailable",
    }
}

wire_enum! {
    /// Where a priority token is in its window (`PriorityTokenView.status`).
    pub enum PriorityStatus {
        /// The window has not started.
        Scheduled = "scheduled",
        /// Within the window.
        Active = "active",
        /// The window has ended.
        Expired = "expired",
        /// Revoked by an admin.
        Revoked = "revoked",
    }
}

wire_enum! {
    /// An alert condition of a node's health check (`NodeHealth.alerts`); any of them makes an online node degraded.
    pub enum HealthAlert {
        /// CPU above the threshold for the sustain time.
        CpuHigh = "cpu_high",
        /// Probe loss above the threshold.
        PacketLoss = "packet_loss",
        /// Probe round trip well above the baseline.
        LatencyHigh = "latency_high",
        /// More live peers than capacity.
        OverCapacity = "over_capacity",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Each pair's JSON spelling, both ways, and that the table covers every known value.
    fn pin<T>(table: &[(T, &str)], all: &[T])
    where
        T: Serialize + serde::de::DeserializeOwned + PartialEq + std::fmt::Debug + Copy,
    {
        for (v, spelling) in table {
            let literal = format!("\"{spelling}\"");
            assert_eq!(
                serde_json::to_string(v).ok(),
                Some(literal.clone()),
                "{v:?}"
            );
            assert_eq!(
                serde_json::from_str::<T>(&literal).ok(),
                Some(*v),
                "{spelling}"
            );
        }
        assert_eq!(table.len(), all.len(), "the table misses a value");
        for v in all {
            assert!(table.iter().any(|(t, _)| t == v), "{v:?} is not pinned");
        }
    }

    #[test]
    fn error_code_spellings_are_pinned() {
        pin(
            &[
                (ErrorCode::AccountDisabled, "account_disabled"),
                (ErrorCode::AlreadyRevoked, "already_revoked"),
                (ErrorCode::AlreadySetUp, "already_set_up"),
                (ErrorCode::BadRequest, "bad_request"),
                (ErrorCode::BodyTooLarge, "body_too_large"),
                (ErrorCode::CsrfFailed, "csrf_failed"),
                (ErrorCode::DashboardNotBuilt, "dashboard_not_built"),
                (ErrorCode::DatabaseUnavailable, "database_unavailable"),
                (ErrorCode::DeviceQuarantined, "device_quarantined"),
                (ErrorCode::DeviceRevoked, "device_revoked"),
                (ErrorCode::EmailTaken, "email_taken"),
                (ErrorCode::Error, "error"),
                (ErrorCode::Forbidden, "forbidden"),
                (ErrorCode::IdentityProofExpired, "identity_proof_expired"),
                (ErrorCode::IdentityProofRequired, "identity_proof_required"),
                (ErrorCode::Internal, "internal"),
                (ErrorCode::InvalidBody, "invalid_body"),
                (ErrorCode::InvalidCapabilities, "invalid_capabilities"),
                (ErrorCode::InvalidCapacity, "invalid_capacity"),
                (ErrorCode::InvalidCidr, "invalid_cidr"),
                (ErrorCode::InvalidCredentials, "invalid_credentials"),
                (ErrorCode::InvalidCursor, "invalid_cursor"),
                (ErrorCode::InvalidDns, "invalid_dns"),
                (ErrorCode::InvalidEmail, "invalid_email"),
                (ErrorCode::InvalidEndpoint, "invalid_endpoint"),
                (ErrorCode::InvalidExpiry, "invalid_expiry"),
                (ErrorCode::InvalidIdentityKey, "invalid_identity_key"),
                (ErrorCode::InvalidIdentityProof, "invalid_identity_proof"),
                (ErrorCode::InvalidJoinToken, "invalid_join_token"),
                (ErrorCode::InvalidLinkMbps, "invalid_link_mbps"),
                (ErrorCode::InvalidListenPort, "invalid_listen_port"),
                (ErrorCode::InvalidName, "invalid_name"),
                (ErrorCode::InvalidNodeCredential, "invalid_node_credential"),
                (ErrorCode::InvalidNodePrefix, "invalid_node_prefix"),
                (ErrorCode::InvalidNote, "invalid_note"),
                (ErrorCode::InvalidPath, "invalid_path"),
                (ErrorCode::InvalidQuery, "invalid_query"),
                (ErrorCode::InvalidRegionCode, "invalid_region_code"),
                (ErrorCode::InvalidSetupToken, "invalid_setup_token"),
                (ErrorCode::InvalidSlots, "invalid_slots"),
                (ErrorCode::InvalidState, "invalid_state"),
                (ErrorCode::InvalidUser, "invalid_user"),
                (ErrorCode::InvalidWindow, "invalid_window"),
                (ErrorCode::JoinTokenExpired, "join_token_expired"),
                (ErrorCode::JoinTokenUsed, "join_token_used"),
                (ErrorCode::KeyInUse, "key_in_use"),
                (ErrorCode::MethodNotAllowed, "method_not_allowed"),
                (ErrorCode::NameLooksLikeKey, "name_looks_like_key"),
                (ErrorCode::NoCapacity, "no_capacity"),
                (ErrorCode::NodeHasPeers, "node_has_peers"),
                (ErrorCode::NodeKeyInUse, "node_key_in_use"),
                (ErrorCode::NotFound, "not_found"),
                (ErrorCode::NotQuarantined, "not_quarantined"),
                (ErrorCode::PoolExhausted, "pool_exhausted"),
                (ErrorCode::RateLimited, "rate_limited"),
                (ErrorCode::ReassignRateLimited, "reassign_rate_limited"),
                (ErrorCode::RegionExists, "region_exists"),
                (ErrorCode::RegionHasNodes, "region_has_nodes"),
                (ErrorCode::RegionPoolFull, "region_pool_full"),
                (ErrorCode::RegistrationClosed, "registration_closed"),
                (ErrorCode::SameRegion, "same_region"),
                (ErrorCode::SelfLockout, "self_lockout"),
                (ErrorCode::SlotsExhausted, "slots_exhausted"),
                (ErrorCode::TooManyTokens, "too_many_tokens"),
                (ErrorCode::Unauthenticated, "unauthenticated"),
                (ErrorCode::UnsupportedMediaType, "unsupported_media_type"),
                (ErrorCode::UpgradeRequired, "upgrade_required"),
                (ErrorCode::WeakPassword, "weak_password"),
            ],
            ErrorCode::ALL,
        );
        for v in ErrorCode::ALL {
            assert_eq!(ErrorCode::parse(v.as_str()), *v);
        }
    }

    #[test]
    fn audit_action_spellings_are_pinned() {
        pin(
            &[
                (AuditAction::ApiTokenCreate, "api_token.create"),
                (AuditAction::ApiTokenRevoke, "api_token.revoke"),
                (AuditAction::DeviceCreate, "device.create"),
                (AuditAction::DeviceDrain, "device.drain"),
                (AuditAction::DeviceFailover, "device.failover"),
                (AuditAction::DevicePlace, "device.place"),
                (AuditAction::DeviceQuarantine, "device.quarantine"),
                (AuditAction::DeviceReassign, "device.reassign"),
                (AuditAction::DeviceRelease, "device.release"),
                (AuditAction::DeviceRename, "device.rename"),
                (AuditAction::DeviceRevoke, "device.revoke"),
                (AuditAction::DeviceRotate, "device.rotate"),
                (AuditAction::DeviceWaiting, "device.waiting"),
                (AuditAction::NodeDegraded, "node.degraded"),
                (AuditAction::NodeEnroll, "node.enroll"),
                (AuditAction::NodeOffline, "node.offline"),
                (AuditAction::NodeOnline, "node.online"),
                (AuditAction::NodeRecovered, "node.recovered"),
                (AuditAction::NodeRemove, "node.remove"),
                (AuditAction::NodeUpdate, "node.update"),
                (AuditAction::NodeTokenCreate, "node_token.create"),
                (AuditAction::PeerIdleFlagged, "peer.idle_flagged"),
                (AuditAction::PeerIdleRemoved, "peer.idle_removed"),
                (AuditAction::PriorityTokenGrant, "priority_token.grant"),
                (AuditAction::PriorityTokenRevoke, "priority_token.revoke"),
                (AuditAction::RegionCreate, "region.create"),
                (AuditAction::RegionUpdate, "region.update"),
                (AuditAction::SessionEndAll, "session.end_all"),
                (AuditAction::UserBootstrap, "user.bootstrap"),
                (AuditAction::UserCreate, "user.create"),
                (AuditAction::UserRegister, "user.register"),
                (AuditAction::UserResetPassword, "user.reset_password"),
                (AuditAction::UserUpdate, "user.update"),
            ],
            AuditAction::ALL,
        );
        for v in AuditAction::ALL {
            assert_eq!(AuditAction::parse(v.as_str()), *v);
        }
    }

    #[test]
    fn ack_status_spellings_are_pinned() {
        pin(
            &[
                (AckStatus::Acknowledged, "acknowledged"),
                (AckStatus::Timeout, "timeout"),
                (AckStatus::Offline, "offline"),
                (AckStatus::Pending, "pending"),
                (AckStatus::None, "none"),
            ],
            AckStatus::ALL,
        );
        for v in AckStatus::ALL {
            assert_eq!(AckStatus::parse(v.as_str()), *v);
        }
    }

    #[test]
    fn placement_spellings_are_pinned() {
        pin(
            &[
                (Placement::Assigned, "assigned"),
                (Placement::WaitingForCapacity, "waiting_for_capacity"),
                (Placement::Unassigned, "unassigned"),
            ],
            Placement::ALL,
        );
        for v in Placement::ALL {
            assert_eq!(Placement::parse(v.as_str()), *v);
        }
    }

    #[test]
    fn device_class_spellings_are_pinned() {
        pin(
            &[
                (DeviceClass::Standard, "standard"),
                (DeviceClass::Priority, "priority"),
            ],
            DeviceClass::ALL,
        );
        for v in DeviceClass::ALL {
            assert_eq!(DeviceClass::parse(v.as_str()), *v);
        }
    }

    #[test]
    fn tunnel_state_spellings_are_pinned() {
        pin(
            &[
                (TunnelState::Active, "active"),
                (TunnelState::Inactive, "inactive"),
            ],
            TunnelState::ALL,
        );
        for v in TunnelState::ALL {
            assert_eq!(TunnelState::parse(v.as_str()), *v);
        }
    }

    #[test]
    fn region_status_spellings_are_pinned() {
        pin(
            &[
                (RegionStatus::Healthy, "healthy"),
                (RegionStatus::Degraded, "degraded"),
                (RegionStatus::Unavailable, "unavailable"),
            ],
            RegionStatus::ALL,
        );
        for v in RegionStatus::ALL {
            assert_eq!(RegionStatus::parse(v.as_str()), *v);
        }
    }

    #[test]
    fn priority_status_spellings_are_pinned() {
        pin(
            &[
                (PriorityStatus::Scheduled, "scheduled"),
                (PriorityStatus::Active, "active"),
                (PriorityStatus::Expired, "expired"),
                (PriorityStatus::Revoked, "revoked"),
            ],
            PriorityStatus::ALL,
        );
        for v in PriorityStatus::ALL {
            assert_eq!(PriorityStatus::parse(v.as_str()), *v);
        }
    }

    #[test]
    fn health_alert_spellings_are_pinned() {
        pin(
            &[
                (HealthAlert::CpuHigh, "cpu_high"),
                (HealthAlert::PacketLoss, "packet_loss"),
                (HealthAlert::LatencyHigh, "latency_high"),
                (HealthAlert::OverCapacity, "over_capacity"),
            ],
            HealthAlert::ALL,
        );
        for v in HealthAlert::ALL {
            assert_eq!(HealthAlert::parse(v.as_str()), *v);
        }
    }

    #[test]
    fn unknown_spellings_read_as_unknown() {
        assert_eq!(
            serde_json::from_str::<ErrorCode>(r#""added_in_v9""#).ok(),
            Some(ErrorCode::Unknown)
        );
        assert_eq!(
            serde_json::from_str::<Placement>(r#""orbiting""#).ok(),
            Some(Placement::Unknown)
        );
        assert_eq!(AuditAction::parse("device.teleport"), AuditAction::Unknown);
        assert_eq!(HealthAlert::parse(""), HealthAlert::Unknown);
        assert_eq!(
            serde_json::to_string(&AckStatus::Unknown).ok().as_deref(),
            Some(r#""unknown""#)
        );
    }
}
