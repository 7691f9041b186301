//! A service case and its life (Cabinet regulation No. 399 of 2017: request, execution,
//! receipt of the result): the channels a request arrives by, the states a case moves
//! through, who may move it, and the time indicators that follow from its stages.
//!
//! Pure logic, no I/O: the store and the API build on it.

use kopa_core::Role;
use serde::{Deserialize, Serialize};

/// How the client's request reached the centre.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Channel {
    /// A visit to a customer service centre.
    InPerson,
    /// The VPVKAC phone line.
    VpvkacPhone,
    /// The latvija.lv phone line.
    LatvijaLvPhone,
    /// The VPVKAC e-mail.
    Email,
    /// An e-service (submitted by the client, or by a specialist under a mandate).
    EService,
}

impl Channel {
    /// Every channel, in a fixed order.
    pub const ALL: [Channel; 5] = [
        Channel::InPerson,
        Channel::VpvkacPhone,
        Channel::LatvijaLvPhone,
        Channel::Email,
        Channel::EService,
    ];
}

/// Where a case stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum State {
    /// The request is recorded.
    Registered,
    /// A specialist works on it.
    InProgress,
    /// Waiting for the client (a document, a signature).
    WaitingForClient,
    /// Sent to the institution that owns the service.
    ForwardedToInstitution,
    /// The institution decided.
    Decided,
    /// The client received the result (final).
    ResultDelivered,
    /// Refused (final).
    Rejected,
    /// The client withdrew the request (final).
    Withdrawn,
}

impl State {
    /// Every state, in the order a case usually moves through them.
    pub const ALL: [State; 8] = [
        State::Registered,
        State::InProgress,
        State::WaitingForClient,
        State::ForwardedToInstitution,
        State::Decided,
        State::ResultDelivered,
        State::Rejected,
        State::Withdrawn,
    ];

    /// Whether nothing can follow.
    pub fn is_final(self) -> bool {
        matches!(
            self,
            State::ResultDelivered | State::Rejected | State::Withdrawn
        )
    }

    /// The states that may follow this one, and the roles that may make each move.
    pub fn moves(self) -> &'static [(State, &'static [Role])] {
        use State::*;
        const FRONT: &[Role] = &[Role::Specialist, Role::Supervisor];
        const OWNER: &[Role] = &[Role::Specialist, Role::Supervisor, Role::ServiceOwner];
        match self {
            Registered => &[(InProgress, FRONT), (Rejected, FRONT), (Withdrawn, FRONT)],
            InProgress => &[
                (WaitingForClient, FRONT),
                (ForwardedToInstitution, FRONT),
                (Decided, FRONT),
                (Rejected, FRONT),
                (Withdrawn, FRONT),
            ],
            WaitingForClient => &[(InProgress, FRONT), (Withdrawn, FRONT)],
            // Once forwarded, the owner institution decides (the centre may still record
            // a decision it was told of, or take the case back).
            ForwardedToInstitution => &[
                (InProgress, FRONT),
                (Decided, OWNER),
                (Rejected, OWNER),
                (Withdrawn, FRONT),
            ],
            Decided => &[(ResultDelivered, FRONT)],
            ResultDelivered | Rejected | Withdrawn => &[],
        }
    }
}

/// Why a case cannot move as asked.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MoveError {
    /// No such move from this state, for anyone.
    #[error("a case cannot go from {from:?} to {to:?}")]
    NotAllowed { from: State, to: State },
    /// The move exists, but none of the caller's roles may make it.
    #[error("the caller's roles may not move a case from {from:?} to {to:?}")]
    Forbidden { from: State, to: State },
}

/// Checks that someone holding `roles` may move a case from `from` to `to`.
pub fn check_move(from: State, to: State, roles: &[Role]) -> Result<(), MoveError> {
    let (_, allowed) = from
        .moves()
        .iter()
        .find(|(next, _)| *next == to)
        .ok_or(MoveError::NotAllowed { from, to })?;
    if roles.iter().any(|r| allowed.contains(r)) {
        Ok(())
    } else {
        Err(MoveError::Forbidden { from, to })
    }
}

/// The moments that make a case's time indicators, in milliseconds since the epoch.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Stages {
    /// When the client began to apply (arrived, called, wrote); at most `registered`.
    pub request_started: Option<u64>,
    /// When the request was recorded.
    pub registered: u64,
    /// When the decision was made (or the case was refused).
    pub decided: Option<u64>,
    /// When the client received the result.
    pub delivered: Option<u64>,
}

/// What the stages say about a case (durations in milliseconds).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Indicators {
    /// From the start of the request to its registration.
    pub time_to_apply: Option<u64>,
    /// From registration to the decision.
    pub execution_time: Option<u64>,
    /// From the decision to the client receiving the result.
    pub time_to_deliver: Option<u64>,
    /// Whether the decision came (or, still open at `now`, is) later than the statutory
    /// deadline after registration.
    pub deadline_breached: bool,
}

const DAY_MS: u64 = 86_400_000;

impl Stages {
    /// The indicators at `now`, given the service's statutory deadline in days (`None`:
    /// the service has none).
    pub fn indicators(&self, deadline_days: Option<u32>, now: u64) -> Indicators {
        let since = |later: Option<u64>, earlier: u64| later.map(|l| l.saturating_sub(earlier));
        let deadline_breached = deadline_days.is_some_and(|days| {
            let due = self.registered + u64::from(days) * DAY_MS;
            self.decided.unwrap_or(now) > due
        });
        Indicators {
            time_to_apply: self
                .request_started
                .map(|s| self.registered.saturating_sub(s)),
            execution_time: since(self.decided, self.registered),
            time_to_deliver: self
                .delivered
                .zip(self.decided)
                .map(|(d, dec)| d.saturating_sub(dec)),
            deadline_breached,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_state_but_the_final_ones_can_move_and_final_ones_cannot() {
        for s in State::ALL {
            assert_eq!(s.moves().is_empty(), s.is_final(), "{s:?}");
        }
    }

    #[test]
    fn every_state_is_reachable_from_registered() {
        let mut seen = vec![State::Registered];
        let mut i = 0;
        while i < seen.len() {
            for (next, _) in seen[i].moves() {
                if !seen.contains(next) {
                    seen.push(*next);
                }
            }
            i += 1;
        }
        assert_eq!(seen.len(), State::ALL.len(), "{seen:?}");
    }

    #[test]
    fn moves_are_checked_by_state_and_by_role() {
        use State::*;
        let specialist = [Role::Specialist];
        let owner = [Role::ServiceOwner];
        assert_eq!(check_move(Registered, InProgress, &specialist), Ok(()));
        assert_eq!(
            check_move(Registered, Decided, &specialist),
            Err(MoveError::NotAllowed {
                from: Registered,
                to: Decided
            })
        );
        // A service owner decides forwarded cases, and nothing at the front desk.
        assert_eq!(check_move(ForwardedToInstitution, Decided, &owner), Ok(()));
        assert!(matches!(
            check_move(Registered, InProgress, &owner),
            Err(MoveError::Forbidden { .. })
        ));
        // Roles outside case work move nothing.
        for to in State::ALL {
            assert!(check_move(InProgress, to, &[Role::SecurityOfficer, Role::Auditor]).is_err());
        }
        // Final states stay final.
        for to in State::ALL {
            assert!(check_move(ResultDelivered, to, &specialist).is_err());
        }
    }

    #[test]
    fn indicators_follow_the_stages_and_the_deadline() {
        let h = 3_600_000;
        let stages = Stages {
            request_started: Some(10 * h),
            registered: 10 * h + 15 * 60_000,
            decided: Some(10 * h + 15 * 60_000 + 3 * DAY_MS),
            delivered: Some(10 * h + 15 * 60_000 + 4 * DAY_MS),
        };
        let i = stages.indicators(Some(5), u64::MAX);
        assert_eq!(i.time_to_apply, Some(15 * 60_000));
        assert_eq!(i.execution_time, Some(3 * DAY_MS));
        assert_eq!(i.time_to_deliver, Some(DAY_MS));
        assert!(!i.deadline_breached);
        assert!(stages.indicators(Some(2), 0).deadline_breached);
        assert!(!stages.indicators(None, 0).deadline_breached);
        // Still open: breached once `now` passes the deadline.
        let open = Stages {
            decided: None,
            delivered: None,
            ..stages
        };
        let due = open.registered + 5 * DAY_MS;
        assert!(!open.indicators(Some(5), due).deadline_breached);
        assert!(open.indicators(Some(5), due + 1).deadline_breached);
        assert_eq!(open.indicators(Some(5), due).execution_time, None);
    }
}
