"""The lab: what charlstm measures about models beyond training them. compare/
(cells side by side), inspect/ (what the units do), tune/ (the search for
settings), show.py, the memory-span measures (spans.py), the memory tasks
(tasks.py), the charts, and the worker processes compare and tune share
(workers.py). Nothing in charlstm's core imports the lab."""
