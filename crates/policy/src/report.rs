//! The `check` report: JSON (schema `berth.check/v1`, see docs/policy.md) and text.

use std::fmt::Write as _;

use serde::Serialize;

use crate::check::{Finding, Status};
use crate::policyfile::Violation;
use crate::target::Target;

pub const CHECK_SCHEMA: &str = "berth.check/v1";

#[derive(Debug, Clone, Serialize)]
pub struct Summary {
    pub pass: usize,
    pub warn: usize,
    pub fail: usize,
    pub violations: usize,
}

#[derive(Debug, Clone, Serialize)]
pub struct CheckReport {
    pub schema: &'static str,
    pub target: Target,
    pub findings: Vec<Finding>,
    /// Present (possibly empty) only when a policy was given.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub violations: Option<Vec<Violation>>,
    pub summary: Summary,
}

impl CheckReport {
    pub fn new(target: Target, findings: Vec<Finding>, violations: Option<Vec<Violation>>) -> Self {
        let count = |s| findings.iter().filter(|f| f.status == s).count();
        let summary = Summary {
            pass: count(Status::Pass),
            warn: count(Status::Warn),
            fail: count(Status::Fail),
            violations: violations.as_ref().map_or(0, Vec::len),
        };
        CheckReport {
            schema: CHECK_SCHEMA,
            target,
            findings,
            violations,
            summary,
        }
    }

    /// The exit status: 1 when the policy found violations, else 0.
    pub fn exit_code(&self) -> u8 {
        u8::from(self.summary.violations > 0)
    }

    pub fn text(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(
            s,
            "{} {} ({})",
            match self.target.kind {
                crate::target::Kind::Bundle => "bundle",
                crate::target::Kind::Container => "container",
                crate::target::Kind::Engine => "engine container",
            },
            self.target.name,
            self.target.config.display()
        );
        let mut barrier = "";
        for f in &self.findings {
            if f.barrier != barrier {
                barrier = f.barrier;
                let _ = writeln!(s, "{barrier}:");
            }
            let _ = writeln!(
                s,
                "  {:<4} {:<20} {:<9}{}  [seed {}; {}]",
                f.status.to_string().to_uppercase(),
                f.rule,
                f.severity,
                f.message,
                f.source,
                f.field
            );
        }
        if let Some(v) = &self.violations {
            for x in v {
                let _ = writeln!(s, "VIOLATION {}: {}", x.rule, x.message);
            }
        }
        let _ = writeln!(
            s,
            "{} pass, {} warn, {} fail{}",
            self.summary.pass,
            self.summary.warn,
            self.summary.fail,
            self.violations
                .as_ref()
                .map(|v| format!(", {} violation(s)", v.len()))
                .unwrap_or_default()
        );
        s
    }
}
