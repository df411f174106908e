//! The plan of a rollout: steps of weight and pause, written `"10%/5m"`.
//!
//! Rules, checked by [`Plan::parse`]:
//! - a step is `W%` or `W%/PAUSE`, `W` an integer 0–100, `PAUSE` one or more
//!   `<integer><unit>` with units `h`, `m`, `s` (`"90s"`, `"1m30s"`), at most
//!   a day;
//! - weights never decrease: raising the weight only moves visitors from
//!   stable to canary (their bucket is below the old weight, so below the
//!   new one); lowering it would move some back, which only an abort may do;
//! - the last step is 100 %: promotion follows it.

use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// The plan when none is configured: 10 % for 5 minutes, 50 % for 5
/// minutes, then 100 % and promotion once judged.
pub const DEFAULT_STEPS: &[&str] = &["10%/5m", "50%/5m", "100%"];

/// Longest pause of one step.
pub const MAX_PAUSE: Duration = Duration::from_secs(24 * 3600);

/// One step: the canary's share of the pool's visitors, and how long the
/// step lasts at least (its minimum sample may make it last longer).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Step {
    /// Percentage of visitors on the canary, 0–100.
    pub weight: u8,
    /// Least time in the step before it may advance.
    pub pause: Duration,
}

/// Why a step or a plan was refused. Messages name the step's index.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PlanError {
    /// No step at all.
    #[error("a plan needs at least one step, and its last step is \"100%\"")]
    Empty,
    /// A step that does not read as `W%` or `W%/PAUSE`.
    #[error("steps[{index}]: {reason}")]
    Step {
        /// Position of the step.
        index: usize,
        /// What is wrong, with the text given.
        reason: String,
    },
    /// A weight lower than the step before it.
    #[error("steps[{index}]: weight {weight}% is below the previous step's {previous}% (raising the weight only moves visitors to the canary; lowering it would move some back, which only an abort does)")]
    Decreasing {
        /// Position of the step.
        index: usize,
        /// Its weight.
        weight: u8,
        /// The weight before it.
        previous: u8,
    },
    /// The last step is not 100 %.
    #[error("steps[{index}]: the last step must be 100% (promotion follows it), got {weight}%")]
    LastNot100 {
        /// Position of the last step.
        index: usize,
        /// Its weight.
        weight: u8,
    },
}

impl PlanError {
    /// The index of the step concerned, when there is one.
    pub fn index(&self) -> Option<usize> {
        match self {
            PlanError::Empty => None,
            PlanError::Step { index, .. }
            | PlanError::Decreasing { index, .. }
            | PlanError::LastNot100 { index, .. } => Some(*index),
        }
    }
}

impl Step {
    /// Parses `"10%/5m"`, `"100%"`, `"50 % / 90s"`. `Err` is the reason
    /// (without the index).
    pub fn parse(text: &str) -> Result<Step, String> {
        let (w, pause) = match text.split_once('/') {
            Some((w, p)) => (w, Some(p)),
            None => (text, None),
        };
        let w = w.trim();
        let Some(digits) = w.strip_suffix('%') else {
            return Err(format!(
                "{text:?}: a step is WEIGHT% or WEIGHT%/PAUSE, e.g. \"10%/5m\" or \"100%\""
            ));
        };
        let weight: u32 = digits
            .trim()
            .parse()
            .map_err(|_| format!("{text:?}: the weight is an integer percentage, e.g. \"10%\""))?;
        if weight > 100 {
            return Err(format!("{text:?}: weight {weight}% is outside 0-100"));
        }
        let pause = match pause {
            None => Duration::ZERO,
            Some(p) => parse_duration(p.trim()).map_err(|why| format!("{text:?}: {why}"))?,
        };
        if pause > MAX_PAUSE {
            return Err(format!("{text:?}: a pause is at most 24h"));
        }
        Ok(Step {
            weight: weight as u8,
            pause,
        })
    }
}

/// `"5m"`, `"90s"`, `"1h30m"`, `"1m30s"`: integers with units h, m, s.
fn parse_duration(text: &str) -> Result<Duration, String> {
    if text.is_empty() {
        return Err("the pause is empty; write e.g. \"5m\" or leave out the \"/\"".into());
    }
    let mut total: u64 = 0;
    let mut number: Option<u64> = None;
    for c in text.chars() {
        if let Some(d) = c.to_digit(10) {
            let n = number.unwrap_or(0);
            number = Some(
                n.checked_mul(10)
                    .and_then(|n| n.checked_add(u64::from(d)))
                    .ok_or("the pause is too long")?,
            );
            continue;
        }
        let unit = match c {
            'h' => 3600,
            'm' => 60,
            's' => 1,
            _ => {
                return Err(format!(
                    "pause {text:?}: units are h, m and s, e.g. \"5m\" or \"1m30s\""
                ))
            }
        };
        let n = number
            .take()
            .ok_or_else(|| format!("pause {text:?}: a unit needs a number before it"))?;
        total = n
            .checked_mul(unit)
            .and_then(|v| total.checked_add(v))
            .ok_or("the pause is too long")?;
    }
    if number.is_some() {
        return Err(format!(
            "pause {text:?}: the last number has no unit (h, m or s)"
        ));
    }
    Ok(Duration::from_secs(total))
}

impl fmt::Display for Step {
    /// The canonical text: `"10%/5m"`, `"100%"`, `"50%/1m30s"`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}%", self.weight)?;
        let s = self.pause.as_secs();
        if s == 0 {
            return Ok(());
        }
        f.write_str("/")?;
        let (h, m, sec) = (s / 3600, (s % 3600) / 60, s % 60);
        if h > 0 {
            write!(f, "{h}h")?;
        }
        if m > 0 {
            write!(f, "{m}m")?;
        }
        if sec > 0 {
            write!(f, "{sec}s")?;
        }
        Ok(())
    }
}

/// A checked list of steps (see the module rules).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    steps: Vec<Step>,
}

impl Plan {
    /// Parses and checks every step; the first problem found is returned
    /// (in step order), naming the step's index.
    pub fn parse<S: AsRef<str>>(steps: &[S]) -> Result<Plan, PlanError> {
        let mut out: Vec<Step> = Vec::with_capacity(steps.len());
        for (index, text) in steps.iter().enumerate() {
            let step =
                Step::parse(text.as_ref()).map_err(|reason| PlanError::Step { index, reason })?;
            if let Some(prev) = out.last() {
                if step.weight < prev.weight {
                    return Err(PlanError::Decreasing {
                        index,
                        weight: step.weight,
                        previous: prev.weight,
                    });
                }
            }
            out.push(step);
        }
        Plan::new(out)
    }

    /// Checks parsed steps.
    pub fn new(steps: Vec<Step>) -> Result<Plan, PlanError> {
        let Some(last) = steps.last() else {
            return Err(PlanError::Empty);
        };
        if last.weight != 100 {
            return Err(PlanError::LastNot100 {
                index: steps.len() - 1,
                weight: last.weight,
            });
        }
        for (index, pair) in steps.windows(2).enumerate() {
            if pair[1].weight < pair[0].weight {
                return Err(PlanError::Decreasing {
                    index: index + 1,
                    weight: pair[1].weight,
                    previous: pair[0].weight,
                });
            }
        }
        Ok(Plan { steps })
    }

    /// [`DEFAULT_STEPS`].
    pub fn default_plan() -> Plan {
        Plan {
            steps: vec![
                Step {
                    weight: 10,
                    pause: Duration::from_secs(300),
                },
                Step {
                    weight: 50,
                    pause: Duration::from_secs(300),
                },
                Step {
                    weight: 100,
                    pause: Duration::ZERO,
                },
            ],
        }
    }

    /// The steps, in order (never empty; the last one is 100 %).
    pub fn steps(&self) -> &[Step] {
        &self.steps
    }

    /// The canonical texts of the steps.
    pub fn texts(&self) -> Vec<String> {
        self.steps.iter().map(Step::to_string).collect()
    }
}

impl Serialize for Plan {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.texts().serialize(s)
    }
}

impl<'de> Deserialize<'de> for Plan {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Plan, D::Error> {
        let texts = Vec::<String>::deserialize(d)?;
        Plan::parse(&texts).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn step(w: u8, secs: u64) -> Step {
        Step {
            weight: w,
            pause: Duration::from_secs(secs),
        }
    }

    #[test]
    fn steps_parse() {
        assert_eq!(Step::parse("10%/5m"), Ok(step(10, 300)));
        assert_eq!(Step::parse("100%"), Ok(step(100, 0)));
        assert_eq!(Step::parse(" 50 % / 1m30s "), Ok(step(50, 90)));
        assert_eq!(Step::parse("0%/2h"), Ok(step(0, 7200)));
        assert_eq!(Step::parse("25%/45s"), Ok(step(25, 45)));
    }

    #[test]
    fn bad_steps_say_why() {
        for (text, want) in [
            ("10/5m", "a step is WEIGHT%"),
            ("101%", "outside 0-100"),
            ("-5%", "integer percentage"),
            ("ten%", "integer percentage"),
            ("10%/5", "no unit"),
            ("10%/5d", "units are h, m and s"),
            ("10%/", "pause is empty"),
            ("10%/m", "needs a number"),
            ("10%/25h", "at most 24h"),
        ] {
            let err = Step::parse(text).unwrap_err();
            assert!(err.contains(want), "{text}: {err}");
        }
    }

    #[test]
    fn plans_end_at_100_and_never_go_down() {
        assert_eq!(Plan::parse(DEFAULT_STEPS).unwrap(), Plan::default_plan());
        assert_eq!(
            Plan::parse(&["10%/5m", "50%/5m"]).unwrap_err(),
            PlanError::LastNot100 {
                index: 1,
                weight: 50
            }
        );
        assert_eq!(
            Plan::parse(&["50%/5m", "10%/5m", "100%"]).unwrap_err(),
            PlanError::Decreasing {
                index: 1,
                weight: 10,
                previous: 50
            }
        );
        assert_eq!(Plan::parse::<&str>(&[]).unwrap_err(), PlanError::Empty);
        let e = Plan::parse(&["10%/5m", "200%"]).unwrap_err();
        assert_eq!(e.index(), Some(1));
        assert!(e.to_string().starts_with("steps[1]: \"200%\""), "{e}");
        assert!(Plan::parse(&["100%/10m", "100%"]).is_ok());
    }

    #[test]
    fn plans_round_trip_through_json() {
        let p = Plan::parse(&["5%/30s", "50%/1h1m1s", "100%"]).unwrap();
        let json = serde_json::to_string(&p).unwrap();
        assert_eq!(json, r#"["5%/30s","50%/1h1m1s","100%"]"#);
        assert_eq!(serde_json::from_str::<Plan>(&json).unwrap(), p);
        assert!(serde_json::from_str::<Plan>(r#"["5%/30s"]"#).is_err());
    }

    proptest! {
        #[test]
        fn display_parses_back(w in 0u8..=100, secs in 0u64..=86_400) {
            let s = step(w, secs);
            prop_assert_eq!(Step::parse(&s.to_string()), Ok(s));
        }

        #[test]
        fn parse_never_panics(text in ".{0,24}") {
            let _ = Step::parse(&text);
        }
    }
}
