//! Gossip topics and the scope of a record.
//!
//! Listings travel on their community's topic, `troc/v1/community/<slug>`, so a node only receives the
//! listings of the communities it follows. Every other public record (profiles, withdrawals, the
//! public part of deals, reviews, vouches, revocations) travels on `troc/v1/global`, which every node
//! follows: reputation must be checkable by anyone, and these records are few and small. Catch-up
//! reconciles the same scopes. Proposals are private and travel on no topic.

use libp2p::gossipsub::IdentTopic;
use troc_protocol::{Body, CancelReason};

/// The global scope's name.
pub const GLOBAL: &str = "global";

/// A scope's name as used in catch-up requests: `global` or `community/<slug>`.
pub fn scope_name(community: Option<&str>) -> String {
    match community {
        None => GLOBAL.to_owned(),
        Some(c) => format!("community/{c}"),
    }
}

/// The community of a scope name, `None` for global (or for a name that is neither).
pub fn community_of_scope(name: &str) -> Option<&str> {
    name.strip_prefix("community/")
}

/// The gossip topic of a scope name.
pub fn topic(scope: &str) -> IdentTopic {
    IdentTopic::new(format!("troc/v1/{scope}"))
}

/// The scope name of a record body; `None` for private records: proposals, and the cancellations
/// that decline or withdraw one (they name a proposal, which only the two parties have).
pub fn scope_of(body: &Body) -> Option<String> {
    match body {
        Body::Proposal(_) => None,
        Body::Cancellation(c) if matches!(c.reason, CancelReason::Declined | CancelReason::Withdrawn) => None,
        Body::Listing(l) => Some(scope_name(Some(&l.community))),
        _ => Some(scope_name(None)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert_eq!(scope_name(None), "global");
        assert_eq!(scope_name(Some("north-end")), "community/north-end");
        assert_eq!(community_of_scope("community/north-end"), Some("north-end"));
        assert_eq!(community_of_scope("global"), None);
        assert_eq!(topic("community/x").hash().as_str(), "troc/v1/community/x");
    }
}
