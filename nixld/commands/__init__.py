"""The `nixld` commands, one module each, each with its own `main(args) -> exit status`:
usage, argument parsing and rendering. The work itself is done by the library modules in
nixld/, which print nothing."""
