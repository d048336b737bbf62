"""The `semscale` subcommands: `demo`, `analyze`, `install-metric` (argument parsing and printing only)."""
