// SIGTERM and SIGUSR1 (what SLURM sends before a time limit) only set a flag;
// the ranks agree on it at the next step boundary, checkpoint, and exit 3.
#pragma once

namespace bf {

void install_stop_handlers();
/// The signal received (0 if none).
int stop_signal();
void clear_stop_signal();

}  // namespace bf
