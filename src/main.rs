//! The `mswitch` command: everything is in the library's [`mswitch::cli`].

use std::process::ExitCode;

fn main() -> ExitCode {
    mswitch::cli::main()
}
