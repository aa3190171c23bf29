"""charlstm compare: run.py trains the cells and measures them; results.py
says what the results are; figure.py draws compare.png; page.py writes
report.html."""
