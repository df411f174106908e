//! The rollout's state and its transitions, with time passed in (Unix
//! milliseconds, so a state written by one replica or before a restart
//! means the same to every reader).
//!
//! ```text
//!   idle ──start──► running ◄──resume── paused
//!                    │  │ └──pause──────►  │
//!                    │  └─ tick: step over and healthy → next step
//!                    │     (after the 100 % step: promoted)
//!   aborted ◄─abort / tick: failed ── running | paused
//!   promoted ◄─promote ── running | paused
//!   start again from idle, aborted or promoted
//! ```
//!
//! `pause` stops the step's clock, not the analysis: a failing canary is
//! aborted while paused too. Every change bumps [`RolloutState::generation`],
//! which replicas sharing the state compare to take the newest.

use serde::{Deserialize, Serialize};

use crate::analysis::{Judgement, Verdict};
use crate::assign::Split;
use crate::plan::Plan;

/// Decisions kept in the state (the newest last).
pub const MAX_DECISIONS: usize = 20;

/// Where a rollout is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Phase {
    /// None started (or only finished ones, see `aborted`/`promoted`).
    Idle,
    /// Steps advancing.
    Running,
    /// The step's clock stopped; the analysis still runs.
    Paused,
    /// The canary became stable.
    Promoted,
    /// Everyone back on stable.
    Aborted,
}

impl Phase {
    /// `"idle"`, `"running"`, `"paused"`, `"promoted"`, `"aborted"`.
    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Idle => "idle",
            Phase::Running => "running",
            Phase::Paused => "paused",
            Phase::Promoted => "promoted",
            Phase::Aborted => "aborted",
        }
    }

    /// Running or paused: a rollout in progress.
    pub fn is_active(self) -> bool {
        matches!(self, Phase::Running | Phase::Paused)
    }
}

/// What a decision did, as a bounded label.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    /// Started by an operator.
    Start,
    /// Paused by an operator.
    Pause,
    /// Resumed by an operator.
    Resume,
    /// Next step (the analysis).
    Advance,
    /// Promoted (the analysis after the last step, or an operator).
    Promote,
    /// Aborted (the analysis, or an operator).
    Abort,
}

impl Action {
    /// Label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Start => "start",
            Action::Pause => "pause",
            Action::Resume => "resume",
            Action::Advance => "advance",
            Action::Promote => "promote",
            Action::Abort => "abort",
        }
    }
}

/// One state change, with its reason.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Decision {
    /// When, Unix ms.
    pub at_ms: u64,
    /// What.
    pub action: Action,
    /// The step it left (or started at).
    pub step: usize,
    /// Why, for people.
    pub reason: String,
}

/// Why an operation was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Refused {
    /// `start` while one runs.
    #[error("a rollout is {0}; abort or promote it first")]
    AlreadyActive(&'static str),
    /// `pause`, `resume`, `promote`, `abort` without a rollout in a phase that allows it.
    #[error("no rollout to {action}: the rollout is {phase}")]
    NotApplicable {
        /// The operation.
        action: &'static str,
        /// The phase it met.
        phase: &'static str,
    },
}

/// The shared, durable state of a pool's rollout.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RolloutState {
    /// Bumped on every change; the newest wins among replicas.
    pub generation: u64,
    /// Bumped on every start: names one rollout.
    pub rollout_id: u64,
    /// Where it is.
    pub phase: Phase,
    /// The steps.
    pub plan: Plan,
    /// Index of the current step (meaningful while active).
    pub step: usize,
    /// When the step's clock last (re)started, Unix ms.
    pub step_started_ms: u64,
    /// Time in the step before the last pause, ms.
    pub step_elapsed_ms: u64,
    /// The canary's endpoints (`fcgi://…`, `http://…`).
    pub canary_endpoints: Vec<String>,
    /// Why the last state change happened.
    pub reason: String,
    /// When it happened, Unix ms.
    pub changed_ms: u64,
    /// Stable's p95 (µs) from the last window with enough stable requests.
    pub stable_p95_baseline_us: Option<u64>,
    /// The last decisions, oldest first.
    pub decisions: Vec<Decision>,
}

impl Default for RolloutState {
    fn default() -> Self {
        Self {
            generation: 0,
            rollout_id: 0,
            phase: Phase::Idle,
            plan: Plan::default_plan(),
            step: 0,
            step_started_ms: 0,
            step_elapsed_ms: 0,
            canary_endpoints: Vec::new(),
            reason: "no rollout started".into(),
            changed_ms: 0,
            stable_p95_baseline_us: None,
            decisions: Vec::new(),
        }
    }
}

impl RolloutState {
    /// The canary's weight now: the step's while active, 100 once
    /// promoted, 0 otherwise.
    pub fn weight(&self) -> u8 {
        match self.phase {
            Phase::Running | Phase::Paused => {
                self.plan.steps().get(self.step).map_or(0, |s| s.weight)
            }
            Phase::Promoted => 100,
            Phase::Idle | Phase::Aborted => 0,
        }
    }

    /// How the pool's traffic is split.
    pub fn split(&self) -> Split {
        match self.phase {
            Phase::Running | Phase::Paused => Split::Weight(self.weight()),
            Phase::Promoted => Split::AllCanary,
            Phase::Idle | Phase::Aborted => Split::AllStable,
        }
    }

    /// The current step while active, `None` otherwise.
    pub fn active_step(&self) -> Option<usize> {
        self.phase.is_active().then_some(self.step)
    }

    /// Time spent in the current step, ms (the clock stops while paused).
    pub fn time_in_step_ms(&self, now_ms: u64) -> u64 {
        match self.phase {
            Phase::Running => self.step_elapsed_ms + now_ms.saturating_sub(self.step_started_ms),
            Phase::Paused => self.step_elapsed_ms,
            _ => 0,
        }
    }

    fn record(&mut self, now_ms: u64, action: Action, reason: String) {
        self.generation += 1;
        self.changed_ms = now_ms;
        self.reason = reason.clone();
        self.decisions.push(Decision {
            at_ms: now_ms,
            action,
            step: self.step,
            reason,
        });
        if self.decisions.len() > MAX_DECISIONS {
            let excess = self.decisions.len() - MAX_DECISIONS;
            self.decisions.drain(..excess);
        }
    }

    /// Starts `plan` towards `canary_endpoints`.
    ///
    /// # Errors
    ///
    /// [`Refused::AlreadyActive`] while a rollout runs or is paused.
    pub fn start(
        &mut self,
        plan: Plan,
        canary_endpoints: Vec<String>,
        now_ms: u64,
        reason: String,
    ) -> Result<(), Refused> {
        if self.phase.is_active() {
            return Err(Refused::AlreadyActive(self.phase.as_str()));
        }
        self.rollout_id += 1;
        self.phase = Phase::Running;
        self.plan = plan;
        self.step = 0;
        self.step_started_ms = now_ms;
        self.step_elapsed_ms = 0;
        self.canary_endpoints = canary_endpoints;
        self.stable_p95_baseline_us = None;
        self.record(now_ms, Action::Start, reason);
        Ok(())
    }

    fn refuse(&self, action: &'static str) -> Refused {
        Refused::NotApplicable {
            action,
            phase: self.phase.as_str(),
        }
    }

    /// Stops the step's clock.
    ///
    /// # Errors
    ///
    /// Unless running.
    pub fn pause(&mut self, now_ms: u64, reason: String) -> Result<(), Refused> {
        if self.phase != Phase::Running {
            return Err(self.refuse("pause"));
        }
        self.step_elapsed_ms = self.time_in_step_ms(now_ms);
        self.phase = Phase::Paused;
        self.record(now_ms, Action::Pause, reason);
        Ok(())
    }

    /// Restarts the step's clock.
    ///
    /// # Errors
    ///
    /// Unless paused.
    pub fn resume(&mut self, now_ms: u64, reason: String) -> Result<(), Refused> {
        if self.phase != Phase::Paused {
            return Err(self.refuse("resume"));
        }
        self.phase = Phase::Running;
        self.step_started_ms = now_ms;
        self.record(now_ms, Action::Resume, reason);
        Ok(())
    }

    /// Makes the canary stable at once (every step skipped).
    ///
    /// # Errors
    ///
    /// Unless running or paused.
    pub fn promote(&mut self, now_ms: u64, reason: String) -> Result<(), Refused> {
        if !self.phase.is_active() {
            return Err(self.refuse("promote"));
        }
        self.phase = Phase::Promoted;
        self.record(now_ms, Action::Promote, reason);
        Ok(())
    }

    /// Moves everyone to stable at once.
    ///
    /// # Errors
    ///
    /// Unless running or paused.
    pub fn abort(&mut self, now_ms: u64, reason: String) -> Result<(), Refused> {
        if !self.phase.is_active() {
            return Err(self.refuse("abort"));
        }
        self.phase = Phase::Aborted;
        self.record(now_ms, Action::Abort, reason);
        Ok(())
    }

    /// One analysis interval: applies a judgement of the current step's
    /// figures. A failure aborts (running or paused); a healthy verdict
    /// advances a running step whose pause is over (after the last step:
    /// promotes). Returns the decision when the state changed; waiting is
    /// not a change (its reason is the judgement's).
    pub fn tick(&mut self, now_ms: u64, j: &Judgement) -> Option<Decision> {
        if !self.phase.is_active() {
            return None;
        }
        if let Some(p95) = j.stable_p95_us {
            self.stable_p95_baseline_us = Some(p95);
        }
        match j.verdict {
            Verdict::Fail => {
                let _ = self.abort(now_ms, format!("analysis: {}", j.reason));
            }
            Verdict::Wait => return None,
            Verdict::Healthy => {
                if self.phase != Phase::Running {
                    return None;
                }
                let pause_ms = self
                    .plan
                    .steps()
                    .get(self.step)
                    .map_or(0, |s| s.pause.as_millis() as u64);
                if self.time_in_step_ms(now_ms) < pause_ms {
                    return None;
                }
                if self.step + 1 >= self.plan.steps().len() {
                    let _ = self.promote(
                        now_ms,
                        format!("analysis after the last step: {}", j.reason),
                    );
                } else {
                    let from = self.step;
                    self.step += 1;
                    self.step_started_ms = now_ms;
                    self.step_elapsed_ms = 0;
                    let reason = format!(
                        "step {from} ({}) over and {}; now {}",
                        self.plan.steps()[from],
                        j.reason,
                        self.plan.steps()[self.step]
                    );
                    self.record(now_ms, Action::Advance, reason);
                    if let Some(d) = self.decisions.last_mut() {
                        d.step = from;
                    }
                }
            }
        }
        self.decisions.last().cloned()
    }

    /// Why the rollout is waiting, when it is: the judgement's reason while
    /// the sample is short, or the time left in the step.
    pub fn waiting_reason(&self, now_ms: u64, j: &Judgement) -> Option<String> {
        if !self.phase.is_active() {
            return None;
        }
        if j.verdict == Verdict::Wait {
            return Some(j.reason.clone());
        }
        if self.phase == Phase::Paused {
            return Some("paused by an operator; the analysis still runs".into());
        }
        let pause_ms = self
            .plan
            .steps()
            .get(self.step)
            .map_or(0, |s| s.pause.as_millis() as u64);
        let spent = self.time_in_step_ms(now_ms);
        (spent < pause_ms).then(|| {
            format!(
                "{}; the step's pause has {} s left",
                j.reason,
                (pause_ms - spent).div_ceil(1000)
            )
        })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::analysis::ReasonCode;

    fn j(verdict: Verdict) -> Judgement {
        Judgement {
            verdict,
            code: match verdict {
                Verdict::Healthy => ReasonCode::Healthy,
                Verdict::Wait => ReasonCode::MinSample,
                Verdict::Fail => ReasonCode::ErrorRatio,
            },
            reason: format!("{verdict:?}"),
            stable_p95_us: None,
        }
    }

    fn started() -> RolloutState {
        let mut s = RolloutState::default();
        s.start(
            Plan::parse(&["10%/1m", "50%/1m", "100%"]).unwrap(),
            vec!["fcgi://127.0.0.1:9001".into()],
            1_000,
            "test".into(),
        )
        .unwrap();
        s
    }

    #[test]
    fn a_healthy_canary_walks_every_step_then_promotes() {
        let mut s = started();
        assert_eq!((s.phase, s.step, s.weight()), (Phase::Running, 0, 10));
        // Healthy before the pause is over: no change.
        assert_eq!(s.tick(30_000, &j(Verdict::Healthy)), None);
        // Pause over, but the sample is short: waits.
        assert_eq!(s.tick(61_000, &j(Verdict::Wait)), None);
        let d = s.tick(62_000, &j(Verdict::Healthy)).unwrap();
        assert_eq!(
            (d.action, d.step, s.step, s.weight()),
            (Action::Advance, 0, 1, 50)
        );
        assert_eq!(
            s.tick(122_000, &j(Verdict::Healthy)).unwrap().action,
            Action::Advance
        );
        assert_eq!(s.weight(), 100);
        // The 100 % step has no pause: promoted once judged.
        assert_eq!(s.tick(122_001, &j(Verdict::Wait)), None);
        assert_eq!(
            s.tick(125_000, &j(Verdict::Healthy)).unwrap().action,
            Action::Promote
        );
        assert_eq!(
            (s.phase, s.weight(), s.split()),
            (Phase::Promoted, 100, Split::AllCanary)
        );
        assert_eq!(s.active_step(), None);
    }

    #[test]
    fn a_failure_aborts_even_when_paused() {
        let mut s = started();
        s.pause(5_000, "op".into()).unwrap();
        assert_eq!(s.time_in_step_ms(500_000), 4_000, "the clock stopped");
        let d = s.tick(6_000, &j(Verdict::Fail)).unwrap();
        assert_eq!(d.action, Action::Abort);
        assert_eq!(
            (s.phase, s.weight(), s.split()),
            (Phase::Aborted, 0, Split::AllStable)
        );
        assert!(s.reason.starts_with("analysis: "));
    }

    #[test]
    fn a_paused_step_does_not_advance_and_resumes_its_clock() {
        let mut s = started();
        s.pause(31_000, "op".into()).unwrap();
        assert_eq!(s.tick(200_000, &j(Verdict::Healthy)), None);
        s.resume(300_000, "op".into()).unwrap();
        assert_eq!(
            s.tick(320_000, &j(Verdict::Healthy)),
            None,
            "50 s of 60 spent"
        );
        assert!(s.tick(331_000, &j(Verdict::Healthy)).is_some());
    }

    #[test]
    fn operations_refused_in_the_wrong_phase() {
        let mut s = RolloutState::default();
        assert!(s.pause(0, String::new()).is_err());
        assert!(s.promote(0, String::new()).is_err());
        let mut s = started();
        assert_eq!(
            s.start(Plan::default_plan(), vec![], 0, String::new()),
            Err(Refused::AlreadyActive("running"))
        );
        assert!(s.resume(0, String::new()).is_err());
        s.promote(2_000, "op".into()).unwrap();
        assert!(s.abort(3_000, String::new()).is_err());
        // Starting after a promotion (or an abort) is allowed.
        let id = s.rollout_id;
        s.start(Plan::default_plan(), vec![], 4_000, "again".into())
            .unwrap();
        assert_eq!((s.rollout_id, s.step, s.weight()), (id + 1, 0, 10));
    }

    #[test]
    fn every_change_bumps_the_generation_and_is_kept() {
        let mut s = started();
        let g = s.generation;
        s.pause(1, "a".into()).unwrap();
        s.resume(2, "b".into()).unwrap();
        assert_eq!(s.generation, g + 2);
        for i in 0..40 {
            if i % 2 == 0 {
                s.pause(3 + i, "p".into()).unwrap();
            } else {
                s.resume(3 + i, "r".into()).unwrap();
            }
        }
        assert_eq!(s.decisions.len(), MAX_DECISIONS);
        let json = serde_json::to_string(&s).unwrap();
        assert_eq!(serde_json::from_str::<RolloutState>(&json).unwrap(), s);
        assert!(json.contains(r#""phase":"running""#), "{json}");
    }
}
