"""The job layer: one job's steps (load, split, check, train, sample, evaluate, gate, export)
as plain functions behind one `Modality` contract, for tables and images alike.

It sits between the Prefect flows (`flows/`), which only orchestrate these steps, and the
library (`synth/`) and the checks (`evaluation/`), which know nothing of jobs.
"""
