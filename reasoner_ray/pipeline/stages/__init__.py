"""The main job's stages: one module per stage the run directory's manifest records, each a function returning
the `StageFn` that `runner.StageRunner.run` calls (pipeline/iterative.py puts them in order). A stage reads the
folders of the stages before it and writes its own; the work is done by the adapters (operators, train, distill).
"""
