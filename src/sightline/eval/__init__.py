"""Accuracy protocols (LFW verification, calibration of scores) and speed benchmarks."""
