"""The unit layer: the models package on its own (kernels, capture, positional schemes, labels,
tokenization, data, training, analysis, benchmark, labs), with no app and no server.
The seed and thread fixtures come from tests/conftest.py; modules build their own tiny models."""
