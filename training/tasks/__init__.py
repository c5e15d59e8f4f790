"""One module per model, each declaring `TASK` (training/tasks/base.py): its config, its profiles, its CLI
options and its `run` (load data, train, evaluate, export and verify, draw the report pictures).
`training/tasks/registry.py` finds them; the CLI and the profiles are built from it."""
