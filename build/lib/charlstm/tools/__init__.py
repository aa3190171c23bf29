"""Tooling beside the learning path: the benchmark (`charlstm bench`) and the
PyTorch rival it measures against. Nothing in training, sampling, compare or
inspect imports these."""
