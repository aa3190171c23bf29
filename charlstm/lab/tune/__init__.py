"""charlstm tune: run.py starts the workers and runs the command; space.py is
the search space, study.py the Optuna study and its trials, worker.py a
worker, report.py what the search shows."""
