"""The benchmark (python -m benchmarks.bench): its command line and derived figures in bench.py, its measurements in
pipelines.py and steps.py, their timing in measuring.py."""
