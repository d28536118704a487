//! Completion predicates: who may move a run to `done`, and when.
//!
//! API.md: predicates bind the agent and the admin alike, except `manual`,
//! under which only the admin may finish the run. `never` refuses both;
//! `capability_succeeded:<id>` refuses both until that capability has
//! succeeded in this run.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::model::Actor;

const CAPABILITY_SUCCEEDED: &str = "capability_succeeded:";

#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub enum CompletionPredicate {
    /// The agent (or the admin) may finish the run at any time.
    #[default]
    Always,
    /// Only the admin API may move the run to `done`.
    Manual,
    /// `done` is refused to everyone; the run ends as failed or cancelled.
    Never,
    /// `done` only after this capability succeeded in this run.
    CapabilitySucceeded(String),
}

/// A predicate string that is none of the accepted forms: 400 at creation.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "unknown completion predicate `{input}`; expected always, manual, never or capability_succeeded:<capability_id>"
)]
pub struct PredicateParseError {
    pub input: String,
}

/// `done` refused by the run's predicate: 409 `predicate_unsatisfied`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the run cannot be done: {why} (completion predicate `{predicate}`)")]
pub struct PredicateUnsatisfied {
    pub predicate: CompletionPredicate,
    pub why: String,
}

impl CompletionPredicate {
    /// The capability whose success this predicate waits for, if any: what
    /// the caller must look up before calling [`Self::check_done`].
    pub fn required_capability(&self) -> Option<&str> {
        match self {
            CompletionPredicate::CapabilitySucceeded(id) => Some(id),
            _ => None,
        }
    }

    /// May `actor` move the run to `done`? `succeeded(id)` says whether
    /// capability `id` has succeeded in this run. Only an admin counts as the
    /// admin: the agent and the supervisor acting on the agent's behalf (its
    /// exit) are held to the agent's rule.
    pub fn check_done(&self, actor: &Actor, succeeded: impl Fn(&str) -> bool) -> Result<(), PredicateUnsatisfied> {
        let refuse = |why: String| Err(PredicateUnsatisfied { predicate: self.clone(), why });
        match self {
            CompletionPredicate::Always => Ok(()),
            CompletionPredicate::Manual if actor.is_admin() => Ok(()),
            CompletionPredicate::Manual => refuse("only an admin may finish a run whose predicate is manual".into()),
            CompletionPredicate::Never => refuse("its predicate never allows done".into()),
            CompletionPredicate::CapabilitySucceeded(id) if succeeded(id) => Ok(()),
            CompletionPredicate::CapabilitySucceeded(id) => {
                refuse(format!("capability `{id}` has not succeeded in this run"))
            }
        }
    }
}

impl fmt::Display for CompletionPredicate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CompletionPredicate::Always => f.write_str("always"),
            CompletionPredicate::Manual => f.write_str("manual"),
            CompletionPredicate::Never => f.write_str("never"),
            CompletionPredicate::CapabilitySucceeded(id) => write!(f, "{CAPABILITY_SUCCEEDED}{id}"),
        }
    }
}

impl FromStr for CompletionPredicate {
    type Err = PredicateParseError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "always" => return Ok(CompletionPredicate::Always),
            "manual" => return Ok(CompletionPredicate::Manual),
            "never" => return Ok(CompletionPredicate::Never),
            _ => {}
        }
        match s.strip_prefix(CAPABILITY_SUCCEEDED) {
            // Capability ids are names like `mail.send`: no spaces, no
            // control characters, never empty.
            Some(id) if !id.is_empty() && id.chars().all(|c| c.is_ascii_graphic()) => {
                Ok(CompletionPredicate::CapabilitySucceeded(id.to_owned()))
            }
            _ => Err(PredicateParseError { input: s.to_owned() }),
        }
    }
}

impl Serialize for CompletionPredicate {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for CompletionPredicate {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        String::deserialize(deserializer)?.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn admin() -> Actor {
        Actor::Admin { uid: 0 }
    }

    fn agent() -> Actor {
        Actor::Agent { run_id: "run_1".into() }
    }

    #[test]
    fn parses_every_form_and_refuses_the_rest() {
        assert_eq!("always".parse(), Ok(CompletionPredicate::Always));
        assert_eq!("manual".parse(), Ok(CompletionPredicate::Manual));
        assert_eq!("never".parse(), Ok(CompletionPredicate::Never));
        assert_eq!(
            "capability_succeeded:mail.send".parse(),
            Ok(CompletionPredicate::CapabilitySucceeded("mail.send".into()))
        );
        for bad in
            ["", "Always", "sometimes", "capability_succeeded:", "capability_succeeded:a b", "capability_succeeded"]
        {
            assert!(bad.parse::<CompletionPredicate>().is_err(), "{bad:?}");
        }
        for p in ["always", "manual", "never", "capability_succeeded:x.y"] {
            assert_eq!(p.parse::<CompletionPredicate>().unwrap().to_string(), p);
        }
    }

    #[test]
    fn always_allows_everyone() {
        assert!(CompletionPredicate::Always.check_done(&agent(), |_| false).is_ok());
        assert!(CompletionPredicate::Always.check_done(&admin(), |_| false).is_ok());
        assert!(CompletionPredicate::Always.check_done(&Actor::System, |_| false).is_ok());
    }

    #[test]
    fn manual_allows_only_the_admin() {
        assert!(CompletionPredicate::Manual.check_done(&admin(), |_| false).is_ok());
        let err = CompletionPredicate::Manual.check_done(&agent(), |_| true).unwrap_err();
        assert!(err.to_string().contains("only an admin"), "{err}");
        assert!(CompletionPredicate::Manual.check_done(&Actor::System, |_| true).is_err());
    }

    #[test]
    fn never_refuses_both() {
        assert!(CompletionPredicate::Never.check_done(&admin(), |_| true).is_err());
        assert!(CompletionPredicate::Never.check_done(&agent(), |_| true).is_err());
    }

    #[test]
    fn capability_succeeded_binds_both() {
        let p = CompletionPredicate::CapabilitySucceeded("mail.send".into());
        for who in [admin(), agent()] {
            let err = p.check_done(&who, |_| false).unwrap_err();
            assert!(err.to_string().contains("`mail.send` has not succeeded"), "{err}");
            assert!(p.check_done(&who, |id| id == "other").is_err());
            assert!(p.check_done(&who, |id| id == "mail.send").is_ok());
        }
        assert_eq!(p.required_capability(), Some("mail.send"));
        assert_eq!(CompletionPredicate::Manual.required_capability(), None);
    }
}
