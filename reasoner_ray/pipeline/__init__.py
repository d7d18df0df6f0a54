"""The iterative pipeline: stages run under a run-directory manifest (distill, SFT, rounds, report)."""
