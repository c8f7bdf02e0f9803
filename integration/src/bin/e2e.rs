//! `/bin/enforcer-e2e`: the end-to-end suite, run inside the test VM (see `integration::e2e`).
//! Exits non-zero when a test failed.

use std::process::ExitCode;

use clap::Parser;
use integration::e2e;

#[derive(Parser)]
#[command(
    name = "enforcer-e2e",
    about = "End-to-end tests; run inside the test VM as root"
)]
struct Cli {
    /// Only the tests whose name contains this.
    filter: Option<String>,
    /// Print the test names instead of running them.
    #[arg(long)]
    list: bool,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let tests = e2e::selected(cli.filter.as_deref());
    if cli.list {
        for (name, _) in &tests {
            println!("{name}");
        }
        return ExitCode::SUCCESS;
    }
    let (_, failed) = e2e::run(&tests, &mut std::io::stdout());
    if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
