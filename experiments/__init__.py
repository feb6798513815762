"""Experiments on MEDS: the regime map and the held-out reproduction (not speed benchmarks).

``benchmarks/`` times our code against its peers; this folder asks what MEDS does to training,
and holds each experiment's runner, its statistics, its report and its plots.
"""
