//! Finding a device, node or user from what the user typed: an id, or an exact name (email for
//! users).
//!
//! A UUID always means an id. Otherwise the name must match exactly; if several things share it
//! (a revoked device and its active successor, say), the live one wins; if that still leaves
//! more than one, the user is asked to use the id and shown the candidates.

use clawn_proto::api::{DeviceState, DeviceView, NodeView, UserView};
use uuid::Uuid;

/// Something the user can name on the command line.
pub trait Named {
    /// What kind of thing it is, for messages (`device`, `node`, `user`).
    const KIND: &'static str;
    /// Its id.
    fn id(&self) -> Uuid;
    /// The name the user types.
    fn name(&self) -> &str;
    /// Whether the name compares case-insensitively (emails).
    const CASE_INSENSITIVE: bool = false;
    /// Whether it is live (preferred when a name is shared).
    fn is_live(&self) -> bool {
        true
    }
}

impl Named for DeviceView {
    const KIND: &'static str = "device";
    fn id(&self) -> Uuid {
        self.id
    }
    fn name(&self) -> &str {
        &self.name
    }
    fn is_live(&self) -> bool {
        self.state == DeviceState::Active
    }
}

impl Named for NodeView {
    const KIND: &'static str = "node";
    fn id(&self) -> Uuid {
        self.id
    }
    fn name(&self) -> &str {
        &self.name
    }
}

impl Named for UserView {
    const KIND: &'static str = "user";
    const CASE_INSENSITIVE: bool = true;
    fn id(&self) -> Uuid {
        self.id
    }
    fn name(&self) -> &str {
        &self.email
    }
    fn is_live(&self) -> bool {
        !self.disabled
    }
}

/// Why a name did not pick exactly one thing.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ResolveError {
    /// Nothing has that id or name.
    #[error("no {kind} {query:?}")]
    NotFound {
        /// `device`, `node` or `user`.
        kind: &'static str,
        /// What the user typed.
        query: String,
        /// A name that differs only in case, if there is one.
        did_you_mean: Option<String>,
    },
    /// Several things share the name.
    #[error("{} {kind}s are named {query:?}", candidates.len())]
    Ambiguous {
        /// `device`, `node` or `user`.
        kind: &'static str,
        /// What the user typed.
        query: String,
        /// Their ids.
        candidates: Vec<Uuid>,
    },
}

impl ResolveError {
    /// What the user can do about it.
    pub fn hint(&self) -> Option<String> {
        match self {
            Self::NotFound {
                did_you_mean: Some(n),
                ..
            } => Some(format!("did you mean {n:?}?")),
            Self::NotFound { kind, .. } => {
                Some(format!("list them with `clawn {}`", list_command(kind)))
            }
            Self::Ambiguous { candidates, .. } => Some(format!(
                "use the id instead: {}",
                candidates
                    .iter()
                    .map(Uuid::to_string)
                    .collect::<Vec<_>>()
                    .join(", ")
            )),
        }
    }
}

fn list_command(kind: &str) -> &'static str {
    match kind {
        "node" => "admin node list",
        "user" => "admin user list",
        _ => "device list",
    }
}

/// If `query` is a UUID, the id; otherwise `None` (it is a name).
pub fn as_id(query: &str) -> Option<Uuid> {
    Uuid::parse_str(query.trim()).ok()
}

/// Picks the one item `query` names among `items`.
pub fn resolve<'a, T: Named>(items: &'a [T], query: &str) -> Result<&'a T, ResolveError> {
    if let Some(id) = as_id(query) {
        return items
            .iter()
            .find(|i| i.id() == id)
            .ok_or_else(|| ResolveError::NotFound {
                kind: T::KIND,
                query: query.to_string(),
                did_you_mean: None,
            });
    }
    let matches_name = |i: &&T| {
        if T::CASE_INSENSITIVE {
            i.name().eq_ignore_ascii_case(query)
        } else {
            i.name() == query
        }
    };
    let matches: Vec<&T> = items.iter().filter(matches_name).collect();
    let pick = match matches.as_slice() {
        [one] => Some(*one),
        [] => None,
        many => match many
            .iter()
            .filter(|i| i.is_live())
            .collect::<Vec<_>>()
            .as_slice()
        {
            [one] => Some(**one),
            _ => {
                return Err(ResolveError::Ambiguous {
                    kind: T::KIND,
                    query: query.to_string(),
                    candidates: many.iter().map(|i| i.id()).collect(),
                });
            }
        },
    };
    pick.ok_or_else(|| ResolveError::NotFound {
        kind: T::KIND,
        query: query.to_string(),
        did_you_mean: items
            .iter()
            .find(|i| i.name().eq_ignore_ascii_case(query))
            .map(|i| i.name().to_string()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use clawn_proto::WgKeyPair;
    use clawn_proto::api::TunnelStatus;

    fn device(name: &str, state: DeviceState) -> DeviceView {
        DeviceView {
            id: Uuid::new_v4(),
            name: name.into(),
            state,
            region: "eu".into(),
            public_key: WgKeyPair::generate().public(),
            tunnel_ip: None,
            node: None,
            tunnel: TunnelStatus {
                status: clawn_proto::api::TunnelState::Inactive,
                last_handshake: None,
                rx_bytes: 0,
                tx_bytes: 0,
                endpoint: None,
            },
            created_at: 0,
            revoked_at: None,
            owner_id: None,
            owner_email: None,
            placement: clawn_proto::api::Placement::Unassigned,
            class: clawn_proto::api::DeviceClass::Standard,
            moved_at: None,
            moved_reason: None,
            quarantined: false,
            quarantine_reason: None,
            idle_flagged_at: None,
        }
    }

    #[test]
    fn by_id_or_exact_name() {
        let ds = vec![
            device("laptop", DeviceState::Active),
            device("phone", DeviceState::Active),
        ];
        assert_eq!(resolve(&ds, "phone").map(|d| d.id), Ok(ds[1].id));
        assert_eq!(
            resolve(&ds, &ds[0].id.to_string()).map(|d| d.id),
            Ok(ds[0].id)
        );
        assert_eq!(
            resolve(&ds, &ds[0].id.to_string().to_uppercase()).map(|d| d.id),
            Ok(ds[0].id)
        );
        let unknown = Uuid::new_v4().to_string();
        assert!(matches!(
            resolve(&ds, &unknown),
            Err(ResolveError::NotFound { .. })
        ));
        // Names are exact: no prefixes.
        assert!(matches!(
            resolve(&ds, "lap"),
            Err(ResolveError::NotFound {
                did_you_mean: None,
                ..
            })
        ));
    }

    #[test]
    fn near_miss_suggests_the_real_name() {
        let ds = vec![device("Laptop", DeviceState::Active)];
        let err = resolve(&ds, "laptop").expect_err("case differs");
        assert_eq!(err.hint().as_deref(), Some("did you mean \"Laptop\"?"));
    }

    #[test]
    fn shared_names_prefer_the_live_device_or_ask_for_the_id() {
        let ds = vec![
            device("laptop", DeviceState::Revoked),
            device("laptop", DeviceState::Active),
        ];
        assert_eq!(resolve(&ds, "laptop").map(|d| d.id), Ok(ds[1].id));

        let ds = vec![
            device("laptop", DeviceState::Active),
            device("laptop", DeviceState::Active),
        ];
        let err = resolve(&ds, "laptop").expect_err("ambiguous");
        assert_eq!(err.to_string(), "2 devices are named \"laptop\"");
        let hint = err.hint().unwrap_or_default();
        assert!(
            hint.contains(&ds[0].id.to_string()) && hint.contains(&ds[1].id.to_string()),
            "{hint}"
        );

        let ds = vec![
            device("old", DeviceState::Revoked),
            device("old", DeviceState::Revoked),
        ];
        assert!(matches!(
            resolve(&ds, "old"),
            Err(ResolveError::Ambiguous { .. })
        ));
    }

    #[test]
    fn users_match_email_case_insensitively() {
        let u = UserView {
            id: Uuid::new_v4(),
            email: "alice@example.com".into(),
            role: clawn_proto::api::Role::User,
            device_slots: 1,
            active_devices: 0,
            disabled: false,
            created_at: 0,
        };
        let users = vec![u.clone()];
        assert_eq!(resolve(&users, "Alice@Example.com").map(|x| x.id), Ok(u.id));
    }
}
