"""reasoner-ray's OpenAI-compatible HTTP endpoint on Ray Serve (import path: `serve.app:build_app`)."""
