#pragma once

// The subcommands of bittorch-lm; each parses its own flags (run_app) and returns the exit code.

namespace bittorch::apps {

int train_command(int argc, char** argv);
int sample_command(int argc, char** argv);
int export_command(int argc, char** argv);
int bench_command(int argc, char** argv);
int import_command(int argc, char** argv);

}  // namespace bittorch::apps
