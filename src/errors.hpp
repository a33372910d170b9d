// Exit codes and the exceptions that map to them.
#pragma once

#include <stdexcept>
#include <string>

namespace bf {

enum ExitCode : int {
  kExitOk = 0,
  kExitFailure = 1,   // anything else (including a run stopped after repeated NaN)
  kExitBadInput = 2,  // arguments, config, checkpoint
  kExitSignal = 3,    // stopped by SIGTERM/SIGUSR1 after checkpointing
};

/// Bad input from the user: arguments, config values, files. Exit code 2.
struct InputError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

/// A failure every rank agrees on (printed once, by rank 0). Exit code 1.
struct RunError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

}  // namespace bf
