//! Nicira extensions in the pipeline: registers, resubmit, register loads
//! and moves, output to a register's port, notes.

use crate::openflow::ErrorCode;
use crate::openflow::error::BadActionCode;
use crate::openflow::nicira::NxAction;

use super::pipeline::Pipeline;

impl Pipeline {
    /// Checks one Nicira action of a flow or bucket.
    pub(crate) fn check_nx(&self, a: &NxAction) -> Result<(), ErrorCode> {
        let _ = a;
        Err(ErrorCode::BadAction(BadActionCode::BadExperimenter))
    }
}
