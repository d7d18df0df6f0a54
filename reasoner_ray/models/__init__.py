"""Models: building tiny VLMs locally, loading any HF VLM folder or hub id, exporting for vLLM."""
