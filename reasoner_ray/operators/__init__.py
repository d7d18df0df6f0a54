"""Ray Data operators: the callable classes and functions `map_batches` runs (vLLM generation, endpoint calls
for the teacher and for evaluation, reward scoring). Pipeline stages (reasoner_ray/pipeline/stages) compose them."""
