"""The scheduler core shared by ptsim and ptexec: value types, profiles, convergence and Prompt
Bank models, the cluster state that checks and applies decisions, and the policies.

Pure Python + numpy: no simpy, torch, hydra, wall clock or file I/O here.
"""
