"""Run directory -> tidy DataFrames -> statistics -> figures -> report.

Reads only what `bench.store` wrote (manifest.json and the tidy samples table), so any
run can be re-analysed later: `python -m analysis.report [RUN_DIR]`.
"""
