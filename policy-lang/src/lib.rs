//! The policy language: parse (with positions), check, compile to a kernel [`plan::Plan`],
//! and evaluate in user space exactly as the kernel programs will.

pub mod capabilities;
pub mod check;
pub mod condition;
pub mod diagnostic;
pub mod event;
pub mod kernel_features;
pub mod matcher;
pub mod model;
pub mod net;
pub mod overlap;
pub mod pattern;
pub mod syscalls;
pub mod yaml;
pub mod eval {
    //! placeholder, replaced below
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub enum Verdict { Allow, Audit, Deny, Kill }
}
