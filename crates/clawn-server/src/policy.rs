//! The ownership policy: who may see and change what (docs/architecture.md §3).
//!
//! Every handler that touches user data takes an [`Actor`] (authenticated by the
//! extractor in `http::auth`), and turns it into a [`Scope`] that the store puts into
//! the SQL `WHERE` clause. A `Scope` can only be built from an `Actor`: a handler that
//! forgets authentication has no way to call the store's user-data functions.

use clawn_proto::api::{Role, UserView};
use uuid::Uuid;

use crate::store::audit::AuditActor;

/// An authenticated user making a request.
#[derive(Debug, Clone)]
pub struct Actor {
    /// The user.
    pub user: UserView,
    /// The session used, if any (for "current session").
    pub session_id: Option<Uuid>,
    /// Client address.
    pub client_addr: Option<String>,
}

impl Actor {
    /// The scope for the actor's own data (used on `/api/v1/*` user routes, even for admins).
    pub fn own(&self) -> Scope {
        Scope(Some(self.user.id))
    }

    /// The audit identity.
    pub fn audit(&self) -> AuditActor {
        AuditActor {
            kind: if self.user.role == Role::Admin {
                "admin"
            } else {
                "user"
            },
            id: Some(self.user.id),
            label: Some(self.user.email.clone()),
            client_addr: self.client_addr.clone(),
        }
    }
}

/// An authenticated admin (only constructible from an admin [`Actor`]).
#[derive(Debug, Clone)]
pub struct AdminActor(Actor);

impl AdminActor {
    /// `Some` only for admins.
    pub fn from_actor(actor: Actor) -> Option<Self> {
        (actor.user.role == Role::Admin).then_some(Self(actor))
    }

    /// The scope covering every user's data.
    pub fn all(&self) -> Scope {
        Scope(None)
    }

    /// The admin as an actor.
    pub fn actor(&self) -> &Actor {
        &self.0
    }

    /// The audit identity.
    pub fn audit(&self) -> AuditActor {
        self.0.audit()
    }
}

/// Which users' data a query may touch: one owner, or (admins only) everyone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scope(Option<Uuid>);

impl Scope {
    /// Every user's data, for the server's own background jobs (failover, drain, hygiene),
    /// which act as the audited `system` actor. Not reachable from a request.
    pub(crate) fn system() -> Self {
        Self(None)
    }

    /// The owner as a SQL parameter; `NULL` means every owner (`COALESCE($n, user_id) = user_id`).
    pub fn owner_param(&self) -> Option<String> {
        self.0.map(|u| u.to_string())
    }

    /// Whether the scope covers everyone.
    pub fn is_admin(&self) -> bool {
        self.0.is_none()
    }
}
