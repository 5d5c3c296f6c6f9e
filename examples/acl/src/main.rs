//! `mswitch-acl`: mswitch with one more module, `acl`. Every mswitch command
//! is here (`mswitch-acl daemon`, `mswitch-acl ctl create sw0 --module
//! acl:rule=deny:tcp:23`, ...).

use std::process::ExitCode;

fn main() -> ExitCode {
    mswitch::cli::main_with(&[&mswitch_acl::INFO])
}
