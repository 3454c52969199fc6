"""A run, from a scenario to a finished results directory.

- execute.py: the body of `meshbench run` (lock, store, runner, report, exit code);
- runner.py: the loop over (repetition, mode, load level) cells, faults, phases and their times;
- cell.py: one measurement cell (warm-up, window, load and probes together, rows);
- pushes.py: a mode's config-push experiments, after its cells;
- context.py: what those share (scenario, backend and its abilities, store, probes);
- resume.py: `meshbench run --resume`.
"""
