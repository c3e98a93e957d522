"""Benchmarks of the project (``make bench``; never run by CI).

``python -m bench.run`` fits the project on the shared tables at fixed budgets, on exactly the
train/test split the peers (AutoGluon, FLAML) were scored on, and writes one RESULT JSON per run in
the peers' format plus a markdown comparison; ``--serving`` load-tests ``automl serve`` and
``--scaling`` measures how fit time and memory grow with rows and CPUs. See bench/README.md.
"""
