//! Ctrl-C (SIGINT): the first one asks a running `train` or `demo` to stop after its current
//! iteration (it then exits with status 130 and says how to resume; every file it wrote is
//! complete); a second one exits at once, which is as safe as a kill (resume drops a partial line).

use std::sync::atomic::{AtomicBool, Ordering};

static REQUESTED: AtomicBool = AtomicBool::new(false);

/// Installs the handler (also when the shell started us with SIGINT ignored, as it does for
/// background jobs: the user's intent is then a signal sent on purpose).
pub fn install() {
    let result = ctrlc::set_handler(|| {
        if REQUESTED.swap(true, Ordering::SeqCst) {
            eprintln!("\nsecond Ctrl-C: stopping now");
            std::process::exit(130);
        }
        eprintln!("\nCtrl-C: stopping after this iteration (press again to stop at once)");
    });
    if let Err(e) = result {
        eprintln!("warning: Ctrl-C will stop the process without a clean stop: {e}");
    }
}

/// Whether Ctrl-C was pressed.
pub fn requested() -> bool {
    REQUESTED.load(Ordering::SeqCst)
}
