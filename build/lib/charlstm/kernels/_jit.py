"""Numba's options for every kernel, set here and nowhere else."""
# error_model="numpy" drops Python's
# ZeroDivisionError check, which otherwise stops LLVM vectorising the gate loops;
# fastmath leaves out nnan/ninf so that inf and nan still behave.
FASTMATH = {"contract", "arcp", "reassoc", "nsz", "afn"}
JIT = dict(cache=True, nogil=True, fastmath=FASTMATH, error_model="numpy")
# No parallel=True: slower (docs/performance.md), as Numba's worker threads and
# OpenBLAS's fight over the cores. The cores are used one training worker each
# instead (replicas.Replicas), so every kernel is serial and deterministic.
