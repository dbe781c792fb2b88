//! Tests of the manager: `fake` runs against a temp-dir imitation of the control files,
//! `host` against this machine's real hierarchies (root only).

mod fake;
mod host;

mod plans;
