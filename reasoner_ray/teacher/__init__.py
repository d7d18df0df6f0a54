"""The project's stand-in teacher: an OpenAI-compatible server that writes rationales from annotations."""
